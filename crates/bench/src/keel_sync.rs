//! The steps through keel-repo's blocking API (`keel_repo::sync`), using
//! only its public repositories.

use std::time::Instant;

use keel_repo::sync::Database;
use keel_repo::{DatabaseConfig, DatabaseUrl, RepoError};
use keel_workload::{GRAPH_USER_LIMIT, JoinChecksum, LookupChecksum, Workload};

use crate::steps::{Contender, LoadRows, POOL_SIZE, Run, TableSeconds, graph_rows, walk_graph};

/// keel-repo, sync mode.
pub struct KeelSync {
    db: Database,
}

impl KeelSync {
    /// Opens keel's pool on `url` (16 connections at most).
    pub fn connect(url: DatabaseUrl) -> anyhow::Result<Self> {
        let mut config = DatabaseConfig::new(url);
        config.pool_size = POOL_SIZE;
        Ok(Self {
            db: Database::connect(&config)?,
        })
    }

    fn statements(&self) -> u64 {
        self.db.statements().count()
    }
}

/// B2's and B3's user limit as keel's `i64`.
pub fn graph_limit() -> i64 {
    i64::try_from(GRAPH_USER_LIMIT).unwrap_or(i64::MAX)
}

impl Contender for KeelSync {
    /// One `create_many` per table. Each opens a transaction of its own:
    /// on SQLite, keel-repo's bulk insert cannot join an open transaction
    /// (diesel's `AlreadyInTransaction`), so WORKLOAD.md's single
    /// transaction is three here, on both backends alike.
    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>> {
        let before = self.statements();
        let start = Instant::now();
        self.db.users().create_many(&rows.users)?;
        let users_done = start.elapsed();
        self.db.posts().create_many(&rows.posts)?;
        let posts_done = start.elapsed();
        self.db.comments().create_many(&rows.comments)?;
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: rows.len(),
            checksum: (),
            tables: Some(TableSeconds {
                users: users_done.as_secs_f64(),
                posts: (posts_done - users_done).as_secs_f64(),
                comments: (elapsed - posts_done).as_secs_f64(),
            }),
        })
    }

    fn eager_load(&mut self) -> anyhow::Result<Run<keel_workload::GraphChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        let users = self
            .db
            .users()
            .users_with_posts_and_comments(graph_limit())?;
        let checksum = walk_graph(&users, |u| &u.posts, |p| &p.comments, |c| c.body.as_str());
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn n_plus_one(&mut self) -> anyhow::Result<Run<keel_workload::GraphChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        let posts = self.db.posts();
        let mut graph = Vec::new();
        for user in self.db.users().active_users(graph_limit())? {
            let mut user_posts = Vec::new();
            for post in posts.by_author(user.id)? {
                let comments = posts.load_comments(&posts.comments_query(post.id))?;
                user_posts.push((post, comments));
            }
            graph.push((user, user_posts));
        }
        let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn point_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Run<LookupChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        let users = self.db.users();
        let mut checksum = LookupChecksum::default();
        for &id in ids {
            match users.get_by_email(&Workload::email(id)) {
                Ok(user) => checksum.add(Some(user.id)),
                Err(RepoError::NotFound { .. }) => checksum.add(None),
                Err(other) => return Err(other.into()),
            }
        }
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: checksum.found,
            checksum,
            tables: None,
        })
    }

    fn join_filter(&mut self, ids: &[i32]) -> anyhow::Result<Run<JoinChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        let posts = self.db.posts();
        let mut checksum = JoinChecksum::default();
        for &id in ids {
            let found = posts.by_author_email(&Workload::email(id))?;
            checksum.add_query(found.iter().map(|post| post.id));
        }
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: checksum.rows,
            checksum,
            tables: None,
        })
    }
}
