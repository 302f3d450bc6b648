//! The checksums each step must produce, and their expected values computed
//! from the formulas (not looked up in a table), for any size.

use std::fmt;

use serde::Serialize;

use crate::{GRAPH_USER_LIMIT, JOIN_QUERY_COUNT, LOOKUP_COUNT, Workload};

/// B1 and B7: what the tables hold after a load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoadChecksum {
    /// Rows in `users`.
    pub users: u64,
    /// Rows in `posts`.
    pub posts: u64,
    /// Rows in `comments`.
    pub comments: u64,
    /// Rows that break a formula, plus rows missing (see
    /// [`Workload::mismatched_rows_sql`]); 0 for a correct load.
    pub mismatched_rows: u64,
}

/// B2 and B3: the object graph reached from the loaded users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GraphChecksum {
    /// Users returned.
    pub users: u64,
    /// Posts reached through `user.posts`.
    pub posts: u64,
    /// Comments reached through `post.comments`.
    pub comments: u64,
    /// The sum of `len(comment.body)` over those comments.
    pub comment_body_len_sum: u64,
}

/// B4 and B6: lookups of users by email or id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LookupChecksum {
    /// Lookups made.
    pub lookups: u64,
    /// Lookups that found their user (repeated ids count each time).
    pub found: u64,
    /// The sum of the found users' ids.
    pub id_sum: u64,
}

/// B5: posts joined to their author, filtered by the author's email.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JoinChecksum {
    /// Queries run.
    pub queries: u64,
    /// Rows over all queries.
    pub rows: u64,
    /// The sum of the returned posts' ids over all queries.
    pub post_id_sum: u64,
}

impl GraphChecksum {
    /// Counts one user.
    pub fn add_user(&mut self) {
        self.users += 1;
    }

    /// Counts one post.
    pub fn add_post(&mut self) {
        self.posts += 1;
    }

    /// Counts one comment with this body.
    pub fn add_comment(&mut self, body: &str) {
        self.comments += 1;
        self.comment_body_len_sum += body.len() as u64;
    }
}

impl LookupChecksum {
    /// Counts one lookup and, if it found a user, that user's id.
    pub fn add(&mut self, found_id: Option<i32>) {
        self.lookups += 1;
        if let Some(id) = found_id {
            self.found += 1;
            self.id_sum += u64::from(id.unsigned_abs());
        }
    }

    /// Adds another partial checksum (e.g. one task's share of B6).
    pub fn merge(&mut self, other: Self) {
        self.lookups += other.lookups;
        self.found += other.found;
        self.id_sum += other.id_sum;
    }
}

impl JoinChecksum {
    /// Counts one query that returned posts with these ids.
    pub fn add_query(&mut self, post_ids: impl IntoIterator<Item = i32>) {
        self.queries += 1;
        for id in post_ids {
            self.rows += 1;
            self.post_id_sum += u64::from(id.unsigned_abs());
        }
    }
}

impl Workload {
    /// B1, B7: U users, U·P posts, U·P·C comments, no mismatched row.
    pub fn expected_load(&self) -> LoadChecksum {
        LoadChecksum {
            users: count(self.user_count()),
            posts: count(self.post_count()),
            comments: count(self.comment_count()),
            mismatched_rows: 0,
        }
    }

    /// B2, B3: the first [`GRAPH_USER_LIMIT`] active users (by id), every
    /// post of theirs and every comment on those posts, with the comments'
    /// body lengths as the formulas write them.
    pub fn expected_graph(&self) -> GraphChecksum {
        let mut checksum = GraphChecksum::default();
        let active = (1..=self.user_count())
            .filter(|&id| self.user(id).is_active)
            .take(GRAPH_USER_LIMIT);
        for user_id in active {
            checksum.add_user();
            let first_post = (user_id - 1) * self.posts_per_user() + 1;
            for post_id in first_post..first_post + self.posts_per_user() {
                checksum.add_post();
                let first_comment = (post_id - 1) * self.comments_per_post() + 1;
                for comment_id in first_comment..first_comment + self.comments_per_post() {
                    checksum.add_comment(&self.comment(comment_id).body);
                }
            }
        }
        checksum
    }

    /// B4, B6: [`LOOKUP_COUNT`] lookups of the lookup sequence; every id is
    /// in 1..=U, so every lookup finds its user.
    pub fn expected_lookups(&self) -> LookupChecksum {
        let mut checksum = LookupChecksum::default();
        for id in self.lookup_ids(LOOKUP_COUNT) {
            checksum.add((1..=self.user_count()).contains(&id).then_some(id));
        }
        checksum
    }

    /// B5: for each of the first [`JOIN_QUERY_COUNT`] lookup ids, the P posts
    /// of that user (ids `(i-1)·P + 1 ..= i·P`).
    pub fn expected_join(&self) -> JoinChecksum {
        let mut checksum = JoinChecksum::default();
        for user_id in self.lookup_ids(JOIN_QUERY_COUNT) {
            let first_post = (user_id - 1) * self.posts_per_user() + 1;
            checksum.add_query(first_post..first_post + self.posts_per_user());
        }
        checksum
    }
}

