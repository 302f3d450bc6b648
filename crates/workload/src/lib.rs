//! keel-workload: the "blog" benchmark workload of `docs/workload.md`, as data.
//!
//! - **Rows.** [`Workload::users`], [`Workload::posts`] and
//!   [`Workload::comments`] yield the exact rows the formulas give, as
//!   keel-models insert structs, one at a time or in chunks
//!   ([`Rows::chunks`]), so 310,000 rows need not sit in memory at once.
//!   Inserted in that order into fresh tables, row *n* gets id *n*, which is
//!   the id the posts' and comments' foreign keys assume.
//! - **Lookups.** [`Workload::lookup_ids`]: Python's
//!   `random.Random(42).randint(1, U)` sequence, from [`Mt19937`].
//! - **Checksums.** [`Workload::expected_load`], [`Workload::expected_graph`],
//!   [`Workload::expected_lookups`], [`Workload::expected_join`], computed
//!   from the formulas for any size.
//! - **Load check.** [`Workload::mismatched_rows_sql`]: one statement, the
//!   same on PostgreSQL and SQLite, counting rows that break a formula.
//!
//! ```
//! use keel_workload::Workload;
//!
//! let workload = Workload::new(1_000, 10, 2)?;
//! assert_eq!(workload.posts().len(), 10_000);
//! let first = workload.posts().next().expect("one post at least");
//! assert_eq!(first.title, "Post 1 by 1");
//! assert_eq!(workload.lookup_ids(3), [655, 115, 26]);
//! assert_eq!(workload.expected_graph().users, 900);
//! # Ok::<(), keel_workload::WorkloadError>(())
//! ```

mod checksums;
mod mt19937;
mod rows;
mod verify;

pub use checksums::{GraphChecksum, JoinChecksum, LoadChecksum, LookupChecksum};
pub use mt19937::Mt19937;
pub use rows::{Chunks, Rows, TAG_COUNT};

/// Users the eager-load steps (B2, B3) load: the first this many active ones.
pub const GRAPH_USER_LIMIT: usize = 1_000;
/// Lookups in B4 and B6.
pub const LOOKUP_COUNT: usize = 10_000;
/// Queries in B5: the first this many ids of the lookup sequence.
pub const JOIN_QUERY_COUNT: usize = 1_000;
/// Characters in every post's `content`.
pub const POST_CONTENT_LEN: usize = 200;
/// The seed key of the lookup sequence: Python's `random.Random(42)`.
pub const LOOKUP_SEED: u32 = 42;

/// The workload's sizes: U users, P posts per user, C comments per post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    users: i32,
    posts_per_user: i32,
    comments_per_post: i32,
}

/// Sizes the workload cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// A size below 1.
    #[error("{name} must be at least 1 (got {value})")]
    NotPositive {
        /// `users`, `posts_per_user` or `comments_per_post`.
        name: &'static str,
        /// The value given.
        value: i64,
    },
    /// More rows in a table than an `INTEGER` id can number.
    #[error(
        "{users} users x {posts_per_user} posts x {comments_per_post} comments gives ids past 2^31-1"
    )]
    TooLarge {
        /// U.
        users: i64,
        /// P.
        posts_per_user: i64,
        /// C.
        comments_per_post: i64,
    },
}

impl Default for Workload {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Workload {
    /// The workload's defaults (docs/workload.md): 10,000 users, 10 posts each,
    /// 2 comments per post.
    pub const DEFAULT: Self = Self {
        users: 10_000,
        posts_per_user: 10,
        comments_per_post: 2,
    };

    /// A workload of `users` users, `posts_per_user` posts each and
    /// `comments_per_post` comments per post. Every size is at least 1, and
    /// the comments' ids (U·P·C) must fit an `INTEGER` column.
    pub fn new(
        users: i64,
        posts_per_user: i64,
        comments_per_post: i64,
    ) -> Result<Self, WorkloadError> {
        for (name, value) in [
            ("users", users),
            ("posts_per_user", posts_per_user),
            ("comments_per_post", comments_per_post),
        ] {
            if value < 1 {
                return Err(WorkloadError::NotPositive { name, value });
            }
        }
        let too_large = || WorkloadError::TooLarge {
            users,
            posts_per_user,
            comments_per_post,
        };
        let comments = users
            .checked_mul(posts_per_user)
            .and_then(|posts| posts.checked_mul(comments_per_post))
            .ok_or_else(too_large)?;
        if comments > i64::from(i32::MAX) {
            return Err(too_large());
        }
        // Each size is at most U·P·C <= i32::MAX, so each conversion is exact.
        let narrow = |n: i64| i32::try_from(n).map_err(|_| too_large());
        Ok(Self {
            users: narrow(users)?,
            posts_per_user: narrow(posts_per_user)?,
            comments_per_post: narrow(comments_per_post)?,
        })
    }

