//! The async connection pool over PostgreSQL or SQLite, and transactions.
//!
//! Dead connections: an `AsyncPgConnection` knows when its server went away
//! (tokio-postgres ends the connection task, `is_closed()`), and diesel-async
//! counts that as broken. The recycle check below asks exactly that, with no
//! query: deadpool runs it before handing a pooled connection out, bb8 on
//! checkout (`test_on_check_out`), so after a server restart idle
//! connections are replaced instead of failing a call each.

use diesel::ConnectionError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use super::{
    AsyncConn, AsyncExecutor, CommentRepository, ConnGuard, PostRepository, UserRepository, private,
};
use crate::{
    DatabaseConfig, DatabaseUrl, RepoError, RetryPolicy, RetryableError, StatementCounter,
};

use super::sqlite_calls::SqliteCallRunner;

type SqliteAsync = super::AsyncSqliteConnection;

#[cfg(not(feature = "bb8"))]
mod pool_impl {
    //! deadpool, the default async pool.
    use std::time::Duration;

    use super::*;
    use deadpool::managed::{Hook, HookError, Metrics, QueueMode, TimeoutType};
    use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};

    pub(super) type BackendPool<C> = Pool<C>;

    /// Open connections, idle ones and callers waiting, as deadpool counts them.
    pub(super) fn status<C>(pool: &Pool<C>) -> (u64, u64, u64)
    where
        AsyncDieselConnectionManager<C>: deadpool::managed::Manager,
    {
        let status = pool.status();
        (
            status.size as u64,
            status.available as u64,
            status.waiting as u64,
        )
    }
    pub(super) type Pooled<C> = Object<C>;

    pub(super) async fn build<C>(
        manager: AsyncDieselConnectionManager<C>,
        config: &DatabaseConfig,
    ) -> Result<Pool<C>, RepoError>
    where
        C: Send + 'static,
        AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
    {
        let expiry = Expiry::of(config);
        let mut builder = Pool::builder(manager)
            .max_size(config.effective_pool_size() as usize)
            .wait_timeout(Some(config.checkout_timeout))
            .create_timeout(Some(config.connect_timeout))
            // Hand out the most recently returned connection, as r2d2 does:
            // its prepared statements (and SQLite's page cache) are warm.
            // deadpool's default, FIFO, rotates every call through every
            // idle connection, so each statement is prepared once per
            // connection and a warmed-up pool runs cold for `max_size` calls.
            .queue_mode(QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1);
        if expiry.is_set() {
            // deadpool has no idle timeout or lifetime of its own: a
            // connection past either is discarded instead of handed out…
            builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
                if expiry.expired(metrics) {
                    Err(HookError::message("idle or lifetime limit reached"))
                } else {
                    Ok(())
                }
            }));
        }
        let pool = builder.build().map_err(|e| config.connection_error(e))?;
        if let Some(every) = expiry.sweep_interval() {
            // … and one left idle in the pool is closed by a sweep.
            tokio::spawn(sweep(pool.weak(), expiry, every));
        }
        // Open one connection now, so a bad URL fails here, not on first use.
        drop(checkout(&pool, config).await?);
        Ok(pool)
    }

    /// `DatabaseConfig::idle_timeout` and `max_lifetime`, for deadpool. Idle
    /// time counts from when the connection was last handed out (deadpool's
    /// `Metrics::last_used`), so a connection held for longer than the idle
    /// timeout is replaced at its next checkout.
    #[derive(Clone, Copy)]
    pub(super) struct Expiry {
        idle_timeout: Option<Duration>,
        max_lifetime: Option<Duration>,
    }

    impl Expiry {
        pub(super) fn of(config: &DatabaseConfig) -> Self {
            // An in-memory database lives only as long as its one connection.
            let in_memory = config.effective_pool_size() == 1 && config.pool_size != 1;
            Self {
                idle_timeout: config.idle_timeout.filter(|_| !in_memory),
                max_lifetime: config.max_lifetime.filter(|_| !in_memory),
            }
        }

        fn is_set(&self) -> bool {
            self.idle_timeout.is_some() || self.max_lifetime.is_some()
        }

        pub(super) fn expired(&self, metrics: &Metrics) -> bool {
            self.max_lifetime
                .is_some_and(|limit| metrics.age() >= limit)
                || self
                    .idle_timeout
                    .is_some_and(|limit| metrics.last_used() >= limit)
        }

        /// How often the sweep runs: a quarter of the shorter limit, between
        /// 50 ms and 30 s.
        fn sweep_interval(&self) -> Option<Duration> {
            let shortest = match (self.idle_timeout, self.max_lifetime) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            };
            Some((shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(30)))
        }
    }

    /// Closes idle connections past their limits until the pool is dropped.
    async fn sweep<C>(
        pool: deadpool::managed::WeakPool<AsyncDieselConnectionManager<C>>,
        expiry: Expiry,
        every: Duration,
    ) where
        C: Send + 'static,
        AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
    {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            pool.retain(|_, metrics| !expiry.expired(&metrics));
        }
    }

    pub(super) async fn checkout<C>(
        pool: &Pool<C>,
        config: &DatabaseConfig,
    ) -> Result<Object<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
    {
        pool.get().await.map_err(|e| match e {
            PoolError::Timeout(TimeoutType::Wait) => RepoError::PoolTimeout {
                waited: config.checkout_timeout,
            },
            PoolError::Timeout(TimeoutType::Create) => config.connection_error(format!(
                "no connection could be opened within {:?}",
                config.connect_timeout
            )),
            other => config.connection_error(other),
        })
    }
}

