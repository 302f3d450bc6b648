//! The sync connection pool (r2d2) over PostgreSQL or SQLite, and transactions.
//!
//! r2d2 runs no query on checkout (`test_on_check_out(false)`: a round trip
//! per call is too dear), and diesel's `has_broken` only looks at the
//! transaction state. After a server restart, a pooled libpq connection
//! whose first failure reads `terminating connection due to administrator
//! command` ends up with a broken transaction state and is dropped; one that
//! fails with `server closed the connection unexpectedly` or `no connection
//! to the server` does not, and would be handed out, fail and be put back
//! forever (which of the two a connection gets depends on timing). Each
//! pooled connection therefore carries a flag that its instrumentation
//! raises when a statement fails because the connection is gone
//! ([`ErrorClass::ConnectionLost`]); `has_broken` reads the flag, and r2d2
//! drops the connection instead of pooling it. No extra query runs, and a
//! dead connection fails one call (with [`RepoError::Unavailable`]) at most.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, Pool, PooledConnection, R2D2Connection,
};
use diesel::sqlite::SqliteConnection;
use r2d2::ManageConnection;

use super::Held;
use crate::conn::{Conn, Isolation};
use crate::error::ErrorClass;
use crate::executor::{ConnGuard, Executor, complete_now, migrate_in_place};
use crate::replicas::{self, ReadGuard, ReplicaPool, ReplicaSet, ReplicaStatus};
use crate::{
    DatabaseConfig, DatabaseUrl, PgBouncerMode, RepoError, RetryPolicy, RetryableError,
    StatementCounter,
};

/// A pool of sync connections to one database, PostgreSQL or SQLite as its
/// URL says. Cheap to share by reference; every repository call checks a
/// connection out and returns it.
pub struct Database {
    pool: BackendPool,
    /// Read replicas (PostgreSQL), each with a pool of its own.
    replicas: Option<Arc<ReplicaSet<BackendPool>>>,
    statements: StatementCounter,
    config: DatabaseConfig,
}

#[derive(Clone)]
enum BackendPool {
    Postgres(Pool<Manager<PgConnection>>),
    Sqlite(Pool<Manager<SqliteConnection>>),
}

#[doc(hidden)]
pub enum Pooled {
    Postgres(PooledConnection<Manager<PgConnection>>),
    Sqlite(PooledConnection<Manager<SqliteConnection>>),
}

impl ConnGuard for Pooled {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        Ok(match self {
            Self::Postgres(pooled) => Conn::Postgres(&mut pooled.conn),
            Self::Sqlite(pooled) => Conn::Sqlite(&mut pooled.conn),
        })
    }
}

/// A pooled connection and whether it has been seen to be gone.
#[doc(hidden)]
pub struct Tracked<C> {
    conn: C,
    lost: Arc<AtomicBool>,
}

/// diesel's r2d2 manager, plus the lost flag in `has_broken`.
#[doc(hidden)]
pub struct Manager<C: R2D2Connection + 'static> {
    inner: ConnectionManager<C>,
    /// SQLite connections keep their plans ([`crate::sqlite_plans`]).
    stable_plans: bool,
}

impl<C: R2D2Connection + Send + 'static> ManageConnection for Manager<C> {
    type Connection = Tracked<C>;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Tracked<C>, Self::Error> {
        Ok(Tracked {
            conn: crate::sqlite_plans::opening(self.stable_plans, || self.inner.connect())?,
            lost: Arc::default(),
        })
    }

    fn is_valid(&self, conn: &mut Tracked<C>) -> Result<(), Self::Error> {
        self.inner.is_valid(&mut conn.conn)
    }

    fn has_broken(&self, conn: &mut Tracked<C>) -> bool {
        conn.lost.load(Ordering::Relaxed) || self.inner.has_broken(&mut conn.conn)
    }
}

/// Each connection's instrumentation: counts statements, and raises the
/// connection's lost flag when a statement fails for want of a connection.
struct Watch {
    statements: StatementCounter,
    lost: Arc<AtomicBool>,
}

impl Instrumentation for Watch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery {
            error: Some(error), ..
        } = &event
            && matches!(
                ErrorClass::of(error),
                ErrorClass::ConnectionLost | ErrorClass::WrongNode
            )
        {
            self.lost.store(true, Ordering::Relaxed);
        }
        self.statements.on_connection_event(event);
    }
}