    /// U: how many users.
    pub fn user_count(&self) -> i32 {
        self.users
    }

    /// P: posts per user.
    pub fn posts_per_user(&self) -> i32 {
        self.posts_per_user
    }

    /// C: comments per post.
    pub fn comments_per_post(&self) -> i32 {
        self.comments_per_post
    }

    /// U·P: how many posts.
    pub fn post_count(&self) -> i32 {
        // Checked in `new`: U·P·C fits, so U·P does.
        self.users * self.posts_per_user
    }

    /// U·P·C: how many comments.
    pub fn comment_count(&self) -> i32 {
        self.post_count() * self.comments_per_post
    }

    /// U + U·P + U·P·C: every row of the load.
    pub fn row_count(&self) -> u64 {
        [self.user_count(), self.post_count(), self.comment_count()]
            .into_iter()
            .map(|n| u64::from(n.unsigned_abs()))
            .sum()
    }

    /// The first `count` ids of the lookup sequence: Python's
    /// `rng = random.Random(42); [rng.randint(1, U) for _ in range(count)]`.
    /// B4 and B6 use [`LOOKUP_COUNT`] of them, B5 the first [`JOIN_QUERY_COUNT`].
    pub fn lookup_ids(&self, count: usize) -> Vec<i32> {
        let mut generator = Mt19937::from_key(&[LOOKUP_SEED]);
        (0..count)
            .map(|_| generator.randint(1, self.users))
            .collect()
    }

    /// The email of user `id`, the key B4 and B5 look users up by.
    pub fn email(id: i32) -> String {
        format!("user{id}@example.com")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_be_positive_and_fit_an_integer_id() {
        assert_eq!(
            Workload::new(0, 10, 2),
            Err(WorkloadError::NotPositive {
                name: "users",
                value: 0
            })
        );
        assert!(matches!(
            Workload::new(10, 10, -1),
            Err(WorkloadError::NotPositive {
                name: "comments_per_post",
                ..
            })
        ));
        assert!(matches!(
            Workload::new(100_000, 100_000, 1),
            Err(WorkloadError::TooLarge { .. })
        ));
        assert!(matches!(
            Workload::new(i64::MAX, 2, 2),
            Err(WorkloadError::TooLarge { .. })
        ));
        let largest = Workload::new(i64::from(i32::MAX), 1, 1).expect("U·P·C = 2^31-1 fits");
        assert_eq!(largest.comment_count(), i32::MAX);
    }

    #[test]
    fn default_sizes_give_310_000_rows() {
        let workload = Workload::default();
        assert_eq!(workload, Workload::new(10_000, 10, 2).expect("valid"));
        assert_eq!(workload.user_count(), 10_000);
        assert_eq!(workload.post_count(), 100_000);
        assert_eq!(workload.comment_count(), 200_000);
        assert_eq!(workload.row_count(), 310_000);
    }

    #[test]
    fn lookup_sequence_matches_workload_md() {
        let workload = Workload::DEFAULT;
        let ids = workload.lookup_ids(LOOKUP_COUNT);
        assert_eq!(
            ids[..10],
            [1825, 410, 4507, 4013, 3658, 2287, 1680, 8936, 1425, 9675]
        );
        assert_eq!(ids.iter().map(|&id| i64::from(id)).sum::<i64>(), 50_353_186);
        assert!(ids.iter().all(|&id| (1..=10_000).contains(&id)));

        let small = Workload::new(1_000, 10, 2).expect("valid");
        let ids = small.lookup_ids(LOOKUP_COUNT);
        assert_eq!(ids.iter().map(|&id| i64::from(id)).sum::<i64>(), 5_021_696);
        assert!(ids.iter().all(|&id| (1..=1_000).contains(&id)));
    }

    #[test]
    fn a_shorter_sequence_is_a_prefix_of_a_longer_one() {
        let workload = Workload::DEFAULT;
        let long = workload.lookup_ids(LOOKUP_COUNT);
        assert_eq!(
            workload.lookup_ids(JOIN_QUERY_COUNT),
            long[..JOIN_QUERY_COUNT]
        );
        assert!(workload.lookup_ids(0).is_empty());
    }

    #[test]
    fn one_user_is_always_looked_up() {
        let workload = Workload::new(1, 1, 1).expect("valid");
        assert_eq!(workload.lookup_ids(5), [1, 1, 1, 1, 1]);
    }
}
