//! The steps through keel-repo's async API (`keel_repo::asynchronous`),
//! using only its public repositories, each step driven to completion on the
//! bench's one tokio runtime.

use keel_repo::prelude::{CommentsExt as _, PostsExt as _, UsersExt as _};
use std::sync::Arc;
use std::time::Instant;

use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::{DatabaseConfig, DatabaseUrl, RepoError};
use keel_workload::{GraphChecksum, JoinChecksum, LookupChecksum, Workload};
use tokio::runtime::Handle;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::guard::{B2_UNIT, B4_UNIT, ScopeTally, async_unit};
use crate::keel_sync::graph_limit;
use crate::steps::{
    B6_TASKS, Contender, Guarded, LoadRows, POOL_SIZE, Run, TableSeconds, graph_rows, task_share,
    walk_graph,
};

/// keel-repo, async mode.
pub struct KeelAsync {
    runtime: Handle,
    db: Arc<AsyncDatabase>,
}

impl KeelAsync {
    /// Opens keel's async pool on `url` (16 connections) and warms it (see
    /// [`warm_up`]).
    pub fn connect(runtime: Handle, url: DatabaseUrl) -> anyhow::Result<Self> {
        let mut config = DatabaseConfig::new(url);
        config.pool_size = POOL_SIZE;
        let db = Self::open(&runtime, &config)?;
        Ok(Self { runtime, db })
    }

    fn open(runtime: &Handle, config: &DatabaseConfig) -> anyhow::Result<Arc<AsyncDatabase>> {
        let postgres = matches!(config.url, DatabaseUrl::Postgres(_));
        let db = Arc::new(runtime.block_on(AsyncDatabase::connect(config))?);
        runtime.block_on(warm_up(&db, postgres))?;
        Ok(db)
    }

    fn statements(&self) -> u64 {
        self.db.statements().count()
    }

    /// B2, plain (`tally` is `None`) or with the whole step as one unit of
    /// work in a `QueryScope` that follows the task (the N+1 guard on).
    fn eager_load_with(
        &self,
        tally: Option<&mut ScopeTally>,
    ) -> anyhow::Result<Run<GraphChecksum>> {
        let before = self.statements();
        let db = &self.db;
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let users = async_unit(
                tally,
                B2_UNIT,
                db.users().users_with_posts_and_comments(graph_limit()),
            )
            .await?;
            let checksum = walk_graph(&users, |u| &u.posts, |p| &p.comments, |c| c.body.as_str());
            Ok::<_, RepoError>((start.elapsed(), checksum))
        })?;
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
        let db = &self.db;
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            // One session, as in the workload (docs/workload.md): one connection
            // for the whole step.
            let session = db.session().await?;
            let users = session.users();
            let mut checksum = LookupChecksum::default();
            for &id in ids {
                let email = Workload::email(id);
                let unit = users.get_by_email(&email);
                match async_unit(tally.as_deref_mut(), B4_UNIT, unit).await {
                    Ok(user) => checksum.add(Some(user.id)),
                    Err(RepoError::NotFound { .. }) => checksum.add(None),
                    Err(other) => return Err(other),
                }
            }
            Ok((start.elapsed(), checksum))
        })?;
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: checksum.found,
            checksum,
            tables: None,
        })
    }
}

