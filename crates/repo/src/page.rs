//! What repositories share around a call: keyset pages, table sizes, and
//! turning "no row" into a typed error.

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
    pub fn new(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i32) -> Self {
        let full = i64::try_from(items.len()).is_ok_and(|n| n == limit);
        let next = if full { items.last().map(id) } else { None };
        Self { items, next }
    }
}

/// `row`, or `NotFound` for `entity` with `key`.
pub fn found<T>(
    row: Option<T>,
    entity: &'static str,
    key: impl FnOnce() -> String,
) -> Result<T, RepoError> {
    row.ok_or_else(|| RepoError::NotFound { entity, key: key() })
}

/// `Ok` when one row was deleted, `NotFound` when none was.
pub fn deleted(rows: usize, entity: &'static str, id: i32) -> Result<(), RepoError> {
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
pub fn prefix_pattern(prefix: Option<&str>) -> String {
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

/// Rows in a table and its highest id (`None` when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// `COUNT(*)`.
    pub rows: i64,
    /// `MAX(id)`.
    pub max_id: Option<i32>,
}
