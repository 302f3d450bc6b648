//! The async connection pool over PostgreSQL or SQLite, and transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, MutexGuard};

#[cfg(feature = "bb8")]
use super::pool::bb8_pool;
use super::pool::{PgManager, PoolLibrary, SqliteManager, deadpool_pool, pg_manager};
use crate::conn::{Conn, Isolation};
use crate::executor::{ConnGuard, Executor};
use crate::replicas::{self, ReadGuard, ReplicaPool, ReplicaSet, ReplicaStatus, ReplicaTicket};
use crate::{
    DatabaseConfig, DatabaseUrl, PoolKind, RepoError, RetryPolicy, RetryableError, StatementCounter,
};

/// A pool of async connections to one database, PostgreSQL or SQLite as its
/// URL says. Share it by reference (or in an `Arc`) across tasks.
pub struct AsyncDatabase {
    pool: Pools,
    /// Read replicas (PostgreSQL), each with a pool of its own.
    replicas: Option<Arc<ReplicaSet<Pools>>>,
    statements: StatementCounter,
    config: DatabaseConfig,
    checkouts: AtomicU64,
    #[cfg(feature = "sync")]
    blocking_lane: Arc<super::blocking_lane::BlockingLane>,
}

/// What the pool holds now, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: u64,
    /// Connections open now.
    pub size: u64,
    /// Open connections not checked out.
    pub idle: u64,
    /// Callers waiting for a connection (deadpool; 0 with bb8).
    pub waiting: u64,
    /// Checkouts since the pool was built.
    pub checkouts: u64,
}

#[derive(Clone)]
enum Pools {
    Deadpool(Backends<deadpool::managed::Pool<PgManager>, deadpool::managed::Pool<SqliteManager>>),
    #[cfg(feature = "bb8")]
    Bb8(Backends<bb8_pool::Pool<PgManager>, bb8_pool::Pool<SqliteManager>>),
}

/// One value per backend.
#[doc(hidden)]
#[derive(Clone)]
pub enum Backends<P, S> {
    Postgres(P),
    Sqlite(S),
}

/// A connection checked out of the pool, whichever pool and backend.
#[doc(hidden)]
// One lives per repository call, briefly: boxing it would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
pub enum PooledConn {
    Deadpool(
        Backends<deadpool::managed::Object<PgManager>, deadpool::managed::Object<SqliteManager>>,
    ),
    #[cfg(feature = "bb8")]
    Bb8(Backends<bb8_pool::Pooled<PgManager>, bb8_pool::Pooled<SqliteManager>>),
}

impl ConnGuard for PooledConn {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        Ok(match self {
            Self::Deadpool(Backends::Postgres(c)) => Conn::AsyncPostgres(c),
            Self::Deadpool(Backends::Sqlite(c)) => Conn::Sqlite(c),
            #[cfg(feature = "bb8")]
            Self::Bb8(Backends::Postgres(c)) => Conn::AsyncPostgres(c),
            #[cfg(feature = "bb8")]
            Self::Bb8(Backends::Sqlite(c)) => Conn::Sqlite(c),
        })
    }
}

