//! Executors: where a repository gets its connection, and what its methods
//! return in each mode.
//!
//! A repository method is written once, as an `async` block handed to
//! [`Executor::output`]. In sync mode ([`crate::sync`]) that block runs to
//! its end at once and the method returns the `Result`; in async mode
//! ([`crate::asynchronous`]) the method returns the block as a future. Inside
//! it, [`call`] checks a connection out, runs one operation on
//! it, and turns the result into a [`RepoError`] (after the N+1 guard's
//! check).
//!
//! Every pool, session and transaction of both modes is an `Executor`, so a
//! repository a service writes for its own tables works on all of them, as
//! keel's own do.

use std::time::Duration;

use crate::conn::{Backend, Conn};
use crate::replicas::{self, ReadGuard, Settled};
use crate::scope::check_current;
use crate::{RepoError, error};

/// A connection checked out for one call.
pub trait ConnGuard: Send {
    /// The connection (an error when it is no longer there: the
    /// transaction ended, or a call on the same handle holds it).
    fn conn(&mut self) -> Result<Conn<'_>, RepoError>;
}

/// What a repository method of executor `E` returns for a `T`: the
/// `Result` itself (sync) or a future of it (async).
pub type Out<'f, E, T> = <<E as Executor>::Mode as Mode>::Output<'f, T>;

/// A mode: how a method's body becomes its result. [`crate::sync::Blocking`]
/// and [`crate::asynchronous::Async`] are the two.
pub trait Mode {
    /// A method's result: `Result<T, RepoError>` in sync mode, a `Send`
    /// future of it in async mode.
    type Output<'f, T>
    where
        T: 'f;

    /// Turns a method's body into what the method returns.
    fn output<'f, T: 'f>(
        body: impl Future<Output = Result<T, RepoError>> + Send + 'f,
    ) -> Self::Output<'f, T>;

    /// Waits `duration` inside a method's body: the thread sleeps in sync
    /// mode, a timer runs in async mode.
    fn pause(duration: Duration) -> impl Future<Output = ()> + Send;
}

/// A source of connections: a pool, a session or a transaction, sync or async.
pub trait Executor: Sync {
    /// Sync or async.
    type Mode: Mode;

    /// The checked-out connection.
    type Guard<'g>: ConnGuard
    where
        Self: 'g;

    /// Checks a connection out (the pool), or takes the one it holds (a
    /// session, a transaction).
    fn checkout(&self) -> impl Future<Output = Result<Self::Guard<'_>, RepoError>> + Send;

    /// Checks a connection out for a read ([`read`]): a replica's, when
    /// this is a pool with replicas and the read may go there (see
    /// [`crate::replicas`]); else the same as [`Executor::checkout`].
    fn checkout_read(
        &self,
    ) -> impl Future<Output = Result<ReadGuard<'_, Self::Guard<'_>>, RepoError>> + Send {
        async { Ok(ReadGuard::primary(self.checkout().await?)) }
    }

    /// Whether a write through this executor records its commit LSN in the
    /// current scope, for read-your-writes on replicas: true on a pool
    /// with replicas and on its sessions (a transaction records it at
    /// commit instead).
    fn records_write_lsn(&self) -> bool {
        false
    }

    /// Calls made through the returned handle read from the primary, not
    /// from a replica: for a read that must see every committed write,
    /// whatever the scope has done. Without replicas (and in a session or
    /// a transaction, which read the primary anyway) it changes nothing.
    /// [`crate::QueryScope::read_from_primary`] does the same for a scope.
    fn primary(&self) -> OnPrimary<'_, Self>
    where
        Self: Sized,
    {
        OnPrimary(self)
    }

    /// Turns a repository method's body into what the method returns in
    /// this executor's mode.
    fn output<'f, T: 'f>(
        &self,
        body: impl Future<Output = Result<T, RepoError>> + Send + 'f,
    ) -> Out<'f, Self, T>
    where
        Self: Sized,
    {
        Self::Mode::output(body)
    }

    /// Where `insert_many` loads with `COPY` from async code: an async
    /// PostgreSQL pool's blocking lane.
    #[doc(hidden)]
    #[cfg(all(feature = "async", feature = "sync"))]
    fn blocking_lane(&self) -> Option<&std::sync::Arc<crate::asynchronous::BlockingLane>> {
        None
    }
}

/// Runs one operation on a connection from an executor, inside a
/// repository method's body (an `async` block), and returns
/// `Result<T, RepoError>`:
///
/// ```ignore
/// let user = call(db, async |conn| user_by_id(conn, id).await).await?;
/// ```
///
/// The connection is checked out for the operation and returned after it;
/// a SQLite operation runs in place ([`drive`]); the error is mapped and
/// the N+1 guard checked ([`finish`]).
///
/// It runs on the primary: use it for writes, and for reads that must see
/// the primary (or [`read`] for reads a replica may answer). On a pool with
/// replicas, a write's commit LSN goes into the current scope.
pub async fn call<E, T>(
    executor: &E,
    operation: impl AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T>,
) -> Result<T, RepoError>
where
    E: Executor,
{
    let mut guard = executor.checkout().await?;
    let mut connection = guard.conn()?;
    let backend = connection.backend();
    let result = drive(backend, operation(&mut connection)).await;
    if result.is_ok() && executor.records_write_lsn() {
        replicas::record_commit_lsn(&mut connection).await;
    }
    finish(&mut connection, result)
}