#[cfg(feature = "bb8")]
mod pool_impl {
    //! bb8, with the `bb8` feature.
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;
    use diesel_async::pooled_connection::PoolError;

    /// The bb8 pool, and the last error its connection attempts met.
    pub(super) struct BackendPool<C: 'static>
    where
        AsyncDieselConnectionManager<C>: bb8::ManageConnection,
    {
        pool: bb8::Pool<AsyncDieselConnectionManager<C>>,
        last_error: LastError,
    }

    pub(super) type Pooled<C> = bb8::PooledConnection<'static, AsyncDieselConnectionManager<C>>;

    /// Open connections, idle ones and callers waiting (bb8 does not count
    /// waiters: always 0).
    pub(super) fn status<C>(pool: &BackendPool<C>) -> (u64, u64, u64)
    where
        AsyncDieselConnectionManager<C>: bb8::ManageConnection,
    {
        let state = pool.pool.state();
        (
            u64::from(state.connections),
            u64::from(state.idle_connections),
            0,
        )
    }

    /// bb8 opens connections in tasks of its own and hands their errors to
    /// an error sink only: a caller waiting for a connection sees just
    /// `TimedOut`. This sink keeps the last error, so that a checkout that
    /// timed out while connecting failed can say `Connection` and why,
    /// rather than `PoolTimeout`.
    #[derive(Debug, Clone, Default)]
    struct LastError(Arc<Mutex<Option<(Instant, String)>>>);

    impl LastError {
        /// The error recorded since `since`, if any (and forgets it).
        fn since(&self, since: Instant) -> Option<String> {
            let mut last = self.0.lock().ok()?;
            match last.take() {
                Some((at, message)) if at >= since => Some(message),
                _ => None,
            }
        }
    }

    impl bb8::ErrorSink<PoolError> for LastError {
        fn sink(&self, error: PoolError) {
            if let Ok(mut last) = self.0.lock() {
                *last = Some((Instant::now(), error.to_string()));
            }
        }

        fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
            Box::new(self.clone())
        }
    }

    pub(super) async fn build<C>(
        manager: AsyncDieselConnectionManager<C>,
        config: &DatabaseConfig,
    ) -> Result<BackendPool<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: bb8::ManageConnection<Connection = C, Error = PoolError>,
    {
        let last_error = LastError::default();
        let pool = bb8::Pool::builder()
            .max_size(config.effective_pool_size())
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            // The most recently used connection first, as with deadpool.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .error_sink(Box::new(last_error.clone()))
            .build_unchecked(manager);
        let pool = BackendPool { pool, last_error };
        drop(checkout(&pool, config).await?);
        Ok(pool)
    }

    pub(super) async fn checkout<C>(
        pool: &BackendPool<C>,
        config: &DatabaseConfig,
    ) -> Result<Pooled<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: bb8::ManageConnection<Connection = C, Error = PoolError>,
    {
        let started = Instant::now();
        pool.pool.get_owned().await.map_err(|e| match e {
            bb8::RunError::TimedOut => match pool.last_error.since(started) {
                Some(reason) => config.connection_error(reason),
                None => RepoError::PoolTimeout {
                    waited: config.checkout_timeout,
                },
            },
            bb8::RunError::User(other) => config.connection_error(other),
        })
    }
}

use pool_impl::{BackendPool, Pooled};

/// A pool of async connections to one database, PostgreSQL or SQLite as its
/// URL says. Share it by reference (or in an `Arc`) across tasks.
pub struct AsyncDatabase {
    pool: Pools,
    statements: StatementCounter,
    config: DatabaseConfig,
    checkouts: std::sync::atomic::AtomicU64,
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

enum Pools {
    Postgres(BackendPool<AsyncPgConnection>),
    Sqlite(BackendPool<SqliteAsync>),
}

#[doc(hidden)]
// One lives per repository call, briefly: boxing it would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
pub enum PooledConn {
    Postgres(Pooled<AsyncPgConnection>),
    Sqlite(Pooled<SqliteAsync>),
}

impl ConnGuard for PooledConn {
    fn conn(&mut self) -> AsyncConn<'_> {
        match self {
            Self::Postgres(c) => AsyncConn::Postgres(c),
            Self::Sqlite(c) => AsyncConn::Sqlite(c),
        }
    }
}

