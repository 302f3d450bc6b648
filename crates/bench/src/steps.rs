//! What a step is, what one run of it measures, and the interface every
//! contender (keel-repo in each mode, each hand-written baseline) implements.

use std::time::Duration;

use clap::ValueEnum;
use keel_models::{NewComment, NewPost, NewUser};
use keel_workload::{GraphChecksum, JoinChecksum, LookupChecksum, Workload};
use serde::Serialize;

use crate::guard::ScopeTally;

/// A database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite, a file of the bench's own.
    Sqlite,
    /// PostgreSQL, a database of the bench's own.
    Postgres,
}

/// A keel-repo mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `keel_repo::sync` (diesel + r2d2).
    Sync,
    /// `keel_repo::asynchronous` (diesel-async + deadpool).
    Async,
}

/// One step of the workload (docs/workload.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ValueEnum)]
pub enum Step {
    /// bulk_insert: all users, posts and comments into fresh tables.
    #[value(name = "B1")]
    B1,
    /// eager_load: 1000 active users with posts and comments, one query per level.
    #[value(name = "B2")]
    B2,
    /// n_plus_one: the same graph, one query per user and per post.
    #[value(name = "B3")]
    B3,
    /// point_lookup: 10,000 users by email, one after another.
    #[value(name = "B4")]
    B4,
    /// join_filter: 1000 queries of posts joined to users by email.
    #[value(name = "B5")]
    B5,
    /// async_concurrency: 10,000 lookups by id from 64 tasks on 16 connections.
    #[value(name = "B6")]
    B6,
    /// copy_reference: the hand-written COPY BINARY load, the bulk-insert ceiling.
    #[value(name = "B7")]
    B7,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl Mode {
    /// `sync` or `async`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

impl Step {
    /// `B1` … `B7`.
    pub fn name(self) -> &'static str {
        match self {
            Self::B1 => "B1",
            Self::B2 => "B2",
            Self::B3 => "B3",
            Self::B4 => "B4",
            Self::B5 => "B5",
            Self::B6 => "B6",
            Self::B7 => "B7",
        }
    }

    /// The workload's name for the step.
    pub fn title(self) -> &'static str {
        match self {
            Self::B1 => "bulk_insert",
            Self::B2 => "eager_load",
            Self::B3 => "n_plus_one",
            Self::B4 => "point_lookup",
            Self::B5 => "join_filter",
            Self::B6 => "async_concurrency",
            Self::B7 => "copy_reference",
        }
    }

    /// Load steps: each run loads fresh tables.
    pub fn is_load(self) -> bool {
        matches!(self, Self::B1 | Self::B7)
    }

    /// Whether the step exists for this backend and mode: B6 is async
    /// PostgreSQL only, B7 PostgreSQL only.
    pub fn applies_to(self, backend: Backend, mode: Mode) -> bool {
        match self {
            Self::B6 => backend == Backend::Postgres && mode == Mode::Async,
            Self::B7 => backend == Backend::Postgres,
            _ => true,
        }
    }
}

/// Seconds per table of one load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TableSeconds {
    /// Inserting `users`.
    pub users: f64,
    /// Inserting `posts`.
    pub posts: f64,
    /// Inserting `comments`, commit included.
    pub comments: f64,
}

/// One timed run of a step.
#[derive(Debug, Clone)]
pub struct Run<T> {
    /// Wall-clock time of the step alone.
    pub elapsed: Duration,
    /// Statements sent: keel's `db.statements()` counter, or the baseline's
    /// own count of its driver calls.
    pub statements: u64,
    /// Rows inserted or read.
    pub rows: u64,
    /// What the step computed (loads are checked afterwards, untimed).
    pub checksum: T,
    /// Per-table times, for loads.
    pub tables: Option<TableSeconds>,
}

/// The load's rows, built once before anything is timed.
pub struct LoadRows {
    /// Every user, in id order.
    pub users: Vec<NewUser>,
    /// Every post, in id order.
    pub posts: Vec<NewPost>,
    /// Every comment, in id order.
    pub comments: Vec<NewComment>,
}

impl LoadRows {
    /// Materialises `workload`'s rows.
    pub fn new(workload: &Workload) -> Self {
        Self {
            users: workload.users().collect(),
            posts: workload.posts().collect(),
            comments: workload.comments().collect(),
        }
    }

    /// Rows in all three tables.
    pub fn len(&self) -> u64 {
        (self.users.len() + self.posts.len() + self.comments.len()) as u64
    }
}

