//! Sessions: one pooled connection held for a unit of work, so a sequence
//! of repository calls pays for one checkout (the reference ORM's `Session`),
//! without holding a transaction open.

use std::sync::Mutex;

use super::database::Pooled;
use super::{Database, Held};
use crate::RepoError;
use crate::conn::Conn;
use crate::executor::{ConnGuard, Executor};

/// A connection checked out of the pool until the session is dropped. Each
/// call commits on its own (no transaction spans calls; use
/// [`Database::transaction`] for that).
pub struct Session {
    connection: Mutex<Option<Pooled>>,
    /// Whether writes record their commit LSN (the pool has replicas).
    records_write_lsn: bool,
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
            connection: Mutex::new(Some(self.checkout()?)),
            records_write_lsn: self.records_write_lsn(),
        })
    }
}

impl Session {
    /// Runs `f` on this session's connection: a service's own queries, with
    /// `run!`. See [`Database::with_conn`].
    pub fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
    ) -> Result<T, RepoError> {
        super::with_conn(self, f)
    }
}

impl Executor for Session {
    type Mode = super::Blocking;
    type Guard<'g> = Held<'g, Pooled>;

    async fn checkout(&self) -> Result<Held<'_, Pooled>, RepoError> {
        Held::take(&self.connection, "session")
    }

    fn records_write_lsn(&self) -> bool {
        self.records_write_lsn
    }
}

impl ConnGuard for Held<'_, Pooled> {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        self.held()?.conn()
    }
}
