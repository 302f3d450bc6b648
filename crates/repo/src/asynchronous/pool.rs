//! The async pools: deadpool (the default) and bb8 (feature `bb8`, chosen
//! with `KEEL_POOL=bb8`), each over either backend's connection manager.
//!
//! PostgreSQL connections come from diesel-async's manager
//! (`AsyncPgConnection`). SQLite connections are diesel's sync
//! `SqliteConnection`, from [`SqliteManager`]: async mode runs SQLite
//! operations in place (see [`crate::executor::drive`]), so the pool hands
//! out the plain connection.
//!
//! Dead connections: an `AsyncPgConnection` knows when its server went away
//! (tokio-postgres ends the connection task, `is_closed()`), and diesel-async
//! counts that as broken. The recycle check asks exactly that, with no
//! query: deadpool runs it before handing a pooled connection out, bb8 on
//! checkout, so after a server restart idle connections are replaced
//! instead of failing a call each.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection as _, TransactionManager};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::{DatabaseConfig, PostgresUrl, StatementCounter};

/// PostgreSQL's manager: diesel-async's, counting statements on each
/// connection, handing the connections out boxed. An `AsyncPgConnection` is
/// 424 bytes, and a pooled connection is moved about a dozen times between
/// the pool and a query (deadpool's object, [`PooledConn`], the futures that
/// return them): each move was a `memcpy` of the whole connection, about 930
/// instructions per checkout (callgrind, keel-bench H1). Boxed, a move is a
/// pointer's.
///
/// [`PooledConn`]: super::database::PooledConn
#[doc(hidden)]
pub struct PgManager(AsyncDieselConnectionManager<AsyncPgConnection>);

impl deadpool::managed::Manager for PgManager {
    type Type = Box<AsyncPgConnection>;
    type Error = PoolError;

    async fn create(&self) -> Result<Self::Type, PoolError> {
        deadpool::managed::Manager::create(&self.0)
            .await
            .map(Box::new)
    }

    async fn recycle(
        &self,
        conn: &mut Self::Type,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<PoolError> {
        deadpool::managed::Manager::recycle(&self.0, conn, metrics).await
    }
}

#[cfg(feature = "bb8")]
impl bb8::ManageConnection for PgManager {
    type Connection = Box<AsyncPgConnection>;
    type Error = PoolError;

    async fn connect(&self) -> Result<Self::Connection, PoolError> {
        bb8::ManageConnection::connect(&self.0).await.map(Box::new)
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), PoolError> {
        bb8::ManageConnection::is_valid(&self.0, conn).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        bb8::ManageConnection::has_broken(&self.0, conn)
    }
}

/// The pool library a PostgreSQL manager serves: it decides who checks a
/// pooled connection before it is handed out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolLibrary {
    /// deadpool: diesel-async's recycle asks `is_broken()` itself, so the
    /// recycling method adds nothing (and costs a boxed future per checkout).
    Deadpool,
    /// bb8: its checkout test is the recycling method alone, so that method
    /// asks `is_broken()`.
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    Bb8,
}

pub(crate) fn pg_manager(
    config: &DatabaseConfig,
    url: &PostgresUrl,
    statements: &StatementCounter,
    pool: PoolLibrary,
) -> PgManager {
    let counter = statements.clone();
    let mut manager_config = ManagerConfig::default();
    manager_config.recycling_method = match pool {
        PoolLibrary::Deadpool => RecyclingMethod::Fast,
        PoolLibrary::Bb8 => {
            RecyclingMethod::CustomFunction(Box::new(|conn: &mut AsyncPgConnection| {
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
            }))
        }
    };
    manager_config.custom_setup = Box::new(move |url| {
        let counter = counter.clone();
        let url = url.to_owned();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.set_instrumentation(counter);
            Ok(conn)
        })
    });
    PgManager(AsyncDieselConnectionManager::new_with_config(
        config.postgres_url(url),
        manager_config,
    ))
}

