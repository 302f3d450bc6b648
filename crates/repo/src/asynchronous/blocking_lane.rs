//! Sync keel-repo code run from async code: on tokio's blocking pool, over a
//! small sync pool of the same database, opened on first use.
//!
//! Some fast paths exist only on a sync connection. PostgreSQL's `COPY … FROM
//! STDIN` is one: diesel-async has no COPY, and diesel's `copy_from` runs on
//! libpq's `PgConnection`. So async `insert_many` on the pool goes through
//! this lane, and so does [`crate::asynchronous::AsyncDatabase::run_blocking`],
//! which hands a whole sync unit of work (a multi-table load in one
//! transaction, say) to a blocking thread.

use std::sync::{Arc, Mutex};

use crate::scope::ScopeContext;
use crate::sync::Database;
use crate::{DatabaseConfig, DatabaseUrl, RepoError, StatementCounter};

/// Most connections the lane opens. Bulk loads are few and long; more would
/// only take connections from the server.
const LANE_POOL_SIZE: u32 = 2;

/// The sync side of an async pool.
pub struct BlockingLane {
    config: DatabaseConfig,
    statements: StatementCounter,
    database: Mutex<Option<Arc<Database>>>,
}

impl BlockingLane {
    pub(crate) fn new(config: &DatabaseConfig, statements: StatementCounter) -> Arc<Self> {
        let mut config = config.clone();
        config.pool_size = config.pool_size.min(LANE_POOL_SIZE);
        Arc::new(Self {
            config,
            statements,
            database: Mutex::new(None),
        })
    }

    /// The lane's sync pool, connected on first use. Its statements count on
    /// the async pool's counter.
    fn database(&self) -> Result<Arc<Database>, RepoError> {
        if let DatabaseUrl::Sqlite(path) = &self.config.url
            && crate::config::is_in_memory(path)
        {
            // A second connection to `:memory:` would open an empty database.
            return Err(RepoError::Connection(
                "an in-memory SQLite database lives in the async pool's one connection; \
                 sync code cannot reach it (use a database file)"
                    .to_owned(),
            ));
        }
        let mut slot = self
            .database
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(database) = slot.as_ref() {
            return Ok(database.clone());
        }
        let database = Arc::new(Database::connect_counting(
            &self.config,
            self.statements.clone(),
        )?);
        *slot = Some(database.clone());
        Ok(database)
    }

    /// Runs `f` on a blocking thread with the lane's sync database, inside
    /// the caller's `QueryScope`, if any. A panic in `f` reaches the caller.
    pub(crate) async fn run<T, E, F>(self: &Arc<Self>, f: F) -> Result<T, E>
    where
        F: FnOnce(&Database) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        let lane = self.clone();
        let context = ScopeContext::capture();
        let task = tokio::task::spawn_blocking(move || {
            context.enter(|| {
                let database = lane.database()?;
                f(&database)
            })
        });
        match task.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(RepoError::Unavailable(format!(
                "the blocking task did not finish: {error}"
            ))
            .into()),
        }
    }
}