/// Prepares each new pooled connection: SQLite's pragmas, the statement
/// cache behind a transaction pooler, and the instrumentation ([`Watch`]) on
/// every backend.
#[derive(Debug)]
struct ConnectionSetup {
    statements: StatementCounter,
    sqlite_sql: String,
    /// `KEEL_PGBOUNCER=transaction`: consecutive statements may reach
    /// different server connections, where a statement prepared under a
    /// name on one is missing (or another client's) on the next. Without a
    /// cache diesel sends each query unnamed, parsed and run in one message.
    uncached: bool,
}

impl ConnectionSetup {
    fn watch(&self, conn: &Tracked<impl Connection>) -> Watch {
        Watch {
            statements: self.statements.clone(),
            lost: conn.lost.clone(),
        }
    }
}

impl CustomizeConnection<Tracked<PgConnection>, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut Tracked<PgConnection>) -> Result<(), diesel::r2d2::Error> {
        if self.uncached {
            conn.conn
                .set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        }
        let watch = self.watch(conn);
        conn.conn.set_instrumentation(watch);
        Ok(())
    }
}

impl CustomizeConnection<Tracked<SqliteConnection>, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut Tracked<SqliteConnection>) -> Result<(), diesel::r2d2::Error> {
        conn.conn
            .batch_execute(&self.sqlite_sql)
            .map_err(diesel::r2d2::Error::QueryError)?;
        let watch = self.watch(conn);
        conn.conn.set_instrumentation(watch);
        Ok(())
    }
}