/// SQLite's manager: opens a sync connection (off the runtime: opening the
/// file may wait on a lock), sets the pragmas and the statement counter.
#[doc(hidden)]
pub struct SqliteManager {
    path: String,
    pragmas: String,
    stable_plans: bool,
    statements: StatementCounter,
}

impl SqliteManager {
    pub(crate) fn new(config: &DatabaseConfig, path: &str, statements: &StatementCounter) -> Self {
        Self {
            path: path.to_owned(),
            pragmas: config.sqlite_setup_sql(),
            stable_plans: config.sqlite_stable_plans,
            statements: statements.clone(),
        }
    }

    async fn open(&self) -> Result<SqliteConnection, PoolError> {
        let path = self.path.clone();
        let pragmas = self.pragmas.clone();
        let stable_plans = self.stable_plans;
        let statements = self.statements.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = crate::sqlite_plans::establish(&path, stable_plans)?;
            conn.batch_execute(&pragmas)
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            conn.set_instrumentation(statements);
            Ok(conn)
        })
        .await
        .map_err(|e| PoolError::ConnectionError(ConnectionError::BadConnection(e.to_string())))?
        .map_err(PoolError::ConnectionError)
    }

    /// A connection left inside a transaction (its caller's future was
    /// dropped half-way) or with a broken transaction state is not reused.
    fn unusable(conn: &mut SqliteConnection) -> bool {
        let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
        !matches!(status.transaction_depth(), Ok(None))
    }
}

impl deadpool::managed::Manager for SqliteManager {
    type Type = SqliteConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<SqliteConnection, PoolError> {
        self.open().await
    }

