//! The async connection pool over PostgreSQL or SQLite, and transactions.

use diesel::ConnectionError;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use tokio::sync::{Mutex, MutexGuard};

use super::{
    AsyncConn, AsyncExecutor, CommentRepository, ConnGuard, PostRepository, UserRepository, private,
};
use crate::{DatabaseConfig, DatabaseUrl, RepoError, StatementCounter};

type SqliteAsync = SyncConnectionWrapper<SqliteConnection>;

#[cfg(not(feature = "bb8"))]
mod pool_impl {
    //! deadpool, the default async pool.
    use super::*;
    use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};

    pub(super) type BackendPool<C> = Pool<C>;
    pub(super) type Pooled<C> = Object<C>;

    pub(super) async fn build<C>(
        manager: AsyncDieselConnectionManager<C>,
        config: &DatabaseConfig,
    ) -> Result<Pool<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
    {
        let pool = Pool::builder(manager)
            .max_size(config.effective_pool_size() as usize)
            .wait_timeout(Some(config.checkout_timeout))
            .create_timeout(Some(config.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| RepoError::Connection(e.to_string()))?;
        // Open one connection now, so a bad URL fails here, not on first use.
        drop(checkout(&pool, config).await?);
        Ok(pool)
    }

    pub(super) async fn checkout<C>(
        pool: &Pool<C>,
        config: &DatabaseConfig,
    ) -> Result<Object<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: deadpool::managed::Manager<Type = C, Error = diesel_async::pooled_connection::PoolError>,
    {
        pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => RepoError::PoolTimeout {
                waited: config.checkout_timeout,
            },
            other => RepoError::Connection(format!(
                "{} at {}: {other}",
                config.url.backend_name(),
                config.url
            )),
        })
    }
}

#[cfg(feature = "bb8")]
mod pool_impl {
    //! bb8, with the `bb8` feature.
    use super::*;

    pub(super) type BackendPool<C> = bb8::Pool<AsyncDieselConnectionManager<C>>;
    pub(super) type Pooled<C> = bb8::PooledConnection<'static, AsyncDieselConnectionManager<C>>;

    pub(super) async fn build<C>(
        manager: AsyncDieselConnectionManager<C>,
        config: &DatabaseConfig,
    ) -> Result<BackendPool<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: bb8::ManageConnection<
                Connection = C,
                Error = diesel_async::pooled_connection::PoolError,
            >,
    {
        let pool = bb8::Pool::builder()
            .max_size(config.effective_pool_size())
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            .build_unchecked(manager);
        drop(checkout(&pool, config).await?);
        Ok(pool)
    }

    pub(super) async fn checkout<C>(
        pool: &BackendPool<C>,
        config: &DatabaseConfig,
    ) -> Result<Pooled<C>, RepoError>
    where
        AsyncDieselConnectionManager<C>: bb8::ManageConnection<
                Connection = C,
                Error = diesel_async::pooled_connection::PoolError,
            >,
    {
        pool.get_owned().await.map_err(|e| match e {
            bb8::RunError::TimedOut => RepoError::PoolTimeout {
                waited: config.checkout_timeout,
            },
            bb8::RunError::User(other) => RepoError::Connection(format!(
                "{} at {}: {other}",
                config.url.backend_name(),
                config.url
            )),
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

/// The manager's settings: no test query on checkout (a dead connection
/// fails its first statement and is dropped), and a setup that counts
/// statements and, on SQLite, sets the pragmas.
fn manager_config<C, F>(setup: F) -> ManagerConfig<C>
where
    C: AsyncConnection + 'static,
    F: Fn(C) -> futures_setup::SetupFuture<C> + Send + Sync + 'static,
{
    let setup = std::sync::Arc::new(setup);
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let setup = setup.clone();
        let url = url.to_owned();
        Box::pin(async move {
            let conn = C::establish(&url).await?;
            setup(conn).await
        })
    });
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
                    manager_config(move |mut conn: AsyncPgConnection| {
                        conn.set_instrumentation(counter.clone());
                        Box::pin(async move { Ok(conn) })
                    }),
                );
                Pools::Postgres(pool_impl::build(manager, config).await?)
            }
            DatabaseUrl::Sqlite(path) => {
                let counter = statements.clone();
                let pragmas = config.sqlite_setup_sql();
                let manager = AsyncDieselConnectionManager::new_with_config(
                    path,
                    manager_config(move |mut conn: SqliteAsync| {
                        let counter = counter.clone();
                        let pragmas = pragmas.clone();
                        Box::pin(async move {
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
            statements,
            config: config.clone(),
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
        .map_err(|e| RepoError::Connection(e.to_string()))
    }

    /// Counts the statements run on this pool's connections.
    pub fn statements(&self) -> &StatementCounter {
        &self.statements
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
    /// rolls back, and nothing `f` wrote stays. Do not cancel the returned
    /// future half-way (no `select!`/timeout around it): a connection
    /// dropped inside a transaction is discarded by the pool, not reused.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&AsyncTransaction<'_>) -> Result<T, E>,
        E: From<RepoError>,
    {
        let mut pooled = self.checkout().await.map_err(E::from)?;
        let mut conn = pooled.conn();
        begin(&mut conn).await.map_err(|e| E::from(e.into()))?;
        let transaction = AsyncTransaction {
            connection: Mutex::new(conn),
        };
        let result = f(&transaction).await;
        let mut conn = transaction.connection.into_inner();
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

    pub(crate) async fn checkout(&self) -> Result<PooledConn, RepoError> {
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

async fn begin(conn: &mut AsyncConn<'_>) -> diesel::QueryResult<()> {
    match conn {
        AsyncConn::Postgres(c) => {
            <AsyncPgConnection as AsyncConnection>::TransactionManager::begin_transaction(&mut **c)
                .await
        }
        AsyncConn::Sqlite(c) => {
            <SqliteAsync as AsyncConnection>::TransactionManager::begin_transaction(&mut **c).await
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
}

/// A transaction's connection: repositories taken from it all run on it.
pub struct AsyncTransaction<'c> {
    connection: Mutex<AsyncConn<'c>>,
}

impl<'c> AsyncTransaction<'c> {
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
pub struct TransactionGuard<'g, 'c>(MutexGuard<'g, AsyncConn<'c>>);

impl ConnGuard for TransactionGuard<'_, '_> {
    fn conn(&mut self) -> AsyncConn<'_> {
        match &mut *self.0 {
            AsyncConn::Postgres(c) => AsyncConn::Postgres(c),
            AsyncConn::Sqlite(c) => AsyncConn::Sqlite(c),
        }
    }
}

impl private::Sealed for AsyncTransaction<'_> {}

impl<'c> AsyncExecutor for AsyncTransaction<'c> {
    type Guard<'g>
        = TransactionGuard<'g, 'c>
    where
        Self: 'g;

    async fn checkout(&self) -> Result<TransactionGuard<'_, 'c>, RepoError> {
        Ok(TransactionGuard(self.connection.lock().await))
    }
}