/// The manager's settings: no test query on checkout, only the cheap check
/// that the connection is not broken (for PostgreSQL: not closed; see the
/// module docs), and `connect`, which opens a connection and sets it up (it
/// counts statements and, on SQLite, sets the pragmas).
fn manager_config<C, F>(connect: F) -> ManagerConfig<C>
where
    C: PoolableConnection + 'static,
    F: Fn(String) -> futures_setup::SetupFuture<C> + Send + Sync + 'static,
{
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|conn: &mut C| {
        let broken = conn.is_broken();
        Box::pin(async move {
            if broken {
                Err(DieselError::DatabaseError(
                    DatabaseErrorKind::ClosedConnection,
                    Box::new("the pooled connection is closed or broken".to_owned()),
                ))
            } else {
                Ok(())
            }
        })
    }));
    config.custom_setup = Box::new(move |url| connect(url.to_owned()));
    config
}

mod futures_setup {
    use std::pin::Pin;

    pub(super) type SetupFuture<C> =
        Pin<Box<dyn Future<Output = diesel::ConnectionResult<C>> + Send>>;
}

impl AsyncDatabase {
    /// Opens a pool as `config` says and checks that one connection works.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, RepoError> {
        let statements = StatementCounter::new();
        let pool = match &config.url {
            DatabaseUrl::Postgres(url) => {
                let counter = statements.clone();
                let manager = AsyncDieselConnectionManager::new_with_config(
                    config.postgres_url(url),
                    manager_config(move |url| {
                        let counter = counter.clone();
                        Box::pin(async move {
                            let mut conn = AsyncPgConnection::establish(&url).await?;
                            conn.set_instrumentation(counter);
                            Ok(conn)
                        })
                    }),
                );
                Pools::Postgres(pool_impl::build(manager, config).await?)
            }
            DatabaseUrl::Sqlite(path) => {
                let counter = statements.clone();
                let pragmas = config.sqlite_setup_sql();
                let calls = config.sqlite_calls;
                let manager = AsyncDieselConnectionManager::new_with_config(
                    path,
                    manager_config(move |path| {
                        let counter = counter.clone();
                        let pragmas = pragmas.clone();
                        Box::pin(async move {
                            // Opening the file may wait on a lock: off the runtime.
                            let conn = tokio::task::spawn_blocking(move || {
                                <SqliteConnection as diesel::Connection>::establish(&path)
                            })
                            .await
                            .map_err(|e| ConnectionError::BadConnection(e.to_string()))??;
                            let mut conn = SqliteAsync::with_runtime(conn, SqliteCallRunner(calls));
                            conn.batch_execute(&pragmas)
                                .await
                                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                            conn.set_instrumentation(counter);
                            Ok(conn)
                        })
                    }),
                );
                Pools::Sqlite(pool_impl::build(manager, config).await?)
            }
        };
        Ok(Self {
            pool,
            #[cfg(feature = "sync")]
            blocking_lane: super::blocking_lane::BlockingLane::new(config, statements.clone()),
            statements,
            config: config.clone(),
            checkouts: std::sync::atomic::AtomicU64::new(0),
        })
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

    /// Applies keel's pending migrations (on a blocking thread); returns their names.
    pub async fn run_migrations(&self) -> Result<Vec<String>, RepoError> {
        let url = self.config.url.clone();
        tokio::task::spawn_blocking(move || {
            keel_migrations::Migrator::connect(&url).and_then(|mut migrator| migrator.run_pending())
        })
        .await
        .map_err(|e| RepoError::Connection(e.to_string()))?
        .map_err(|e| RepoError::Connection(self.config.url.redact(&e.to_string())))
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

    /// Users.
    pub fn users(&self) -> UserRepository<'_, Self> {
        UserRepository::new(self)
    }

