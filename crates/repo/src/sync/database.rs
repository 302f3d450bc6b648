//! The sync connection pool (r2d2) over PostgreSQL or SQLite, and transactions.

use std::cell::RefCell;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;

use super::{CommentRepository, Executor, PostRepository, UserRepository};
use crate::ops::BlockingOps;
use crate::{DatabaseConfig, DatabaseUrl, RepoError, StatementCounter};

/// A pool of sync connections to one database, PostgreSQL or SQLite as its
/// URL says. Cheap to share by reference; every repository call checks a
/// connection out and returns it.
pub struct Database {
    pool: BackendPool,
    statements: StatementCounter,
    config: DatabaseConfig,
}

enum BackendPool {
    Postgres(Pool<ConnectionManager<PgConnection>>),
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
}

enum Pooled {
    Postgres(PooledConnection<ConnectionManager<PgConnection>>),
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
}

/// Prepares each new pooled connection: SQLite's pragmas, and the statement
/// counter on every backend.
#[derive(Debug)]
struct ConnectionSetup {
    statements: StatementCounter,
    sqlite_sql: String,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.set_instrumentation(self.statements.clone());
        Ok(())
    }
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&self.sqlite_sql)
            .map_err(diesel::r2d2::Error::QueryError)?;
        conn.set_instrumentation(self.statements.clone());
        Ok(())
    }
}

impl Database {
    /// Opens a pool as `config` says and checks that one connection works.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, RepoError> {
        let statements = StatementCounter::new();
        let setup = ConnectionSetup {
            statements: statements.clone(),
            sqlite_sql: config.sqlite_setup_sql(),
        };
        let connect_error = |e: r2d2::Error| {
            RepoError::Connection(format!(
                "{} at {}: {e}",
                config.url.backend_name(),
                config.url
            ))
        };
        let pool = match &config.url {
            DatabaseUrl::Postgres(url) => BackendPool::Postgres(
                pool_builder(config)
                    .connection_customizer(Box::new(setup))
                    .build(ConnectionManager::new(config.postgres_url(url)))
                    .map_err(connect_error)?,
            ),
            DatabaseUrl::Sqlite(path) => BackendPool::Sqlite(
                pool_builder(config)
                    .connection_customizer(Box::new(setup))
                    .build(ConnectionManager::new(path))
                    .map_err(connect_error)?,
            ),
        };
        Ok(Self {
            pool,
            statements,
            config: config.clone(),
        })
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

    /// Applies keel's pending migrations; returns their names.
    pub fn run_migrations(&self) -> Result<Vec<String>, RepoError> {
        keel_migrations::Migrator::connect(&self.config.url)
            .and_then(|mut migrator| migrator.run_pending())
            .map_err(|e| RepoError::Connection(e.to_string()))
    }

    /// Counts the statements run on this pool's connections.
    pub fn statements(&self) -> &StatementCounter {
        &self.statements
    }

    /// Users.
    pub fn users(&self) -> UserRepository<'_> {
        UserRepository::new(self)
    }

    /// Posts.
    pub fn posts(&self) -> PostRepository<'_> {
        PostRepository::new(self)
    }

    /// Comments.
    pub fn comments(&self) -> CommentRepository<'_> {
        CommentRepository::new(self)
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
        let in_transaction = |ops: &mut dyn BlockingOps| -> Result<T, TransactionError<E>> {
            f(&Transaction {
                connection: RefCell::new(ops),
            })
            .map_err(TransactionError::Caller)
        };
        let result = match self.checkout().map_err(E::from)? {
            Pooled::Postgres(mut conn) => {
                Connection::transaction(&mut *conn, |c| in_transaction(c))
            }
            Pooled::Sqlite(mut conn) => conn.immediate_transaction(|c| in_transaction(c)),
        };
        result.map_err(|error| match error {
            TransactionError::Caller(e) => e,
            TransactionError::Database(e) => E::from(RepoError::from(e)),
        })
    }

    fn checkout(&self) -> Result<Pooled, RepoError> {
        let checkout_error = |e: r2d2::Error| {
            let message = e.to_string();
            // r2d2 says "timed out waiting for connection", followed by the
            // last connection error when the database itself is the problem.
            if message.contains(": ") {
                RepoError::Connection(message)
            } else {
                RepoError::PoolTimeout {
                    waited: self.config.checkout_timeout,
                }
            }
        };
        Ok(match &self.pool {
            BackendPool::Postgres(pool) => Pooled::Postgres(pool.get().map_err(checkout_error)?),
            BackendPool::Sqlite(pool) => Pooled::Sqlite(pool.get().map_err(checkout_error)?),
        })
    }
}

impl Executor for Database {
    fn with_ops(
        &self,
        f: &mut dyn FnMut(&mut dyn BlockingOps) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        match self.checkout()? {
            Pooled::Postgres(mut conn) => f(&mut *conn),
            Pooled::Sqlite(mut conn) => f(&mut *conn),
        }
    }
}

fn pool_builder<M: r2d2::ManageConnection>(config: &DatabaseConfig) -> r2d2::Builder<M> {
    let in_memory = config.effective_pool_size() == 1 && config.pool_size != 1;
    Pool::builder()
        .max_size(config.effective_pool_size())
        .min_idle(Some(1))
        .connection_timeout(config.checkout_timeout)
        // A checkout runs no query: a dead connection fails its first real
        // statement instead, and is then discarded as broken.
        .test_on_check_out(false)
        // An in-memory database lives only as long as its one connection.
        .idle_timeout(if in_memory { None } else { config.idle_timeout })
        .max_lifetime(if in_memory { None } else { config.max_lifetime })
}

/// A transaction's connection: repositories taken from it all run on it.
pub struct Transaction<'c> {
    connection: RefCell<&'c mut dyn BlockingOps>,
}

impl Transaction<'_> {
    /// Users, inside this transaction.
    pub fn users(&self) -> UserRepository<'_> {
        UserRepository::new(self)
    }

    /// Posts, inside this transaction.
    pub fn posts(&self) -> PostRepository<'_> {
        PostRepository::new(self)
    }

    /// Comments, inside this transaction.
    pub fn comments(&self) -> CommentRepository<'_> {
        CommentRepository::new(self)
    }
}

impl Executor for Transaction<'_> {
    fn with_ops(
        &self,
        f: &mut dyn FnMut(&mut dyn BlockingOps) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let mut connection = self.connection.try_borrow_mut().map_err(|_| {
            RepoError::Connection("the transaction's connection is already in use".into())
        })?;
        f(&mut **connection)
    }
}

enum TransactionError<E> {
    Caller(E),
    Database(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for TransactionError<E> {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}