    async fn recycle(
        &self,
        conn: &mut SqliteConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<PoolError> {
        if Self::unusable(conn) {
            Err(deadpool::managed::RecycleError::message(
                "the connection was left inside a transaction",
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(feature = "bb8")]
impl bb8::ManageConnection for SqliteManager {
    type Connection = SqliteConnection;
    type Error = PoolError;

    async fn connect(&self) -> Result<SqliteConnection, PoolError> {
        self.open().await
    }

    async fn is_valid(&self, _: &mut SqliteConnection) -> Result<(), PoolError> {
        Ok(())
    }

    fn has_broken(&self, conn: &mut SqliteConnection) -> bool {
        Self::unusable(conn)
    }
}

/// An in-memory database lives only as long as its one connection: never
/// close it for idleness or age.
fn limits(config: &DatabaseConfig) -> (Option<Duration>, Option<Duration>) {
    let in_memory = config.effective_pool_size() == 1 && config.pool_size != 1;
    if in_memory {
        (None, None)
    } else {
        (config.idle_timeout, config.max_lifetime)
    }
}

pub(crate) mod deadpool_pool {
    //! deadpool, the default async pool.
    use std::time::Duration;

    use deadpool::managed::{
        Hook, HookError, Manager, Metrics, Object, Pool, PoolError as DeadpoolError, QueueMode,
        TimeoutType,
    };
    use diesel_async::pooled_connection::PoolError;

    use crate::{DatabaseConfig, RepoError};

    /// Open connections, idle ones and callers waiting, as deadpool counts them.
    pub(crate) fn status<M: Manager>(pool: &Pool<M>) -> (u64, u64, u64) {
        let status = pool.status();
        (
            status.size as u64,
            status.available as u64,
            status.waiting as u64,
        )
    }

    /// The pool; with `verify`, one connection is opened now, so a bad URL
    /// fails here and not on first use (a replica's pool skips it: a
    /// replica that is down must not keep the service from starting).
    pub(crate) async fn build<M>(
        manager: M,
        config: &DatabaseConfig,
        verify: bool,
    ) -> Result<Pool<M>, RepoError>
    where
        M: Manager<Error = PoolError> + 'static,
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
        if verify {
            drop(checkout(&pool, config).await?);
        }
        Ok(pool)
    }

    /// `DatabaseConfig::idle_timeout` and `max_lifetime`, for deadpool. Idle
    /// time counts from when the connection was last handed out (deadpool's
    /// `Metrics::last_used`), so a connection held for longer than the idle
    /// timeout is replaced at its next checkout.
    #[derive(Clone, Copy)]
    struct Expiry {
        idle_timeout: Option<Duration>,
        max_lifetime: Option<Duration>,
    }

    impl Expiry {
        fn of(config: &DatabaseConfig) -> Self {
            let (idle_timeout, max_lifetime) = super::limits(config);
            Self {
                idle_timeout,
                max_lifetime,
            }
        }

        fn is_set(&self) -> bool {
            self.idle_timeout.is_some() || self.max_lifetime.is_some()
        }

        fn expired(&self, metrics: &Metrics) -> bool {
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
    async fn sweep<M: Manager>(
        pool: deadpool::managed::WeakPool<M>,
        expiry: Expiry,
        every: Duration,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            pool.retain(|_, metrics| !expiry.expired(&metrics));
        }
    }

    pub(crate) async fn checkout<M>(
        pool: &Pool<M>,
        config: &DatabaseConfig,
    ) -> Result<Object<M>, RepoError>
    where
        M: Manager<Error = PoolError>,
    {
        pool.get().await.map_err(|e| match e {
            DeadpoolError::Timeout(TimeoutType::Wait) => RepoError::PoolTimeout {
                waited: config.checkout_timeout,
            },
            DeadpoolError::Timeout(TimeoutType::Create) => config.connection_error(format!(
                "no connection could be opened within {:?}",
                config.connect_timeout
            )),
            other => config.connection_error(other),
        })
    }
}

#[cfg(feature = "bb8")]
pub(crate) mod bb8_pool {
    //! bb8, with the `bb8` feature and `KEEL_POOL=bb8`.
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use bb8::ManageConnection;
    use diesel_async::pooled_connection::PoolError;

    use crate::{DatabaseConfig, RepoError};

    /// The bb8 pool, and the last error its connection attempts met.
    pub(crate) struct Pool<M: ManageConnection> {
        pool: bb8::Pool<M>,
        last_error: LastError,
    }

    impl<M: ManageConnection> Clone for Pool<M> {
        fn clone(&self) -> Self {
            Self {
                pool: self.pool.clone(),
                last_error: self.last_error.clone(),
            }
        }
    }

    pub(crate) type Pooled<M> = bb8::PooledConnection<'static, M>;

    /// Open connections, idle ones and callers waiting (bb8 does not count
    /// waiters: always 0).
    pub(crate) fn status<M: ManageConnection>(pool: &Pool<M>) -> (u64, u64, u64) {
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

    /// The pool; with `verify`, one connection is opened now (see
    /// `deadpool_pool::build`).
    pub(crate) async fn build<M>(
        manager: M,
        config: &DatabaseConfig,
        verify: bool,
    ) -> Result<Pool<M>, RepoError>
    where
        M: ManageConnection<Error = PoolError>,
    {
        let (idle_timeout, max_lifetime) = super::limits(config);
        let last_error = LastError::default();
        let pool = bb8::Pool::builder()
            .max_size(config.effective_pool_size())
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(idle_timeout)
            .max_lifetime(max_lifetime)
            // The most recently used connection first, as with deadpool.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .error_sink(Box::new(last_error.clone()))
            .build_unchecked(manager);
        let pool = Pool { pool, last_error };
        if verify {
            drop(checkout(&pool, config).await?);
        }
        Ok(pool)
    }

    pub(crate) async fn checkout<M>(
        pool: &Pool<M>,
        config: &DatabaseConfig,
    ) -> Result<Pooled<M>, RepoError>
    where
        M: ManageConnection<Error = PoolError>,
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
