//! The rows of the load, by the formulas of the workload (docs/workload.md),
//! as keel-models insert structs: one row by id, all rows in id order, or in
//! chunks.

use std::ops::Range;

use keel_models::{NewComment, NewPost, NewUser};

use crate::{POST_CONTENT_LEN, Workload};

impl Workload {
    /// User `id` (1..=U): `user{i}@example.com`, `First{i} Last{i}`,
    /// `First{i}`, `Last{i % 1000}`, active unless `i % 10 == 0`.
    pub fn user(&self, id: i32) -> NewUser {
        NewUser {
            email: Self::email(id),
            full_name: format!("First{id} Last{id}"),
            first_name: Some(format!("First{id}")),
            last_name: Some(format!("Last{}", id % 1000)),
            is_active: id % 10 != 0,
        }
    }

    /// Post `id` (1..=U·P): the `j`-th post of user `i`, where
    /// `id = (i-1)·P + j`. Its content is `"Post {j} by user {i}. "` repeated
    /// and cut to 200 characters.
    pub fn post(&self, id: i32) -> NewPost {
        let author_id = (id - 1) / self.posts_per_user + 1;
        let j = (id - 1) % self.posts_per_user + 1;
        let unit = format!("Post {j} by user {author_id}. ");
        let mut content = unit.repeat(POST_CONTENT_LEN / unit.len() + 1);
        // Every character is ASCII, so 200 bytes are 200 characters.
        content.truncate(POST_CONTENT_LEN);
        NewPost {
            title: format!("Post {j} by {author_id}"),
            content,
            author_id,
        }
    }

    /// Comment `id` (1..=U·P·C): the `k`-th comment on post `post_id`, where
    /// `id = (post_id-1)·C + k`, written by user `((post_id + k) % U) + 1`.
    pub fn comment(&self, id: i32) -> NewComment {
        let post_id = (id - 1) / self.comments_per_post + 1;
        let k = (id - 1) % self.comments_per_post + 1;
        // post_id + k <= U·P·C + 1 could pass i32::MAX only at that very
        // limit; add in i64 and reduce.
        let author = (i64::from(post_id) + i64::from(k)) % i64::from(self.users) + 1;
        NewComment {
            body: format!("Comment {k} on post {post_id}"),
            post_id,
            // author <= U, an i32.
            author_id: i32::try_from(author).unwrap_or(self.users),
        }
    }

    /// Every user, id 1 first.
    pub fn users(&self) -> Rows<NewUser> {
        Rows::new(*self, 1..self.users + 1, Self::user)
    }

    /// Every post, id 1 first: user 1's P posts, then user 2's, ...
    pub fn posts(&self) -> Rows<NewPost> {
        Rows::new(*self, 1..self.post_count() + 1, Self::post)
    }

    /// Every comment, id 1 first: post 1's C comments, then post 2's, ...
    pub fn comments(&self) -> Rows<NewComment> {
        Rows::new(*self, 1..self.comment_count() + 1, Self::comment)
    }
}

/// Rows of one table in id order, made one at a time as they are taken.
/// [`Rows::ids`] says which ids are still to come.
#[derive(Debug, Clone)]
pub struct Rows<T> {
    workload: Workload,
    ids: Range<i32>,
    make: fn(&Workload, i32) -> T,
}

impl<T> Rows<T> {
    fn new(workload: Workload, ids: Range<i32>, make: fn(&Workload, i32) -> T) -> Self {
        Self {
            workload,
            ids,
            make,
        }
    }

    /// The ids still to come (the id each row will get when inserted in
    /// order into a fresh table).
    pub fn ids(&self) -> Range<i32> {
        self.ids.clone()
    }

    /// The remaining rows in `Vec`s of `rows_per_chunk` (the last may be
    /// shorter; 0 is taken as 1).
    pub fn chunks(self, rows_per_chunk: usize) -> Chunks<T> {
        Chunks {
            rows: self,
            rows_per_chunk: rows_per_chunk.max(1),
        }
    }
}

impl<T> Iterator for Rows<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let id = self.ids.next()?;
        Some((self.make)(&self.workload, id))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }

    fn nth(&mut self, n: usize) -> Option<T> {
        let id = self.ids.nth(n)?;
        Some((self.make)(&self.workload, id))
    }
}

impl<T> ExactSizeIterator for Rows<T> {}

impl<T> std::iter::FusedIterator for Rows<T> {}

/// Rows in chunks: from [`Rows::chunks`].
#[derive(Debug, Clone)]
pub struct Chunks<T> {
    rows: Rows<T>,
    rows_per_chunk: usize,
}

impl<T> Iterator for Chunks<T> {
    type Item = Vec<T>;

    fn next(&mut self) -> Option<Vec<T>> {
        let size = self.rows_per_chunk.min(self.rows.len());
        if size == 0 {
            return None;
        }
        Some(self.rows.by_ref().take(size).collect())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let chunks = self.rows.len().div_ceil(self.rows_per_chunk);
        (chunks, Some(chunks))
    }
}

impl<T> ExactSizeIterator for Chunks<T> {}

/// How many tags the workload has: `tag0` to `tag49`.
pub const TAG_COUNT: i32 = 50;