    /// Posts.
    pub fn posts(&self) -> PostRepository<'_, Self> {
        PostRepository::new(self)
    }

    /// Comments.
    pub fn comments(&self) -> CommentRepository<'_, Self> {
        CommentRepository::new(self)
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
        begin(&mut pooled.conn(), isolation)
            .await
            .map_err(|e| E::from(e.into()))?;
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
        let mut conn = pooled.conn();
        match result {
            Ok(value) => {
                end(&mut conn, true).await.map_err(|e| E::from(e.into()))?;
                Ok(value)
            }
            Err(error) => {
                // The caller's error is the one worth reporting; a failed
                // rollback leaves the connection broken, and the pool drops it.
                let _ = end(&mut conn, false).await;
                Err(error)
            }
        }
    }

    /// What the pool holds now, and how many checkouts it has served.
    pub fn pool_status(&self) -> PoolStatus {
        let (size, idle, waiting) = match &self.pool {
            Pools::Postgres(pool) => pool_impl::status(pool),
            Pools::Sqlite(pool) => pool_impl::status(pool),
        };
        PoolStatus {
            max_size: u64::from(self.config.effective_pool_size()),
            size,
            idle,
            waiting,
            checkouts: self.checkouts.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub(crate) async fn checkout(&self) -> Result<PooledConn, RepoError> {
        self.checkouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(match &self.pool {
            Pools::Postgres(pool) => {
                PooledConn::Postgres(pool_impl::checkout(pool, &self.config).await?)
            }
            Pools::Sqlite(pool) => {
                PooledConn::Sqlite(pool_impl::checkout(pool, &self.config).await?)
            }
        })
    }
}

/// How a transaction begins on PostgreSQL.
#[derive(Clone, Copy)]
enum Isolation {
    /// The server's default (READ COMMITTED).
    Default,
    /// SERIALIZABLE.
    Serializable,
}

/// Begins a transaction: on PostgreSQL at `isolation`; on SQLite always
/// `BEGIN IMMEDIATE`. A deferred `BEGIN` would take the write lock only at
/// the first write, and when another writer committed since the
/// transaction's first read, SQLite fails that write at once with "database
/// is locked" (SQLITE_BUSY_SNAPSHOT), whatever the busy timeout.
async fn begin(conn: &mut AsyncConn<'_>, isolation: Isolation) -> diesel::QueryResult<()> {
    match (conn, isolation) {
        (AsyncConn::Postgres(c), Isolation::Default) => {
            <AsyncPgConnection as AsyncConnection>::TransactionManager::begin_transaction(&mut **c)
                .await
        }
        (AsyncConn::Postgres(c), Isolation::Serializable) => {
            diesel_async::AnsiTransactionManager::begin_transaction_sql(
                &mut **c,
                "BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            )
            .await
        }
        (AsyncConn::Sqlite(c), _) => {
            c.spawn_blocking(|inner| {
                diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                    inner,
                    "BEGIN IMMEDIATE",
                )
            })
            .await
        }
    }
}

async fn end(conn: &mut AsyncConn<'_>, commit: bool) -> diesel::QueryResult<()> {
    match (conn, commit) {
        (AsyncConn::Postgres(c), true) => {
            <AsyncPgConnection as AsyncConnection>::TransactionManager::commit_transaction(&mut **c)
                .await
        }
        (AsyncConn::Postgres(c), false) => {
            <AsyncPgConnection as AsyncConnection>::TransactionManager::rollback_transaction(
                &mut **c,
            )
            .await
        }
        (AsyncConn::Sqlite(c), true) => {
            <SqliteAsync as AsyncConnection>::TransactionManager::commit_transaction(&mut **c).await
        }
        (AsyncConn::Sqlite(c), false) => {
            <SqliteAsync as AsyncConnection>::TransactionManager::rollback_transaction(&mut **c)
                .await
        }
    }
}

impl private::Sealed for AsyncDatabase {}

impl AsyncExecutor for AsyncDatabase {
    type Guard<'g> = PooledConn;

    async fn checkout(&self) -> Result<PooledConn, RepoError> {
        AsyncDatabase::checkout(self).await
    }

    #[cfg(feature = "sync")]
    #[allow(private_interfaces)]
    fn copy_lane(&self) -> Option<&Arc<super::blocking_lane::BlockingLane>> {
        matches!(self.pool, Pools::Postgres(_)).then_some(&self.blocking_lane)
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
    /// Users, inside this transaction.
    pub fn users(&self) -> UserRepository<'_, Self> {
        UserRepository::new(self)
    }

    /// Posts, inside this transaction.
    pub fn posts(&self) -> PostRepository<'_, Self> {
        PostRepository::new(self)
    }

    /// Comments, inside this transaction.
    pub fn comments(&self) -> CommentRepository<'_, Self> {
        CommentRepository::new(self)
    }
}

#[doc(hidden)]
pub struct TransactionGuard<'g>(tokio::sync::MappedMutexGuard<'g, PooledConn>);

impl ConnGuard for TransactionGuard<'_> {
    fn conn(&mut self) -> AsyncConn<'_> {
        self.0.conn()
    }
}

impl private::Sealed for AsyncTransaction {}

impl AsyncExecutor for AsyncTransaction {
    type Guard<'g> = TransactionGuard<'g>;

    async fn checkout(&self) -> Result<TransactionGuard<'_>, RepoError> {
        MutexGuard::try_map(self.connection.lock().await, Option::as_mut)
            .map(TransactionGuard)
            .map_err(|_| RepoError::Connection("the transaction has already ended".into()))
    }
}