impl AsyncDatabase {
    /// Opens a pool as `config` says and checks that one connection works.
    /// With replicas, it also opens a pool per replica, checks each once
    /// (a replica that fails the check takes no reads until it passes) and
    /// keeps checking them in a background task while the pool lives.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, RepoError> {
        config
            .check()
            .map_err(|e| RepoError::Connection(e.to_string()))?;
        crate::pgbouncer::check_async_support(config).await?;
        let statements = StatementCounter::new();
        let logged = statements.clone().logging(config.log_statements);
        let pool = Pools::connect(config, &logged, true).await?;
        let replicas = if config.replica_urls.is_empty() {
            None
        } else {
            let set = ReplicaSet::open(config, async |replica_config| {
                Pools::connect(replica_config, &logged, false).await
            })
            .await?;
            let set = Arc::new(set);
            set.check_round(&pool, config).await;
            tokio::spawn(watch_replicas(
                Arc::downgrade(&set),
                pool.clone(),
                config.clone(),
            ));
            Some(set)
        };
        Ok(Self {
            pool,
            replicas,
            #[cfg(feature = "sync")]
            blocking_lane: super::blocking_lane::BlockingLane::new(config, statements.clone()),
            statements,
            config: config.clone(),
            checkouts: AtomicU64::new(0),
        })
    }

    /// Each replica's role, lag, and the reads it took: for health checks
    /// and metrics. Empty without replicas.
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        replicas::status(self.replicas.as_deref())
    }

    /// Reads that went to the primary because no replica was in rotation.
    pub fn reads_without_replica(&self) -> u64 {
        self.replicas.as_ref().map_or(0, |set| set.unrouted())
    }

    /// [`AsyncDatabase::connect`] with [`DatabaseConfig::from_env`].
    pub async fn from_env() -> Result<Self, RepoError> {
        let config =
            DatabaseConfig::from_env().map_err(|e| RepoError::Connection(e.to_string()))?;
        Self::connect(&config).await
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// A fresh in-memory SQLite database with keel's migrations applied, in
    /// one call: for a service's tests, one per test. Its pool has the one
    /// connection that holds the database, so every call sees the same data,
    /// and the database is gone when the pool is dropped.
    pub async fn in_memory() -> Result<Self, RepoError> {
        let config = DatabaseConfig::new(DatabaseUrl::Sqlite(":memory:".into()));
        let db = Self::connect(&config).await?;
        db.run_migrations().await?;
        Ok(db)
    }

    /// Applies keel's pending migrations (on a blocking thread); returns
    /// their names. An in-memory SQLite database is migrated on the pool's
    /// own connection.
    pub async fn run_migrations(&self) -> Result<Vec<String>, RepoError> {
        if self.config.is_in_memory() {
            return crate::executor::migrate_in_place(self).await;
        }
        let url = self.config.migration_url().clone();
        tokio::task::spawn_blocking(move || {
            keel_migrations::Migrator::connect(&url).and_then(|mut migrator| migrator.run_pending())
        })
        .await
        .map_err(|e| RepoError::Connection(e.to_string()))?
        .map_err(|e| RepoError::Connection(self.config.migration_url().redact(&e.to_string())))
    }

    /// Counts the statements run on this pool's connections (those of
    /// [`AsyncDatabase::run_blocking`] included).
    pub fn statements(&self) -> &StatementCounter {
        &self.statements
    }

    /// Runs sync keel-repo code on tokio's blocking pool, with a sync
    /// [`crate::sync::Database`] on the same database, and returns what it
    /// returns. Its pool (at most 2 connections, on top of this pool's) opens
    /// on first use. This is for work that is fastest on a sync connection:
    /// a load of several tables in one transaction, each with `COPY` on
    /// PostgreSQL, is
    ///
    /// ```no_run
    /// # use keel_repo::prelude::*;
    /// # async fn load(db: &keel_repo::asynchronous::AsyncDatabase, users: Vec<keel_models::NewUser>, posts: Vec<keel_models::NewPost>) -> Result<(), keel_repo::RepoError> {
    /// db.run_blocking(move |db| {
    ///     db.transaction(|tx| {
    ///         tx.users().insert_many(&users)?;
    ///         tx.posts().insert_many(&posts)
    ///     })
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The calls count in [`AsyncDatabase::statements`] and in the caller's
    /// `QueryScope`. A panic in `f` is resumed in the caller. On an in-memory
    /// SQLite database it fails with `RepoError::Connection`: a second
    /// connection would open a second, empty database.
    #[cfg(feature = "sync")]
    pub async fn run_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&crate::sync::Database) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        self.blocking_lane.run(f).await
    }

    /// Runs `f` on a connection from the pool: a service's own Diesel
    /// queries, sent with [`run!`](crate::run), or its own operations. The
    /// statements count in [`AsyncDatabase::statements`] and the current
    /// `QueryScope`, errors become [`RepoError`]s, and a strict scope's N+1
    /// check applies, as for keel's own calls. On SQLite `f` runs in place
    /// (see [`crate::executor::drive`]).
    pub async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
    ) -> Result<T, RepoError> {
        super::with_conn(self, f).await
    }

    /// [`AsyncDatabase::with_conn`] for read-only work: on a replica that
    /// has replayed the current scope's writes, when there are replicas
    /// (see [`crate::executor::read`]; `f` is cloned to run again on the
    /// primary should the replica fail). Never write this way.
    pub async fn with_read_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T> + Clone,
    ) -> Result<T, RepoError> {
        crate::executor::read(self, f).await
    }

    /// Runs `f` in one transaction on one connection: `Ok` commits, `Err`
    /// rolls back, and nothing `f` wrote stays. On SQLite the transaction
    /// takes the write lock when it begins (`BEGIN IMMEDIATE`), as in sync
    /// mode. Do not cancel the returned future half-way (no `select!`/timeout
    /// around it): a connection dropped inside a transaction is discarded by
    /// the pool, not reused.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(AsyncTransaction) -> Result<T, E>,
        E: From<RepoError>,
    {
        self.run_transaction(Isolation::Default, f).await
    }

    /// Runs `f` in a SERIALIZABLE transaction (PostgreSQL; on SQLite a
    /// `BEGIN IMMEDIATE` one, serializable by construction), and runs it
    /// again, whole, in a new transaction, when it fails with a
    /// [`RetryableError`]: a serialization failure or deadlock
    /// ([`RepoError::TransactionConflict`]) or SQLite's busy timeout
    /// ([`RepoError::Busy`]). Between attempts it sleeps as `policy` says
    /// (jittered exponential backoff); after `policy.max_attempts` it returns
    /// the last error. `f` may run several times: keep side effects other
    /// than the database's out of it.
    pub async fn transaction_with_retry<T, E, F>(
        &self,
        policy: &RetryPolicy,
        mut f: F,
    ) -> Result<T, E>
    where
        F: AsyncFnMut(AsyncTransaction) -> Result<T, E>,
        E: From<RepoError> + RetryableError,
    {
        let mut attempt = 1;
        loop {
            match self.run_transaction(Isolation::Serializable, &mut f).await {
                Err(error) => match policy.retry_after(attempt, &error) {
                    Some(pause) => {
                        tokio::time::sleep(pause).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
                ok => return ok,
            }
        }
    }

    async fn run_transaction<T, E, F>(&self, isolation: Isolation, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(AsyncTransaction) -> Result<T, E>,
        E: From<RepoError>,
    {
        let mut pooled = self.checkout().await.map_err(E::from)?;
        control(&mut pooled, Control::Begin(isolation)).await?;
        let connection = Arc::new(Mutex::new(Some(pooled)));
        let result = f(AsyncTransaction {
            connection: connection.clone(),
        })
        .await;
        // Take the connection back: a handle the closure kept now finds it gone.
        let Some(mut pooled) = connection.lock().await.take() else {
            return Err(E::from(RepoError::Connection(
                "the transaction's connection went missing".into(),
            )));
        };
        match result {
            Ok(value) => {
                control(&mut pooled, Control::Commit).await?;
                // The commit LSN is read after COMMIT: one read inside the
                // transaction would be lower than the commit record.
                if self.replicas.is_some() {
                    let mut conn = pooled.conn().map_err(E::from)?;
                    replicas::record_commit_lsn(&mut conn).await;
                }
                Ok(value)
            }
            Err(error) => {
                // The caller's error is the one worth reporting; a failed
                // rollback leaves the connection broken, and the pool drops it.
                let _ = control::<RepoError>(&mut pooled, Control::Rollback).await;
                Err(error)
            }
        }
    }

    /// What the pool holds now, and how many checkouts it has served.
    pub fn pool_status(&self) -> PoolStatus {
        let (size, idle, waiting) = self.pool.status();
        PoolStatus {
            max_size: u64::from(self.config.effective_pool_size()),
            size,
            idle,
            waiting,
            checkouts: self.checkouts.load(Ordering::Relaxed),
        }
    }

    pub(crate) async fn checkout(&self) -> Result<PooledConn, RepoError> {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        self.pool.checkout(&self.config).await
    }

    async fn checkout_read(&self) -> Result<ReadGuard<'_, PooledConn>, RepoError> {
        if let Some(set) = &self.replicas
            && let Some((guard, ticket)) = set.checkout_read::<super::Async>().await
        {
            return Ok(on_replica(guard, ticket));
        }
        Ok(ReadGuard::primary(self.checkout().await?))
    }
}

fn on_replica(guard: PooledConn, ticket: ReplicaTicket<'_>) -> ReadGuard<'_, PooledConn> {
    ReadGuard {
        guard,
        replica: Some(ticket),
    }
}

impl Pools {
    /// The pool `config` describes; `verify` opens one connection now.
    async fn connect(
        config: &DatabaseConfig,
        logged: &StatementCounter,
        verify: bool,
    ) -> Result<Self, RepoError> {
        Ok(match (config.pool, &config.url) {
            (PoolKind::Deadpool, DatabaseUrl::Postgres(url)) => Self::Deadpool(Backends::Postgres(
                deadpool_pool::build(
                    pg_manager(config, url, logged, PoolLibrary::Deadpool),
                    config,
                    verify,
                )
                .await?,
            )),
            (PoolKind::Deadpool, DatabaseUrl::Sqlite(path)) => Self::Deadpool(Backends::Sqlite(
                deadpool_pool::build(SqliteManager::new(config, path, logged), config, verify)
                    .await?,
            )),
            #[cfg(feature = "bb8")]
            (PoolKind::Bb8, DatabaseUrl::Postgres(url)) => Self::Bb8(Backends::Postgres(
                bb8_pool::build(
                    pg_manager(config, url, logged, PoolLibrary::Bb8),
                    config,
                    verify,
                )
                .await?,
            )),
            #[cfg(feature = "bb8")]
            (PoolKind::Bb8, DatabaseUrl::Sqlite(path)) => Self::Bb8(Backends::Sqlite(
                bb8_pool::build(SqliteManager::new(config, path, logged), config, verify).await?,
            )),
            #[cfg(not(feature = "bb8"))]
            (PoolKind::Bb8, _) => {
                return Err(RepoError::Connection(
                    "KEEL_POOL=bb8, but keel-repo was built without its `bb8` feature".to_owned(),
                ));
            }
        })
    }

    fn status(&self) -> (u64, u64, u64) {
        match self {
            Self::Deadpool(Backends::Postgres(pool)) => deadpool_pool::status(pool),
            Self::Deadpool(Backends::Sqlite(pool)) => deadpool_pool::status(pool),
            #[cfg(feature = "bb8")]
            Self::Bb8(Backends::Postgres(pool)) => bb8_pool::status(pool),
            #[cfg(feature = "bb8")]
            Self::Bb8(Backends::Sqlite(pool)) => bb8_pool::status(pool),
        }
    }

    async fn checkout(&self, config: &DatabaseConfig) -> Result<PooledConn, RepoError> {
        Ok(match self {
            Self::Deadpool(Backends::Postgres(pool)) => PooledConn::Deadpool(Backends::Postgres(
                deadpool_pool::checkout(pool, config).await?,
            )),
            Self::Deadpool(Backends::Sqlite(pool)) => PooledConn::Deadpool(Backends::Sqlite(
                deadpool_pool::checkout(pool, config).await?,
            )),
            #[cfg(feature = "bb8")]
            Self::Bb8(Backends::Postgres(pool)) => {
                PooledConn::Bb8(Backends::Postgres(bb8_pool::checkout(pool, config).await?))
            }
            #[cfg(feature = "bb8")]
            Self::Bb8(Backends::Sqlite(pool)) => {
                PooledConn::Bb8(Backends::Sqlite(bb8_pool::checkout(pool, config).await?))
            }
        })
    }
}

impl ReplicaPool for Pools {
    type Guard = PooledConn;

    async fn checkout_within(
        &self,
        config: &DatabaseConfig,
        limit: Option<std::time::Duration>,
    ) -> Result<PooledConn, RepoError> {
        match limit {
            None => self.checkout(config).await,
            Some(limit) => tokio::time::timeout(limit, self.checkout(config))
                .await
                .unwrap_or_else(|_| {
                    Err(RepoError::Unavailable(format!(
                        "no connection within {} ms",
                        limit.as_millis()
                    )))
                }),
        }
    }
}

/// Checks the replicas every interval until the pool is dropped.
async fn watch_replicas(
    set: std::sync::Weak<ReplicaSet<Pools>>,
    primary: Pools,
    config: DatabaseConfig,
) {
    let mut ticks = tokio::time::interval(config.replica_check_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(set) = set.upgrade() else { return };
        // A server that accepts the connection and then never answers must
        // not stall the checks (nor keep the pools alive) for good: a round
        // that overruns is dropped, and the next one starts afresh.
        let bound = config
            .replica_check_interval
            .max(std::time::Duration::from_secs(1))
            * (u32::try_from(config.replica_urls.len()).unwrap_or(u32::MAX / 4) + 1)
            * 2;
        if tokio::time::timeout(bound, set.check_round(&primary, &config))
            .await
            .is_err()
        {
            tracing::warn!(
                bound_ms = bound.as_millis(),
                "a replica check round did not finish in time"
            );
        }
    }
}

/// Transaction control on a pooled connection, SQLite's in place.
enum Control {
    Begin(Isolation),
    Commit,
    Rollback,
}

async fn control<E: From<RepoError>>(pooled: &mut PooledConn, control: Control) -> Result<(), E> {
    let mut conn = pooled.conn()?;
    let backend = conn.backend();
    let step = async {
        match control {
            Control::Begin(isolation) => conn.begin(isolation).await,
            Control::Commit => conn.commit().await,
            Control::Rollback => conn.rollback().await,
        }
    };
    let result = crate::executor::drive(backend, step).await;
    // Mapped on the connection: a standby's refusal at BEGIN closes it.
    result.map_err(|e| E::from(crate::error::from_diesel(&mut conn, e)))
}

impl Executor for AsyncDatabase {
    type Mode = super::Async;
    type Guard<'g> = PooledConn;

    async fn checkout(&self) -> Result<PooledConn, RepoError> {
        AsyncDatabase::checkout(self).await
    }

    async fn checkout_read(&self) -> Result<ReadGuard<'_, PooledConn>, RepoError> {
        AsyncDatabase::checkout_read(self).await
    }

    fn records_write_lsn(&self) -> bool {
        self.replicas.is_some()
    }

    #[cfg(feature = "sync")]
    fn blocking_lane(&self) -> Option<&Arc<super::BlockingLane>> {
        matches!(self.config.url, DatabaseUrl::Postgres(_)).then_some(&self.blocking_lane)
    }
}

/// A transaction in progress: a handle on its connection, handed to the
/// closure of [`AsyncDatabase::transaction`] by value (so the closure's
/// future has no borrowed lifetime and can run in a spawned task).
/// Repositories taken from it all run on that connection. Once the
/// transaction has committed or rolled back, calls through a handle kept
/// past it fail with `RepoError::Connection`.
#[derive(Clone)]
pub struct AsyncTransaction {
    connection: Arc<Mutex<Option<PooledConn>>>,
}

impl AsyncTransaction {
    /// Runs `f` on the transaction's connection; see [`AsyncDatabase::with_conn`].
    pub async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
    ) -> Result<T, RepoError> {
        super::with_conn(self, f).await
    }
}

#[doc(hidden)]
pub struct TransactionGuard<'g>(tokio::sync::MappedMutexGuard<'g, PooledConn>);

impl ConnGuard for TransactionGuard<'_> {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        self.0.conn()
    }
}

impl Executor for AsyncTransaction {
    type Mode = super::Async;
    type Guard<'g> = TransactionGuard<'g>;

    async fn checkout(&self) -> Result<TransactionGuard<'_>, RepoError> {
        MutexGuard::try_map(self.connection.lock().await, Option::as_mut)
            .map(TransactionGuard)
            .map_err(|_| RepoError::Connection("the transaction has already ended".into()))
    }
}