/// keel-repo has no warm-up call, so the bench opens the pool's 16
/// connections through its public API before any step (nothing here is
/// timed or counted in a step).
///
/// PostgreSQL: 16 transactions held open at once (a barrier inside each)
/// make the pool open 16 connections; BEGIN takes no lock there and BEGIN
/// and COMMIT are not counted as statements. SQLite: its transactions take
/// the write lock when they begin, so 16 could not be open at once; instead,
/// rounds of 16 simultaneous reads (connections there open in microseconds,
/// so warmth matters less).
async fn warm_up(db: &Arc<AsyncDatabase>, postgres: bool) -> anyhow::Result<()> {
    let size = usize::try_from(POOL_SIZE)?;
    let rounds = if postgres { 1 } else { 3 };
    for _ in 0..rounds {
        let barrier = Arc::new(Barrier::new(size));
        let mut tasks = JoinSet::new();
        for _ in 0..size {
            let db = Arc::clone(db);
            let barrier = Arc::clone(&barrier);
            tasks.spawn(async move {
                if postgres {
                    db.transaction(async |_tx| {
                        barrier.wait().await;
                        Ok::<_, RepoError>(())
                    })
                    .await
                } else {
                    barrier.wait().await;
                    db.users().page(None, 1).await.map(drop)
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    }
    Ok(())
}

impl Contender for KeelAsync {
    fn reopen(&mut self) -> anyhow::Result<()> {
        self.db = Self::open(&self.runtime, self.db.config())?;
        Ok(())
    }

    /// keel's async load path: `db.run_blocking` hands the same sync
    /// transaction as in sync mode (`insert_many` per table, one commit) to
    /// a blocking thread, where PostgreSQL loads each table with `COPY`.
    /// The rows are moved in, as an owner of them would; they are copied
    /// before the clock starts.
    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>> {
        let before = self.statements();
        let db = &self.db;
        let (users, posts, comments) = (
            rows.users.clone(),
            rows.posts.clone(),
            rows.comments.clone(),
        );
        let (elapsed, users_done, posts_done) = self.runtime.block_on(async {
            let start = Instant::now();
            let (users_done, posts_done) = db
                .run_blocking(move |db| {
                    db.transaction(|tx| {
                        tx.users().insert_many(&users)?;
                        let users_done = start.elapsed();
                        tx.posts().insert_many(&posts)?;
                        let posts_done = start.elapsed();
                        tx.comments().insert_many(&comments)?;
                        Ok::<_, RepoError>((users_done, posts_done))
                    })
                })
                .await?;
            Ok::<_, RepoError>((start.elapsed(), users_done, posts_done))
        })?;
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
        let db = &self.db;
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let posts = db.posts();
            let mut graph = Vec::new();
            for user in db.users().active_users(graph_limit()).await? {
                let mut user_posts = Vec::new();
                for post in posts.by_author(user.id).await? {
                    let comments = posts.load_comments(&posts.comments_query(post.id)).await?;
                    user_posts.push((post, comments));
                }
                graph.push((user, user_posts));
            }
            let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
            Ok::<_, RepoError>((start.elapsed(), checksum))
        })?;
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
        let db = &self.db;
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let session = db.session().await?;
            let posts = session.posts();
            let mut checksum = JoinChecksum::default();
            for &id in ids {
                let found = posts.by_author_email(&Workload::email(id)).await?;
                checksum.add_query(found.iter().map(|post| post.id));
            }
            Ok::<_, RepoError>((start.elapsed(), checksum))
        })?;
        Ok(Run {
            elapsed,
            statements: self.statements() - before,
            rows: checksum.rows,
            checksum,
            tables: None,
        })
    }

    /// 64 tasks; each lookup is its own repository call (its own checkout).
    fn concurrent_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Option<Run<LookupChecksum>>> {
        let before = self.statements();
        let shares: Vec<Vec<i32>> = (0..B6_TASKS).map(|t| task_share(ids, t)).collect();
        let db = &self.db;
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let mut tasks = JoinSet::new();
            for share in shares {
                let db = Arc::clone(db);
                tasks.spawn(async move {
                    let users = db.users();
                    let mut checksum = LookupChecksum::default();
                    for id in share {
                        match users.get_by_id(id).await {
                            Ok(user) => checksum.add(Some(user.id)),
                            Err(RepoError::NotFound { .. }) => checksum.add(None),
                            Err(other) => return Err(other),
                        }
                    }
                    Ok(checksum)
                });
            }
            let mut checksum = LookupChecksum::default();
            while let Some(done) = tasks.join_next().await {
                checksum.merge(done??);
            }
            Ok::<_, anyhow::Error>((start.elapsed(), checksum))
        })?;
        Ok(Some(Run {
            elapsed,
            statements: self.statements() - before,
            rows: checksum.found,
            checksum,
            tables: None,
        }))
    }
}
