//! The async API (diesel-async on tokio): a pooled [`AsyncDatabase`]
//! (deadpool, or bb8 with the `bb8` feature), its repositories, and
//! transactions in which several repository calls share one connection.
//!
//! PostgreSQL runs on `AsyncPgConnection` (tokio-postgres, no libpq);
//! SQLite runs on diesel-async's `SyncConnectionWrapper`, with each call run
//! in place on the calling thread (see [`crate::SqliteCalls`]).

#[cfg(feature = "sync")]
mod blocking_lane;
mod database;
mod repositories;
mod session;
mod sqlite_calls;

pub use database::{AsyncDatabase, AsyncTransaction, PoolStatus};
pub use repositories::{CommentRepository, PostRepository, UserRepository};
pub use session::AsyncSession;

use diesel::sqlite::SqliteConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

use crate::RepoError;

/// An async SQLite connection: the sync one, its calls run by [`sqlite_calls::SqliteCallRunner`].
pub(crate) type AsyncSqliteConnection =
    SyncConnectionWrapper<SqliteConnection, sqlite_calls::SqliteCallRunner>;

/// An async connection to one backend, borrowed for one repository call.
pub(crate) enum AsyncConn<'c> {
    Postgres(&'c mut AsyncPgConnection),
    Sqlite(&'c mut AsyncSqliteConnection),
}

/// Something a repository can borrow an [`AsyncConn`] from.
pub(crate) trait ConnGuard: Send {
    fn conn(&mut self) -> AsyncConn<'_>;
}

/// Where an async repository gets its connection: the pool (one checkout
/// per call) or an open transaction (its connection, for every call).
pub trait AsyncExecutor: Sync + private::Sealed {
    #[doc(hidden)]
    #[allow(private_bounds, private_interfaces)]
    type Guard<'g>: ConnGuard
    where
        Self: 'g;

    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn checkout(&self) -> impl Future<Output = Result<Self::Guard<'_>, RepoError>> + Send;

    /// Where `insert_many` loads with `COPY` (the pool on PostgreSQL); `None`
    /// where it must share the executor's connection (a transaction).
    #[doc(hidden)]
    #[cfg(feature = "sync")]
    #[allow(private_interfaces)]
    fn copy_lane(&self) -> Option<&std::sync::Arc<blocking_lane::BlockingLane>> {
        None
    }
}

mod private {
    pub trait Sealed {}
}
