//! The async API (diesel-async on tokio): a pooled [`AsyncDatabase`]
//! (deadpool, or bb8 with the `bb8` feature and `KEEL_POOL=bb8`),
//! [`AsyncSession`]s and [`AsyncTransaction`]s. Each is an
//! [`Executor`](crate::Executor) whose repository methods return `Send`
//! futures.
//!
//! PostgreSQL runs on `AsyncPgConnection` (tokio-postgres, no libpq);
//! SQLite runs on diesel's own `SqliteConnection`, each operation in place
//! on the calling thread (see [`sqlite_calls`]).

#[cfg(feature = "sync")]
mod blocking_lane;
mod database;
mod pool;
mod session;
mod sql_once;
mod sqlite_calls;

#[cfg(feature = "sync")]
#[doc(hidden)]
pub use blocking_lane::BlockingLane;
pub use database::{AsyncDatabase, AsyncTransaction, PoolStatus, PooledConn};
pub use session::AsyncSession;
#[doc(hidden)]
pub use sql_once::SqlOnce;
pub(crate) use sqlite_calls::in_place;

use std::pin::Pin;

use crate::RepoError;
use crate::conn::Conn;
use crate::executor::{Executor, Mode};

/// Async mode: a method returns its body as a boxed `Send` future.
pub struct Async;

impl Mode for Async {
    type Output<'f, T>
        = Pin<Box<dyn Future<Output = Result<T, RepoError>> + Send + 'f>>
    where
        T: 'f;

    fn output<'f, T: 'f>(
        body: impl Future<Output = Result<T, RepoError>> + Send + 'f,
    ) -> Self::Output<'f, T> {
        Box::pin(body)
    }

    fn pause(duration: std::time::Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

/// `with_conn` of every async executor: `f` on one checked-out connection,
/// its error mapped and the N+1 guard checked as for keel's own calls.
async fn with_conn<E: Executor, T>(
    executor: &E,
    f: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
) -> Result<T, RepoError> {
    crate::executor::call(executor, f).await
}