/// keel-repo in one mode, or a hand-written baseline: the steps it runs.
/// Each method times the step itself (nothing before or after it).
pub trait Contender {
    /// Opens fresh connections after `ANALYZE`, as a service started after
    /// it would have: SQLite loads the planner statistics when a connection
    /// opens, so a connection opened before them plans without them. Both
    /// contenders reopen (on SQLite only: PostgreSQL keeps statistics on
    /// the server), so both plan with the same statistics.
    fn reopen(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Inserts every row into fresh, empty tables (B1; B7 for the COPY baseline).
    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>>;
    /// B2: the first 1000 active users, their posts, those posts' comments,
    /// one query per level.
    fn eager_load(&mut self) -> anyhow::Result<Run<GraphChecksum>>;
    /// B3: the same graph, lazily: one query per user's posts, one per
    /// post's comments.
    fn n_plus_one(&mut self) -> anyhow::Result<Run<GraphChecksum>>;
    /// B4: each id's user by email, one lookup after another.
    fn point_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Run<LookupChecksum>>;
    /// B5: each id's posts, joined to users and filtered by email.
    fn join_filter(&mut self, ids: &[i32]) -> anyhow::Result<Run<JoinChecksum>>;
    /// B6: lookups by id from 64 tasks on a pool of 16 connections, task
    /// `t` taking `ids[t::64]`. `None` where the contender has no async pool.
    fn concurrent_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Option<Run<LookupChecksum>>> {
        let _ = ids;
        Ok(None)
    }
    /// B2 with the N+1 guard on (see [`crate::guard`]): the step is one unit
    /// of work in one `QueryScope`. `None` where there is no guard (the
    /// hand-written baselines).
    fn eager_load_guarded(&mut self) -> anyhow::Result<Option<Guarded<GraphChecksum>>> {
        Ok(None)
    }
    /// B4 with the N+1 guard on: each lookup is one unit of work in a
    /// `QueryScope` of its own. `None` where there is no guard.
    fn point_lookups_guarded(
        &mut self,
        ids: &[i32],
    ) -> anyhow::Result<Option<Guarded<LookupChecksum>>> {
        let _ = ids;
        Ok(None)
    }
}

/// One run with the N+1 guard on, and what its scopes recorded.
pub type Guarded<T> = (Run<T>, ScopeTally);

/// Tasks in B6.
pub const B6_TASKS: usize = 64;
/// Pool connections in B6 (and every async pool of the bench).
pub const POOL_SIZE: u32 = 16;

/// The graph checksum of one user → posts → comments walk, written once for
/// every contender's result shape.
pub fn walk_graph<'a, U, P, C>(
    users: impl IntoIterator<Item = &'a U>,
    posts_of: impl Fn(&'a U) -> &'a [P],
    comments_of: impl Fn(&'a P) -> &'a [C],
    body_of: impl Fn(&'a C) -> &'a str,
) -> GraphChecksum
where
    U: 'a,
    P: 'a,
    C: 'a,
{
    let mut checksum = GraphChecksum::default();
    for user in users {
        checksum.add_user();
        for post in posts_of(user) {
            checksum.add_post();
            for comment in comments_of(post) {
                checksum.add_comment(body_of(comment));
            }
        }
    }
    checksum
}

/// Rows a graph checksum counts: users + posts + comments.
pub fn graph_rows(checksum: &GraphChecksum) -> u64 {
    checksum.users + checksum.posts + checksum.comments
}

/// The ids task `task` of B6 handles: `ids[task::64]`.
pub fn task_share(ids: &[i32], task: usize) -> Vec<i32> {
    ids.iter().skip(task).step_by(B6_TASKS).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b6_and_b7_apply_where_workload_md_says() {
        assert!(Step::B6.applies_to(Backend::Postgres, Mode::Async));
        assert!(!Step::B6.applies_to(Backend::Postgres, Mode::Sync));
        assert!(!Step::B6.applies_to(Backend::Sqlite, Mode::Async));
        assert!(Step::B7.applies_to(Backend::Postgres, Mode::Sync));
        assert!(!Step::B7.applies_to(Backend::Sqlite, Mode::Sync));
        assert!(Step::B3.applies_to(Backend::Sqlite, Mode::Async));
    }

    #[test]
    fn task_shares_split_the_ids_round_robin() {
        let ids: Vec<i32> = (0..130).collect();
        assert_eq!(task_share(&ids, 0), [0, 64, 128]);
        assert_eq!(task_share(&ids, 63), [63, 127]);
        let total: usize = (0..B6_TASKS).map(|t| task_share(&ids, t).len()).sum();
        assert_eq!(total, 130);
    }

    #[test]
    fn walking_a_graph_counts_every_level() {
        let users = vec![(vec![(vec!["ab", "c"],)],), (vec![],)];
        let checksum = walk_graph(&users, |u| &u.0, |p| &p.0, |c| c);
        assert_eq!(checksum.users, 2);
        assert_eq!(checksum.posts, 1);
        assert_eq!(checksum.comments, 2);
        assert_eq!(checksum.comment_body_len_sum, 3);
        assert_eq!(graph_rows(&checksum), 5);
    }
}