impl Database {
    /// Opens a pool as `config` says and checks that one connection works.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, RepoError> {
        Self::connect_counting(config, StatementCounter::new())
    }

    /// [`Database::connect`], counting statements on `statements` (shared
    /// with an async pool whose blocking lane this is).
    pub(crate) fn connect_counting(
        config: &DatabaseConfig,
        statements: StatementCounter,
    ) -> Result<Self, RepoError> {
        config
            .check()
            .map_err(|e| RepoError::Connection(e.to_string()))?;
        let logged = statements.clone().logging(config.log_statements);
        let pool = BackendPool::connect(config, &logged, true)?;
        let replicas = if config.replica_urls.is_empty() {
            None
        } else {
            let set = complete_now(ReplicaSet::open(config, async |replica_config| {
                BackendPool::connect(replica_config, &logged, false)
            }))?;
            let set = Arc::new(set);
            complete_now(async {
                set.check_round(&pool, config).await;
                Ok(())
            })?;
            watch_replicas(Arc::downgrade(&set), pool.clone(), config.clone());
            Some(set)
        };
        Ok(Self {
            pool,
            replicas,
            statements,
            config: config.clone(),
        })
    }

    /// Each replica's role, lag, and the reads it took. Empty without replicas.
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        replicas::status(self.replicas.as_deref())
    }

    /// [`Database::connect`] with [`DatabaseConfig::from_env`].
    pub fn from_env() -> Result<Self, RepoError> {
        let config =
            DatabaseConfig::from_env().map_err(|e| RepoError::Connection(e.to_string()))?;
        Self::connect(&config)
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// A fresh in-memory SQLite database with keel's migrations applied, in
    /// one call: for a service's tests, one per test. Its pool has the one
    /// connection that holds the database, so every call sees the same data,
    /// and the database is gone when the pool is dropped.
    pub fn in_memory() -> Result<Self, RepoError> {
        let db = Self::connect(&DatabaseConfig::new(DatabaseUrl::Sqlite(":memory:".into())))?;
        db.run_migrations()?;
        Ok(db)
    }

    /// Applies keel's pending migrations; returns their names. An in-memory
    /// SQLite database is migrated on the pool's own connection.
    pub fn run_migrations(&self) -> Result<Vec<String>, RepoError> {
        if self.config.is_in_memory() {
            return complete_now(migrate_in_place(self));
        }
        let url = self.config.migration_url();
        keel_migrations::Migrator::connect(url)
            .and_then(|mut migrator| migrator.run_pending())
            .map_err(|e| RepoError::Connection(url.redact(&e.to_string())))
    }

    /// Counts the statements run on this pool's connections.
    pub fn statements(&self) -> &StatementCounter {
        &self.statements
    }

    /// Runs `f` on a connection from the pool: a service's own Diesel
    /// queries, sent with [`run!`](crate::run), or its own operations. The
    /// statements count in [`Database::statements`] and the current
    /// `QueryScope`, errors become [`RepoError`]s, and a strict scope's N+1
    /// check applies, as for keel's own calls.
    ///
    /// ```ignore
    /// let n: i64 = db.with_conn(async |conn| run!(conn, get_result(users::table.count())))?;
    /// ```
    pub fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
    ) -> Result<T, RepoError> {
        super::with_conn(self, f)
    }

    /// [`Database::with_conn`] for read-only work: on a replica that has
    /// replayed the current scope's writes, when there are replicas (see
    /// [`crate::executor::read`]; `f` may run twice, the second time on the
    /// primary). Never write this way.
    pub fn with_read_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T> + Clone,
    ) -> Result<T, RepoError> {
        super::with_read_conn(self, f)
    }

    /// Runs `f` in one transaction on one connection: `Ok` commits, `Err`
    /// rolls back, and nothing `f` wrote stays. On SQLite the transaction
    /// takes the write lock when it begins (`BEGIN IMMEDIATE`).
    pub fn transaction<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<RepoError>,
    {
        self.run_transaction(Isolation::Default, f)
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
    pub fn transaction_with_retry<T, E>(
        &self,
        policy: &RetryPolicy,
        mut f: impl FnMut(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<RepoError> + RetryableError,
    {
        let mut attempt = 1;
        loop {
            match self.run_transaction(Isolation::Serializable, &mut f) {
                Err(error) => match policy.retry_after(attempt, &error) {
                    Some(pause) => {
                        std::thread::sleep(pause);
                        attempt += 1;
                    }
                    None => return Err(error),
                },
                ok => return ok,
            }
        }
    }

    fn run_transaction<T, E>(
        &self,
        isolation: Isolation,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<RepoError>,
    {
        // A connection lost inside is flagged by its instrumentation (or left
        // with a broken transaction manager), so r2d2 drops it on return.
        let mut pooled = self.checkout()?;
        let mut conn = pooled.conn()?;
        complete_now(async { Ok(conn.begin(isolation).await?) })?;
        let result = f(&Transaction {
            connection: Mutex::new(Some(conn.reborrow())),
        });
        match result {
            Ok(value) => {
                complete_now(async { Ok(conn.commit().await?) })?;
                // Read after COMMIT: inside, the position is below the commit record.
                if self.replicas.is_some() {
                    complete_now(async {
                        replicas::record_commit_lsn(&mut conn).await;
                        Ok(())
                    })?;
                }
                Ok(value)
            }
            Err(error) => {
                // The caller's error is the one worth reporting; a failed
                // rollback leaves the connection broken, and r2d2 drops it.
                let _ = complete_now(async { Ok(conn.rollback().await?) });
                Err(error)
            }
        }
    }

    pub(crate) fn checkout(&self) -> Result<Pooled, RepoError> {
        self.pool.checkout(&self.config, None)
    }
}

impl BackendPool {
    /// The pool `config` describes. With `verify`, r2d2 opens its first
    /// connection now, so a bad URL fails here; a replica's pool opens its
    /// connections lazily (a replica that is down must not keep the service
    /// from starting).
    fn connect(
        config: &DatabaseConfig,
        logged: &StatementCounter,
        verify: bool,
    ) -> Result<Self, RepoError> {
        let setup = ConnectionSetup {
            statements: logged.clone(),
            sqlite_sql: config.sqlite_setup_sql(),
            uncached: config.pgbouncer == PgBouncerMode::Transaction,
        };
        let connect_error = |e: r2d2::Error| config.connection_error(e);
        Ok(match &config.url {
            DatabaseUrl::Postgres(url) => Self::Postgres(
                build_pool(
                    pool_builder(config).connection_customizer(Box::new(setup)),
                    Manager {
                        inner: ConnectionManager::new(config.postgres_url(url)),
                        stable_plans: false,
                    },
                    verify,
                )
                .map_err(connect_error)?,
            ),
            DatabaseUrl::Sqlite(path) => Self::Sqlite(
                build_pool(
                    pool_builder(config).connection_customizer(Box::new(setup)),
                    Manager {
                        inner: ConnectionManager::new(path),
                        stable_plans: config.sqlite_stable_plans,
                    },
                    verify,
                )
                .map_err(connect_error)?,
            ),
        })
    }

    /// A connection, waiting at most `limit` (`None`: the checkout timeout).
    fn checkout(
        &self,
        config: &DatabaseConfig,
        limit: Option<Duration>,
    ) -> Result<Pooled, RepoError> {
        let checkout_error = |e: r2d2::Error| {
            let message = e.to_string();
            // r2d2 says "timed out waiting for connection", followed by the
            // last connection error when the database itself is the problem.
            if message.contains(": ") {
                config.connection_error(message)
            } else {
                RepoError::PoolTimeout {
                    waited: limit.unwrap_or(config.checkout_timeout),
                }
            }
        };
        let limit = limit.unwrap_or(config.checkout_timeout);
        Ok(match self {
            Self::Postgres(pool) => {
                Pooled::Postgres(pool.get_timeout(limit).map_err(checkout_error)?)
            }
            Self::Sqlite(pool) => Pooled::Sqlite(pool.get_timeout(limit).map_err(checkout_error)?),
        })
    }
}

impl ReplicaPool for BackendPool {
    type Guard = Pooled;

    fn checkout_within(
        &self,
        config: &DatabaseConfig,
        limit: Option<Duration>,
    ) -> impl Future<Output = Result<Pooled, RepoError>> + Send {
        std::future::ready(self.checkout(config, limit))
    }
}

/// Checks the replicas every interval on a thread of their own, until the
/// pool is dropped.
fn watch_replicas(
    set: Weak<ReplicaSet<BackendPool>>,
    primary: BackendPool,
    config: DatabaseConfig,
) {
    let spawned = std::thread::Builder::new()
        .name("keel-replica-check".into())
        .spawn(move || {
            loop {
                std::thread::sleep(config.replica_check_interval);
                let Some(set) = set.upgrade() else { return };
                let _ = complete_now(async {
                    set.check_round(&primary, &config).await;
                    Ok(())
                });
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "could not start the replica check thread: replica states stay as first checked");
    }
}

impl Executor for Database {
    type Mode = super::Blocking;
    type Guard<'g> = Pooled;

    async fn checkout(&self) -> Result<Pooled, RepoError> {
        Database::checkout(self)
    }

    async fn checkout_read(&self) -> Result<ReadGuard<'_, Pooled>, RepoError> {
        if let Some(set) = &self.replicas
            && let Some((guard, ticket)) = set.checkout_read::<super::Blocking>().await
        {
            return Ok(ReadGuard {
                guard,
                replica: Some(ticket),
            });
        }
        Ok(ReadGuard::primary(self.checkout()?))
    }

    fn records_write_lsn(&self) -> bool {
        self.replicas.is_some()
    }
}

/// r2d2's `build` (waits for the first connection) or `build_unchecked`.
fn build_pool<C: R2D2Connection + Send + 'static>(
    builder: r2d2::Builder<Manager<C>>,
    manager: Manager<C>,
    verify: bool,
) -> Result<Pool<Manager<C>>, r2d2::Error> {
    if verify {
        builder.build(manager)
    } else {
        Ok(builder.build_unchecked(manager))
    }
}

fn pool_builder<M: r2d2::ManageConnection>(config: &DatabaseConfig) -> r2d2::Builder<M> {
    let in_memory = config.effective_pool_size() == 1 && config.pool_size != 1;
    Pool::builder()
        .max_size(config.effective_pool_size())
        .min_idle(Some(1))
        .connection_timeout(config.checkout_timeout)
        // A checkout runs no query: a dead connection fails its first real
        // statement instead, and is then discarded as broken (`Manager`).
        .test_on_check_out(false)
        // An in-memory database lives only as long as its one connection.
        .idle_timeout(if in_memory { None } else { config.idle_timeout })
        .max_lifetime(if in_memory { None } else { config.max_lifetime })
}

/// A transaction's connection: repositories taken from it all run on it.
pub struct Transaction<'c> {
    connection: Mutex<Option<Conn<'c>>>,
}

impl Transaction<'_> {
    /// Runs `f` on the transaction's connection; see [`Database::with_conn`].
    pub fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
    ) -> Result<T, RepoError> {
        super::with_conn(self, f)
    }
}

impl<'c> Executor for Transaction<'c> {
    type Mode = super::Blocking;
    type Guard<'g>
        = Held<'g, Conn<'c>>
    where
        Self: 'g;

    async fn checkout(&self) -> Result<Held<'_, Conn<'c>>, RepoError> {
        Held::take(&self.connection, "transaction")
    }
}

impl<'c> ConnGuard for Held<'_, Conn<'c>> {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        self.held().map(Conn::reborrow)
    }
}
