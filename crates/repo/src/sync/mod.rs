//! The blocking API: a pooled [`Database`] (r2d2), [`Session`]s that hold
//! one connection for a sequence of calls, and [`Transaction`]s. Each is an
//! [`Executor`](crate::Executor) whose repository methods return their
//! `Result` directly.

mod database;
mod session;

pub use database::{Database, Transaction};
pub use session::Session;

use std::sync::Mutex;

use crate::RepoError;
use crate::conn::Conn;
use crate::executor::{Executor, Mode, complete_now};

/// Sync mode: a method's body runs to its end at once (every statement is a
/// blocking call), and the method returns its `Result`.
pub struct Blocking;

impl Mode for Blocking {
    type Output<'f, T>
        = Result<T, RepoError>
    where
        T: 'f;

    fn output<'f, T: 'f>(
        body: impl Future<Output = Result<T, RepoError>> + Send + 'f,
    ) -> Result<T, RepoError> {
        complete_now(body)
    }

    fn pause(duration: std::time::Duration) -> impl Future<Output = ()> + Send {
        std::thread::sleep(duration);
        std::future::ready(())
    }
}

/// `with_conn` of every sync executor: `f` on one checked-out connection,
/// its error mapped and the N+1 guard checked as for keel's own calls.
fn with_conn<E: Executor, T>(
    executor: &E,
    f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
) -> Result<T, RepoError> {
    complete_now(crate::executor::call(executor, f))
}

/// `with_read_conn` of the sync pool: `f` as a read ([`crate::executor::read`]).
fn with_read_conn<E: Executor, T>(
    executor: &E,
    f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T> + Clone,
) -> Result<T, RepoError> {
    complete_now(crate::executor::read(executor, f))
}

/// A connection taken out of a session's or transaction's slot for one
/// call, and put back when the call ends. The slot is a `Mutex`, so these
/// handles can be shared; the taken value is owned, so the guard is `Send`
/// (a repository body is the same code in both modes, and async mode needs
/// `Send`).
pub struct Held<'s, C> {
    slot: &'s Mutex<Option<C>>,
    conn: Option<C>,
}

impl<'s, C> Held<'s, C> {
    /// Takes the connection; an error when a call already holds it.
    pub(crate) fn take(slot: &'s Mutex<Option<C>>, holder: &str) -> Result<Self, RepoError> {
        let conn = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match conn {
            Some(conn) => Ok(Self {
                slot,
                conn: Some(conn),
            }),
            None => Err(RepoError::Connection(format!(
                "the {holder}'s connection is already in use"
            ))),
        }
    }

    /// The taken connection.
    pub(crate) fn held(&mut self) -> Result<&mut C, RepoError> {
        self.conn
            .as_mut()
            .ok_or_else(|| RepoError::Connection("the connection was already returned".into()))
    }
}

impl<C> Drop for Held<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            *self
                .slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn);
        }
    }
}
