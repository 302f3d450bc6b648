//! What the sync and async repositories share around each call: page and
//! query shapes, and turning "no row" into a typed error.

use serde::Serialize;

use crate::RepoError;

/// Largest page a `page` or `for_post` call returns.
pub const MAX_PAGE_SIZE: i64 = 1_000;

/// One keyset page: rows after a cursor, and the cursor for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The rows, ascending by id.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` when this page was the last.
    pub next: Option<i32>,
}

impl<T> Page<T> {
    pub(crate) fn new(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i32) -> Self {
        let full = i64::try_from(items.len()).is_ok_and(|n| n == limit);
        let next = if full { items.last().map(id) } else { None };
        Self { items, next }
    }
}

/// `row`, or `NotFound` for `entity` with `key`.
pub(crate) fn found<T>(
    row: Option<T>,
    entity: &'static str,
    key: impl FnOnce() -> String,
) -> Result<T, RepoError> {
    row.ok_or_else(|| RepoError::NotFound { entity, key: key() })
}

/// `Ok` when one row was deleted, `NotFound` when none was.
pub(crate) fn deleted(rows: usize, entity: &'static str, id: i32) -> Result<(), RepoError> {
    if rows == 0 {
        Err(RepoError::NotFound {
            entity,
            key: format!("id {id}"),
        })
    } else {
        Ok(())
    }
}

/// A `LIKE` pattern matching names that start with `prefix` (its own `%`,
/// `_` and `\` match literally).
pub(crate) fn prefix_pattern(prefix: Option<&str>) -> String {
    let mut pattern = String::new();
    for c in prefix.unwrap_or_default().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_patterns_escape_wildcards() {
        assert_eq!(prefix_pattern(None), "%");
        assert_eq!(prefix_pattern(Some("Ann")), "Ann%");
        assert_eq!(prefix_pattern(Some("50%_\\")), "50\\%\\_\\\\%");
    }

    #[test]
    fn only_a_full_page_has_a_next_cursor() {
        assert_eq!(Page::new(vec![1, 2], 2, |n| *n).next, Some(2));
        assert_eq!(Page::new(vec![1], 2, |n| *n).next, None);
        assert_eq!(Page::new(Vec::<i32>::new(), 2, |n| *n).next, None);
    }
}

/// A post's comments as a query to refine before it runs (the "dynamic
/// relationship"): from `PostRepository::comments_query`, run by
/// `PostRepository::load_comments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentsQuery {
    pub(crate) post_id: i32,
    pub(crate) author_id: Option<i32>,
    pub(crate) after: Option<i32>,
    pub(crate) newest_first: bool,
    pub(crate) limit: Option<i64>,
}

impl CommentsQuery {
    pub(crate) fn new(post_id: i32) -> Self {
        Self {
            post_id,
            author_id: None,
            after: None,
            newest_first: false,
            limit: None,
        }
    }

    /// Only comments written by this user.
    #[must_use]
    pub fn by_author(mut self, author_id: i32) -> Self {
        self.author_id = Some(author_id);
        self
    }

    /// Only comments with an id above this one.
    #[must_use]
    pub fn after(mut self, id: i32) -> Self {
        self.after = Some(id);
        self
    }

    /// Newest first (the default is oldest first).
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// At most `n` comments.
    #[must_use]
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// Rows in a table and its highest id (`None` when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// `COUNT(*)`.
    pub rows: i64,
    /// `MAX(id)`.
    pub max_id: Option<i32>,
}

/// The size of every table: what a resumable load needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSizes {
    /// `users`.
    pub users: TableSize,
    /// `posts`.
    pub posts: TableSize,
    /// `comments`.
    pub comments: TableSize,
}