fn count(n: i32) -> u64 {
    u64::from(n.unsigned_abs())
}

impl fmt::Display for LoadChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "users {}, posts {}, comments {}, mismatched_rows {}",
            self.users, self.posts, self.comments, self.mismatched_rows
        )
    }
}

impl fmt::Display for GraphChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "users {}, posts {}, comments {}, body_len {}",
            self.users, self.posts, self.comments, self.comment_body_len_sum
        )
    }
}

impl fmt::Display for LookupChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lookups {}, found {}, id_sum {}",
            self.lookups, self.found, self.id_sum
        )
    }
}

impl fmt::Display for JoinChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queries {}, rows {}, post_id_sum {}",
            self.queries, self.rows, self.post_id_sum
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Workload {
        Workload::new(1_000, 10, 2).expect("valid sizes")
    }

    // docs/workload.md, "Checksums", column U=10000, P=10, C=2.
    #[test]
    fn default_size_matches_workload_md() {
        let workload = Workload::DEFAULT;
        assert_eq!(
            workload.expected_load(),
            LoadChecksum {
                users: 10_000,
                posts: 100_000,
                comments: 200_000,
                mismatched_rows: 0
            }
        );
        assert_eq!(
            workload.expected_graph(),
            GraphChecksum {
                users: 1_000,
                posts: 10_000,
                comments: 20_000,
                comment_body_len_sum: 440_002
            }
        );
        assert_eq!(
            workload.expected_lookups(),
            LookupChecksum {
                lookups: 10_000,
                found: 10_000,
                id_sum: 50_353_186
            }
        );
        assert_eq!(
            workload.expected_join(),
            JoinChecksum {
                queries: 1_000,
                rows: 10_000,
                post_id_sum: 508_651_600
            }
        );
    }

    // docs/workload.md, "Checksums", column U=1000, P=10, C=2.
    #[test]
    fn small_size_matches_workload_md() {
        let workload = small();
        assert_eq!(
            workload.expected_load(),
            LoadChecksum {
                users: 1_000,
                posts: 10_000,
                comments: 20_000,
                mismatched_rows: 0
            }
        );
        assert_eq!(
            workload.expected_graph(),
            GraphChecksum {
                users: 900,
                posts: 9_000,
                comments: 18_000,
                comment_body_len_sum: 394_002
            }
        );
        assert_eq!(
            workload.expected_lookups(),
            LookupChecksum {
                lookups: 10_000,
                found: 10_000,
                id_sum: 5_021_696
            }
        );
        assert_eq!(
            workload.expected_join(),
            JoinChecksum {
                queries: 1_000,
                rows: 10_000,
                post_id_sum: 50_146_900
            }
        );
    }

    #[test]
    fn other_sizes_follow_the_formulas() {
        // 11 users (user 10 inactive), 3 posts each, 1 comment per post.
        let workload = Workload::new(11, 3, 1).expect("valid sizes");
        let graph = workload.expected_graph();
        assert_eq!((graph.users, graph.posts, graph.comments), (10, 30, 30));
        // Bodies "Comment 1 on post N" for posts 1-27 and 31-33 (user 10's
        // are 28-30): 19 characters for N < 10, 20 for N >= 10.
        assert_eq!(graph.comment_body_len_sum, 9 * 19 + 21 * 20);
        let join = workload.expected_join();
        assert_eq!(join.rows, 3_000);
        let ids = workload.lookup_ids(JOIN_QUERY_COUNT);
        let expected_sum: u64 = ids
            .iter()
            .map(|&i| {
                let i = u64::from(i.unsigned_abs());
                3 * (3 * (i - 1)) + 6
            })
            .sum();
        assert_eq!(join.post_id_sum, expected_sum);
    }

    #[test]
    fn checksums_accumulate_and_print() {
        let mut lookups = LookupChecksum::default();
        lookups.add(Some(7));
        lookups.add(None);
        let mut other = LookupChecksum::default();
        other.add(Some(3));
        lookups.merge(other);
        assert_eq!(
            lookups,
            LookupChecksum {
                lookups: 3,
                found: 2,
                id_sum: 10
            }
        );
        assert_eq!(lookups.to_string(), "lookups 3, found 2, id_sum 10");

        let mut graph = GraphChecksum::default();
        graph.add_user();
        graph.add_post();
        graph.add_comment("abc");
        assert_eq!(
            graph.to_string(),
            "users 1, posts 1, comments 1, body_len 3"
        );

        let mut join = JoinChecksum::default();
        join.add_query([1, 2]);
        join.add_query([]);
        assert_eq!(join.to_string(), "queries 2, rows 2, post_id_sum 3");
    }
}