/// Runs one read-only operation, like [`call`], on a replica when the
/// executor has one for it (a pool with replicas, outside a transaction and
/// outside [`crate::QueryScope::read_from_primary`]), on the primary
/// otherwise:
///
/// ```ignore
/// let user = read(db, async |conn| user_by_id(conn, id).await).await?;
/// ```
///
/// A replica answers only once it has replayed the current scope's writes.
/// If its connection is lost mid-read, or the standby cancels the query for
/// a recovery conflict, the operation runs again on the primary, as a clone
/// of the closure (closures that capture ids and references are `Clone`).
/// Never send a write this way: a standby refuses it.
pub async fn read<E, T, Op>(executor: &E, operation: Op) -> Result<T, RepoError>
where
    E: Executor,
    Op: AsyncFnOnce(&mut Conn<'_>) -> diesel::QueryResult<T> + Clone,
{
    let ReadGuard { mut guard, replica } = executor.checkout_read().await?;
    let mut connection = guard.conn()?;
    let backend = connection.backend();
    let again = replica.as_ref().map(|_| operation.clone());
    let result = drive(backend, operation(&mut connection)).await;
    if let Some(replica) = replica
        && let Some(again) = again
        && replica.settle(&result) == Settled::RetryOnPrimary
    {
        // The replica's connection goes back (or, lost, is closed) first.
        drop(guard);
        let mut guard = executor.checkout().await?;
        let mut connection = guard.conn()?;
        let result = drive(backend, again(&mut connection)).await;
        return finish(&mut connection, result);
    }
    finish(&mut connection, result)
}

/// Runs one operation's future. A SQLite operation blocks: on a tokio
/// worker it runs in place with `block_in_place`; everything else is awaited
/// as it is. (Sync executors block their thread anyway, on either backend:
/// call them from async code with `spawn_blocking`.)
#[doc(hidden)]
pub async fn drive<F: Future>(backend: Backend, operation: F) -> F::Output {
    #[cfg(feature = "async")]
    if backend == Backend::Sqlite {
        return crate::asynchronous::in_place(operation).await;
    }
    let _ = backend;
    operation.await
}

/// After an operation: its error as a [`RepoError`] (a SQLite unique
/// violation names its index, read from the catalog on the same
/// connection), then the N+1 guard's check in strict mode.
#[doc(hidden)]
pub fn finish<T>(conn: &mut Conn<'_>, result: diesel::QueryResult<T>) -> Result<T, RepoError> {
    check_current(result.map_err(|e| error::from_diesel(conn, e)))
}

/// A source of connections whose reads all go to the primary:
/// `db.primary()` on a pool with replicas, for calls that must see the
/// latest committed data whatever the scope has written.
pub struct OnPrimary<'a, E>(pub(crate) &'a E);

impl<E: Executor> Executor for OnPrimary<'_, E> {
    type Mode = E::Mode;
    type Guard<'g>
        = E::Guard<'g>
    where
        Self: 'g;

    fn checkout(&self) -> impl Future<Output = Result<Self::Guard<'_>, RepoError>> + Send {
        self.0.checkout()
    }

    fn records_write_lsn(&self) -> bool {
        self.0.records_write_lsn()
    }

    #[cfg(all(feature = "async", feature = "sync"))]
    fn blocking_lane(&self) -> Option<&std::sync::Arc<crate::asynchronous::BlockingLane>> {
        self.0.blocking_lane()
    }
}

/// Runs a future that completes on its first poll (sync mode: every
/// statement already ran). One that is still pending (it awaited something
/// other than keel's sync connections) is an error, not a hang.
pub(crate) fn complete_now<T>(
    body: impl Future<Output = Result<T, RepoError>>,
) -> Result<T, RepoError> {
    use std::task::{Context, Poll, Waker};
    let mut body = std::pin::pin!(body);
    match body.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(RepoError::Connection(
            "a sync call awaited something that was not ready: sync executors run only work \
             that completes without waiting (use the async executors for that)"
                .to_owned(),
        )),
    }
}

/// Applies keel's pending migrations on a connection checked out of
/// `executor`: how an in-memory SQLite database gets its schema, since a
/// connection of the migrator's own would open a second, empty database.
pub(crate) async fn migrate_in_place<E: Executor>(executor: &E) -> Result<Vec<String>, RepoError> {
    let mut guard = executor.checkout().await?;
    match guard.conn()? {
        Conn::Sqlite(conn) => drive(Backend::Sqlite, async {
            keel_migrations::run_pending_on_sqlite(conn)
        })
        .await
        .map_err(|e| RepoError::Connection(e.to_string())),
        _ => Err(RepoError::Connection(
            "only an in-memory SQLite database is migrated on a pooled connection".to_owned(),
        )),
    }
}
