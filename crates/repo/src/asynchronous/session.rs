//! Async sessions: one pooled connection held for a unit of work, so a
//! sequence of repository calls pays for one checkout, without holding a
//! transaction open.

use tokio::sync::{Mutex, MutexGuard};

use super::{AsyncDatabase, PooledConn};
use crate::RepoError;
use crate::conn::Conn;
use crate::executor::{ConnGuard, Executor};

/// A connection checked out of the pool until the session is dropped. Each
/// call commits on its own (no transaction spans calls; use
/// [`AsyncDatabase::transaction`] for that). Calls on one session run one
/// at a time.
pub struct AsyncSession {
    connection: Mutex<PooledConn>,
    /// Whether writes record their commit LSN (the pool has replicas).
    records_write_lsn: bool,
}

impl AsyncDatabase {
    /// Opens up to `connections` connections now (bounded by the pool size)
    /// and returns them to the pool idle, so the first requests do not pay
    /// for connecting.
    pub async fn warm_up(&self, connections: u32) -> Result<(), RepoError> {
        let wanted = connections.min(self.config().effective_pool_size());
        let mut held = Vec::new();
        for _ in 0..wanted {
            held.push(self.checkout().await?);
        }
        drop(held);
        Ok(())
    }

    /// Checks out a connection for a sequence of calls.
    pub async fn session(&self) -> Result<AsyncSession, RepoError> {
        Ok(AsyncSession {
            connection: Mutex::new(self.checkout().await?),
            records_write_lsn: self.records_write_lsn(),
        })
    }
}

impl AsyncSession {
    /// Runs `f` on this session's connection; see [`AsyncDatabase::with_conn`].
    pub async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
    ) -> Result<T, RepoError> {
        super::with_conn(self, f).await
    }
}

#[doc(hidden)]
pub struct SessionGuard<'g>(MutexGuard<'g, PooledConn>);

impl ConnGuard for SessionGuard<'_> {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        self.0.conn()
    }
}

impl Executor for AsyncSession {
    type Mode = super::Async;
    type Guard<'g> = SessionGuard<'g>;

    async fn checkout(&self) -> Result<SessionGuard<'_>, RepoError> {
        Ok(SessionGuard(self.connection.lock().await))
    }

    fn records_write_lsn(&self) -> bool {
        self.records_write_lsn
    }
}