impl Workload {
    /// The name of tag `k` (0 ≤ k < [`TAG_COUNT`]).
    pub fn tag_name(k: i32) -> String {
        format!("tag{k}")
    }

    /// The tags post `post_id` carries: `post_id % 50` and
    /// `(post_id · 7) % 50`, one tag when the two agree (every 25th post).
    pub fn tags_of_post(post_id: i32) -> Vec<i32> {
        let first = post_id % TAG_COUNT;
        // (post_id · 7) % 50 without overflowing at the largest ids.
        let second = first * 7 % TAG_COUNT;
        if first == second {
            vec![first]
        } else {
            vec![first, second]
        }
    }

    /// The comment that comment `id` replies to: every tenth comment
    /// replies to the one before it, when that one is on the same post.
    pub fn parent_of_comment(&self, id: i32) -> Option<i32> {
        (id % 10 == 0 && id > 1 && self.comment(id - 1).post_id == self.comment(id).post_id)
            .then_some(id - 1)
    }

    /// How many `post_tags` rows the load has.
    pub fn post_tag_count(&self) -> usize {
        (1..=self.post_count())
            .map(|id| Self::tags_of_post(id).len())
            .sum()
    }

    /// How many comments are replies.
    pub fn reply_count(&self) -> usize {
        (1..=self.comment_count())
            .filter(|id| self.parent_of_comment(*id).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Workload {
        Workload::new(1_000, 10, 2).expect("valid sizes")
    }

    #[test]
    fn users_follow_the_formulas() {
        let workload = small();
        let users: Vec<NewUser> = workload.users().collect();
        assert_eq!(users.len(), 1_000);
        assert_eq!(
            users[0],
            NewUser {
                email: "user1@example.com".into(),
                full_name: "First1 Last1".into(),
                first_name: Some("First1".into()),
                last_name: Some("Last1".into()),
                is_active: true,
            }
        );
        let tenth = &users[9];
        assert_eq!(tenth.email, "user10@example.com");
        assert!(!tenth.is_active);
        let last = &users[999];
        assert_eq!(last.full_name, "First1000 Last1000");
        assert_eq!(last.last_name.as_deref(), Some("Last0"));
        assert_eq!(users.iter().filter(|u| u.is_active).count(), 900);
    }

    #[test]
    fn posts_follow_the_formulas() {
        let workload = small();
        let post = workload.post(1);
        assert_eq!(post.title, "Post 1 by 1");
        assert_eq!(post.author_id, 1);
        assert_eq!(post.content.len(), 200);
        assert!(
            post.content
                .starts_with("Post 1 by user 1. Post 1 by user 1. ")
        );
        let unit = "Post 1 by user 1. ";
        assert_eq!(post.content, unit.repeat(200 / unit.len() + 1)[..200]);

        // id = (i-1)·P + j: post 25 is user 3's 5th.
        let post = workload.post(25);
        assert_eq!(post.title, "Post 5 by 3");
        assert_eq!(post.author_id, 3);
        let last = workload.posts().last().expect("posts");
        assert_eq!(last.title, "Post 10 by 1000");
        assert_eq!(last.author_id, 1_000);
        let unit = "Post 10 by user 1000. ";
        assert_eq!(last.content, unit.repeat(200 / unit.len() + 1)[..200]);
        assert_eq!(workload.posts().len(), 10_000);
    }

    #[test]
    fn comments_follow_the_formulas() {
        let workload = small();
        let comments: Vec<NewComment> = workload.comments().collect();
        assert_eq!(comments.len(), 20_000);
        assert_eq!(
            comments[0],
            NewComment {
                body: "Comment 1 on post 1".into(),
                post_id: 1,
                author_id: 3,
            }
        );
        // id = (post_id-1)·C + k: comment 8 is post 4's 2nd, by (4+2)%U+1.
        assert_eq!(comments[7].body, "Comment 2 on post 4");
        assert_eq!(comments[7].post_id, 4);
        assert_eq!(comments[7].author_id, 7);
        let last = &comments[19_999];
        assert_eq!(last.body, "Comment 2 on post 10000");
        assert_eq!(last.author_id, (10_000 + 2) % 1_000 + 1);
    }

    #[test]
    fn chunks_cover_every_row_once_in_order() {
        let workload = small();
        let chunks = workload.comments().chunks(6_553);
        assert_eq!(chunks.len(), 4);
        let sizes: Vec<usize> = chunks.clone().map(|c| c.len()).collect();
        assert_eq!(sizes, [6_553, 6_553, 6_553, 341]);
        let flattened: Vec<NewComment> = chunks.flatten().collect();
        assert_eq!(flattened, workload.comments().collect::<Vec<_>>());
        assert_eq!(workload.users().chunks(0).len(), 1_000);
    }

    #[test]
    fn rows_report_the_ids_they_will_get() {
        let workload = small();
        let mut posts = workload.posts();
        assert_eq!(posts.ids(), 1..10_001);
        let tenth = posts.nth(9).expect("ten posts");
        assert_eq!(tenth, workload.post(10));
        assert_eq!(posts.ids(), 11..10_001);
        assert_eq!(posts.len(), 9_990);
    }
}
