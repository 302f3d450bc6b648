//! The steps through keel-repo's blocking API (`keel_repo::sync`), using
//! only its public repositories.

use keel_repo::prelude::{CommentsExt as _, PostsExt as _, UsersExt as _};
use std::time::Instant;

use keel_repo::sync::Database;
use keel_repo::{DatabaseConfig, DatabaseUrl, RepoError};
use keel_workload::{GRAPH_USER_LIMIT, GraphChecksum, JoinChecksum, LookupChecksum, Workload};

use crate::guard::{B2_UNIT, B4_UNIT, ScopeTally, sync_unit};
use crate::steps::{
    Contender, Guarded, LoadRows, POOL_SIZE, Run, TableSeconds, graph_rows, walk_graph,
};

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

    /// B2, plain (`tally` is `None`) or with the whole step as one unit of
    /// work in a `QueryScope` (the N+1 guard on).
    fn eager_load_with(
        &self,
        tally: Option<&mut ScopeTally>,
    ) -> anyhow::Result<Run<GraphChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        let users = sync_unit(tally, B2_UNIT, || {
            self.db.users().users_with_posts_and_comments(graph_limit())
        })?;
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

    /// B4, plain or with each lookup as one unit of work in a `QueryScope`.
    fn point_lookups_with(
        &self,
        ids: &[i32],
        mut tally: Option<&mut ScopeTally>,
    ) -> anyhow::Result<Run<LookupChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        // One session, as in the workload (docs/workload.md): one connection
        // for the whole step.
        let session = self.db.session()?;
        let users = session.users();
        let mut checksum = LookupChecksum::default();
        for &id in ids {
            let email = Workload::email(id);
            match sync_unit(tally.as_deref_mut(), B4_UNIT, || users.get_by_email(&email)) {
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
}

/// B2's and B3's user limit as keel's `i64`.
pub fn graph_limit() -> i64 {
    i64::try_from(GRAPH_USER_LIMIT).unwrap_or(i64::MAX)
}

impl Contender for KeelSync {
    fn reopen(&mut self) -> anyhow::Result<()> {
        self.db = Database::connect(self.db.config())?;
        Ok(())
    }

    /// The workload's one transaction: `insert_many` (keel's load path, no
    /// `RETURNING`: `COPY` on PostgreSQL, multi-row `INSERT`s on SQLite) for
    /// each table inside one `db.transaction`, one commit at the end.
    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>> {
        let before = self.statements();
        let start = Instant::now();
        let (users_done, posts_done) = self.db.transaction(|tx| {
            tx.users().insert_many(&rows.users)?;
            let users_done = start.elapsed();
            tx.posts().insert_many(&rows.posts)?;
            let posts_done = start.elapsed();
            tx.comments().insert_many(&rows.comments)?;
            Ok::<_, RepoError>((users_done, posts_done))
        })?;
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

    fn eager_load(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        self.eager_load_with(None)
    }

    fn eager_load_guarded(&mut self) -> anyhow::Result<Option<Guarded<GraphChecksum>>> {
        let mut tally = ScopeTally::default();
        let run = self.eager_load_with(Some(&mut tally))?;
        Ok(Some((run, tally)))
    }

    fn n_plus_one(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
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
        self.point_lookups_with(ids, None)
    }

    fn point_lookups_guarded(
        &mut self,
        ids: &[i32],
    ) -> anyhow::Result<Option<Guarded<LookupChecksum>>> {
        let mut tally = ScopeTally::default();
        let run = self.point_lookups_with(ids, Some(&mut tally))?;
        Ok(Some((run, tally)))
    }

    fn join_filter(&mut self, ids: &[i32]) -> anyhow::Result<Run<JoinChecksum>> {
        let before = self.statements();
        let start = Instant::now();
        let session = self.db.session()?;
        let posts = session.posts();
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
