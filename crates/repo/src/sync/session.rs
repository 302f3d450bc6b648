//! Sessions: one pooled connection held for a unit of work, so a sequence
//! of repository calls pays for one checkout (the reference ORM's `Session`),
//! without holding a transaction open.

use std::cell::RefCell;

use super::database::Pooled;
use super::{CommentRepository, Database, Executor, PostRepository, UserRepository};
use crate::RepoError;
use crate::ops::BlockingOps;

/// A connection checked out of the pool until the session is dropped. Each
/// call commits on its own (no transaction spans calls; use
/// [`Database::transaction`] for that).
pub struct Session {
    connection: RefCell<Pooled>,
}

impl Database {
    /// Opens up to `connections` connections now (bounded by the pool size)
    /// and returns them to the pool idle, so the first requests do not pay
    /// for connecting.
    pub fn warm_up(&self, connections: u32) -> Result<(), RepoError> {
        let wanted = connections.min(self.config().effective_pool_size());
        let held: Vec<Pooled> = (0..wanted)
            .map(|_| self.checkout())
            .collect::<Result<_, _>>()?;
        drop(held);
        Ok(())
    }

    /// Checks out a connection for a sequence of calls.
    pub fn session(&self) -> Result<Session, RepoError> {
        Ok(Session {
            connection: RefCell::new(self.checkout()?),
        })
    }
}

impl Session {
    /// Users, on this session's connection.
    pub fn users(&self) -> UserRepository<'_> {
        UserRepository::new(self)
    }

    /// Posts, on this session's connection.
    pub fn posts(&self) -> PostRepository<'_> {
        PostRepository::new(self)
    }

    /// Comments, on this session's connection.
    pub fn comments(&self) -> CommentRepository<'_> {
        CommentRepository::new(self)
    }
}

impl Executor for Session {
    fn with_ops(
        &self,
        f: &mut dyn FnMut(&mut dyn BlockingOps) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let mut connection = self.connection.try_borrow_mut().map_err(|_| {
            RepoError::Connection("the session's connection is already in use".into())
        })?;
        f(connection.ops())
    }
}
