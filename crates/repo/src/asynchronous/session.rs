//! Async sessions: one pooled connection held for a unit of work, so a
//! sequence of repository calls pays for one checkout, without holding a
//! transaction open.

use tokio::sync::{Mutex, MutexGuard};

use super::database::PooledConn;
use super::{
    AsyncConn, AsyncDatabase, AsyncExecutor, CommentRepository, ConnGuard, PostRepository,
    UserRepository, private,
};
use crate::RepoError;

/// A connection checked out of the pool until the session is dropped. Each
/// call commits on its own (no transaction spans calls; use
/// [`AsyncDatabase::transaction`] for that). Calls on one session run one
/// at a time.
pub struct AsyncSession {
    connection: Mutex<PooledConn>,
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
        })
    }
}

impl AsyncSession {
    /// Users, on this session's connection.
    pub fn users(&self) -> UserRepository<'_, Self> {
        UserRepository::new(self)
    }

    /// Posts, on this session's connection.
    pub fn posts(&self) -> PostRepository<'_, Self> {
        PostRepository::new(self)
    }

    /// Comments, on this session's connection.
    pub fn comments(&self) -> CommentRepository<'_, Self> {
        CommentRepository::new(self)
    }
}

#[doc(hidden)]
pub struct SessionGuard<'g>(MutexGuard<'g, PooledConn>);

impl ConnGuard for SessionGuard<'_> {
    fn conn(&mut self) -> AsyncConn<'_> {
        self.0.conn()
    }
}

impl private::Sealed for AsyncSession {}

impl AsyncExecutor for AsyncSession {
    type Guard<'g> = SessionGuard<'g>;

    async fn checkout(&self) -> Result<SessionGuard<'_>, RepoError> {
        Ok(SessionGuard(self.connection.lock().await))
    }
}
