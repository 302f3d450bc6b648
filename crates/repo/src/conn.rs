//! [`Conn`]: the connection every operation runs on, in either mode, on
//! either backend, and [`run!`](crate::run), which sends one Diesel statement
//! on it.
//!
//! An operation is an `async fn` taking `&mut Conn<'_>`. Its statements go
//! through `run!(conn, load(query))`, which expands the one statement for
//! each kind of connection: diesel's sync `RunQueryDsl` on libpq and SQLite,
//! diesel-async's awaited one on tokio-postgres. The sync arms complete at
//! once, so in sync mode the whole operation is ready on its first poll and
//! [`crate::executor`] runs it without a runtime. SQLite is one sync
//! connection in both modes: async mode runs SQLite operations in place (see
//! [`crate::executor::drive`]).

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::PgConnection;
use diesel::result::QueryResult;
use diesel::sqlite::SqliteConnection;

/// PostgreSQL over tokio-postgres (async mode).
#[cfg(feature = "async")]
pub use diesel_async::AsyncPgConnection;

/// Without the `async` feature there is no async connection: this type has
/// no values, so [`Conn::AsyncPostgres`] never occurs.
#[cfg(not(feature = "async"))]
#[derive(Debug)]
pub enum AsyncPgConnection {}

/// A borrowed connection to the database, whichever backend and mode.
pub enum Conn<'c> {
    /// PostgreSQL through libpq (sync mode).
    Postgres(&'c mut PgConnection),
    /// SQLite, in this process (both modes).
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL through tokio-postgres (async mode).
    AsyncPostgres(&'c mut AsyncPgConnection),
}

/// Which database a [`Conn`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, either driver.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The server's default (READ COMMITTED on PostgreSQL).
    Default,
    /// SERIALIZABLE on PostgreSQL.
    Serializable,
}

/// Sends one Diesel statement on a `&mut Conn`: `run!(conn, load(query))`,
/// `run!(conn, get_result(query))`, `run!(conn, execute(query))`, … (any
/// method the two `RunQueryDsl`s share). The query expression is written once
/// and built for each kind of connection; the result is a
/// `diesel::QueryResult`. Use it inside an `async` operation: on
/// tokio-postgres the statement is awaited.
///
/// Before sending, each arm tells the N+1 guard the statement's static
/// identity (its `QueryId` type, as diesel's prepared-statement cache keys
/// it), so a scope groups it without rendering its SQL: `(&Probe).note()`
/// resolves to [`scope::shapes::NoteStatic`](crate::scope::shapes) when the
/// query has one, and to the do-nothing `NoteAny` otherwise (dynamic SQL, or
/// a type generic at the call site), whose statements are rendered as before.
#[macro_export]
macro_rules! run {
    ($conn:expr, $method:ident($query:expr $(,)?)) => {
        match $crate::Conn::reborrow($conn) {
            $crate::Conn::Postgres(c) => match $query {
                query => {
                    {
                        #[allow(unused_imports)]
                        use $crate::scope::shapes::{NoteAny as _, NoteStatic as _};
                        static SITE: $crate::scope::shapes::Site = $crate::scope::shapes::Site::new();
                        (&$crate::scope::shapes::Probe::<_, $crate::__private::diesel::pg::Pg>::new(&query, &SITE)).note();
                    }
                    let result = $crate::__private::diesel::RunQueryDsl::$method(query, c);
                    $crate::scope::shapes::forget();
                    result
                }
            },
            $crate::Conn::Sqlite(c) => match $query {
                query => {
                    {
                        #[allow(unused_imports)]
                        use $crate::scope::shapes::{NoteAny as _, NoteStatic as _};
                        static SITE: $crate::scope::shapes::Site = $crate::scope::shapes::Site::new();
                        (&$crate::scope::shapes::Probe::<_, $crate::__private::diesel::sqlite::Sqlite>::new(&query, &SITE)).note();
                    }
                    let result = $crate::__private::diesel::RunQueryDsl::$method(query, c);
                    $crate::scope::shapes::forget();
                    result
                }
            },
            $crate::Conn::AsyncPostgres(c) => $crate::__async_statement!(c, $method($query)),
        }
    };
}

/// The async arm of [`run!`](crate::run), as this build of keel-repo has it.
/// A statement that returns rows is sent as
/// [`SqlOnce`](crate::asynchronous::SqlOnce), so that diesel-async does not
/// render its SQL again on every call.
#[cfg(feature = "async")]
#[doc(hidden)]
#[macro_export]
macro_rules! __async_statement {
    ($c:expr, execute($query:expr)) => {
        match $query {
            query => {
                {
                    #[allow(unused_imports)]
                    use $crate::scope::shapes::{NoteAny as _, NoteStatic as _};
                    static SITE: $crate::scope::shapes::Site = $crate::scope::shapes::Site::new();
                    (&$crate::scope::shapes::Probe::<_, $crate::__private::diesel::pg::Pg>::new(
                        &query, &SITE,
                    ))
                        .note();
                }
                let statement = $crate::__private::diesel_async::RunQueryDsl::execute(query, $c);
                $crate::scope::shapes::forget();
                statement.await
            }
        }
    };
    ($c:expr, $method:ident($query:expr)) => {{
        static SITE: $crate::scope::shapes::Site = $crate::scope::shapes::Site::new();
        let query = $crate::asynchronous::SqlOnce::new(
            $crate::__private::diesel::query_builder::AsQuery::as_query($query),
            &SITE,
        );
        query.note();
        let statement = $crate::__private::diesel_async::RunQueryDsl::$method(query, $c);
        $crate::scope::shapes::forget();
        statement.await
    }};
}

/// Without the `async` feature the async arm cannot occur.
#[cfg(not(feature = "async"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __async_statement {
    ($c:ident, $method:ident($query:expr)) => {
        match *$c {}
    };
}

/// A tokio-postgres connection shared by statements sent together:
/// [`Pipeline::load`] futures polled together (`futures_util::future::try_join3`)
/// are all written before the first answer is read, as diesel-async
/// pipelines them: one round trip. [`Conn::pipeline`] gives one.
#[cfg(feature = "async")]
pub struct Pipeline<'c>(&'c AsyncPgConnection);

/// Without the `async` feature there is no pipeline: this type has no values.
#[cfg(not(feature = "async"))]
pub enum Pipeline<'c> {
    #[doc(hidden)]
    Never(std::convert::Infallible, std::marker::PhantomData<&'c ()>),
}

#[cfg(feature = "async")]
impl<'c> Pipeline<'c> {
    /// Sends `query` and collects its rows, as `run!(conn, load(query))`
    /// does (noted for the N+1 guard, counted, SQL rendered once).
    pub fn load<'q, Q, U>(
        &self,
        query: Q,
    ) -> std::pin::Pin<Box<dyn Future<Output = QueryResult<Vec<U>>> + Send + 'q>>
    where
        Q: diesel::query_builder::AsQuery + Send + 'q,
        Q::Query: diesel::query_builder::QueryFragment<diesel::pg::Pg>
            + diesel::query_builder::QueryId
            + Send,
        crate::asynchronous::SqlOnce<Q::Query>:
            diesel_async::methods::LoadQuery<'q, &'q AsyncPgConnection, U> + 'q,
        U: Send + 'q,
        'c: 'q,
    {
        let shared: &'q AsyncPgConnection = self.0;
        Box::pin(async move {
            let mut shared = shared;
            crate::__async_statement!(&mut shared, load(query))
        })
    }
}

#[cfg(not(feature = "async"))]
impl Pipeline<'_> {
    /// Never called: there is no pipeline without the `async` feature.
    pub async fn load<Q, U>(&self, _query: Q) -> QueryResult<Vec<U>> {
        match self {
            Self::Never(never, _) => match *never {},
        }
    }
}

impl<'c> Conn<'c> {
    /// The same connection, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Self::Postgres(c) => Conn::Postgres(c),
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::AsyncPostgres(c) => Conn::AsyncPostgres(c),
        }
    }

    /// Marks the connection as unfit for reuse (its transaction state says
    /// "broken"), so its pool closes it instead of handing it out again:
    /// for a connection that reached a node that can no longer write.
    pub(crate) fn discard(&mut self) {
        match self {
            Self::Postgres(c) => {
                AnsiTransactionManager::transaction_manager_status_mut(&mut **c).set_in_error();
            }
            Self::Sqlite(c) => {
                AnsiTransactionManager::transaction_manager_status_mut(&mut **c).set_in_error();
            }
            #[cfg(feature = "async")]
            Self::AsyncPostgres(c) => {
                use diesel_async::{AsyncConnection, TransactionManager};
                type Manager = <AsyncPgConnection as AsyncConnection>::TransactionManager;
                Manager::transaction_manager_status_mut(&mut **c).set_in_error();
            }
            #[cfg(not(feature = "async"))]
            Self::AsyncPostgres(c) => match **c {},
        }
    }

    /// The backend at the other end.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) | Self::AsyncPostgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The connection as a [`Pipeline`], when statements sent together
    /// share one round trip (tokio-postgres). Elsewhere each statement is a
    /// call of its own, and `None` tells an operation to run them one
    /// after another.
    pub fn pipeline(&self) -> Option<Pipeline<'_>> {
        match self {
            #[cfg(feature = "async")]
            Self::AsyncPostgres(c) => Some(Pipeline(c)),
            _ => None,
        }
    }

    /// Runs `body` in a transaction: `Ok` commits, `Err` rolls back. Inside
    /// another transaction it is a savepoint. On SQLite an outermost one
    /// takes the write lock as it begins (`BEGIN IMMEDIATE`): a deferred
    /// `BEGIN` would fail its first write at once ("database is locked",
    /// whatever the busy timeout) when another writer committed since its
    /// first read.
    pub async fn transaction<T, E>(
        &mut self,
        body: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        self.transaction_with(Isolation::Default, body).await
    }

    /// [`Conn::transaction`] at `isolation`.
    pub async fn transaction_with<T, E>(
        &mut self,
        isolation: Isolation,
        body: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        self.begin(isolation).await?;
        let result = body(self).await;
        self.end(result).await
    }

    /// Ends the transaction [`Conn::begin`] began: commits on `Ok`, rolls
    /// back on `Err`.
    pub(crate) async fn end<T, E>(&mut self, result: Result<T, E>) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        match result {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(error) => {
                // The body's error is the one worth reporting; a failed
                // rollback leaves the connection broken, and its pool drops it.
                let _ = self.rollback().await;
                Err(error)
            }
        }
    }

    /// Runs a single write so that `Ok` means committed. libpq and SQLite
    /// return only after the statement's implicit transaction committed.
    /// tokio-postgres hands back the result before the server's
    /// ReadyForQuery, i.e. before the commit: a connection lost in that
    /// window turns an `Ok` into a lost write. There an explicit `COMMIT`,
    /// awaited, closes the window (transaction control is not counted as a
    /// statement).
    pub async fn durable_write<T>(
        &mut self,
        write: impl AsyncFnOnce(&mut Conn<'_>) -> QueryResult<T>,
    ) -> QueryResult<T> {
        match self {
            Self::AsyncPostgres(_) => self.transaction(write).await,
            _ => write(self).await,
        }
    }

    /// Begins a transaction (a savepoint when one is open).
    pub(crate) async fn begin(&mut self, isolation: Isolation) -> QueryResult<()> {
        match self {
            Self::Postgres(c) => {
                if isolation == Isolation::Serializable && transaction_depth(*c)?.is_none() {
                    AnsiTransactionManager::begin_transaction_sql(
                        *c,
                        "BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                    )
                } else {
                    AnsiTransactionManager::begin_transaction(*c)
                }
            }
            Self::Sqlite(c) => {
                if transaction_depth(*c)?.is_none() {
                    AnsiTransactionManager::begin_transaction_sql(*c, "BEGIN IMMEDIATE")
                } else {
                    AnsiTransactionManager::begin_transaction(*c)
                }
            }
            Self::AsyncPostgres(c) => async_pg::begin(c, isolation).await,
        }
    }

    /// Commits the innermost transaction (or releases its savepoint).
    pub(crate) async fn commit(&mut self) -> QueryResult<()> {
        match self {
            Self::Postgres(c) => AnsiTransactionManager::commit_transaction(*c),
            Self::Sqlite(c) => AnsiTransactionManager::commit_transaction(*c),
            Self::AsyncPostgres(c) => async_pg::commit(c).await,
        }
    }

    /// Rolls the innermost transaction back (or to its savepoint).
    pub(crate) async fn rollback(&mut self) -> QueryResult<()> {
        match self {
            Self::Postgres(c) => AnsiTransactionManager::rollback_transaction(*c),
            Self::Sqlite(c) => AnsiTransactionManager::rollback_transaction(*c),
            Self::AsyncPostgres(c) => async_pg::rollback(c).await,
        }
    }
}

/// How deep in transactions a sync connection is (`None`: in none).
fn transaction_depth<C>(conn: &mut C) -> QueryResult<Option<std::num::NonZeroU32>>
where
    C: diesel::Connection<TransactionManager = AnsiTransactionManager>,
{
    AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()
}

/// Transaction control on tokio-postgres.
#[cfg(feature = "async")]
mod async_pg {
    use diesel::result::QueryResult;
    use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};

    use super::Isolation;

    pub(super) async fn begin(
        conn: &mut AsyncPgConnection,
        isolation: Isolation,
    ) -> QueryResult<()> {
        let outermost = AnsiTransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()?
            .is_none();
        if isolation == Isolation::Serializable && outermost {
            AnsiTransactionManager::begin_transaction_sql(
                conn,
                "BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            )
            .await
        } else {
            AnsiTransactionManager::begin_transaction(conn).await
        }
    }

    pub(super) async fn commit(conn: &mut AsyncPgConnection) -> QueryResult<()> {
        AnsiTransactionManager::commit_transaction(conn).await
    }

    pub(super) async fn rollback(conn: &mut AsyncPgConnection) -> QueryResult<()> {
        AnsiTransactionManager::rollback_transaction(conn).await
    }
}

/// Without the `async` feature there is no async connection to control.
#[cfg(not(feature = "async"))]
mod async_pg {
    use diesel::result::QueryResult;

    use super::{AsyncPgConnection, Isolation};

    pub(super) async fn begin(conn: &mut AsyncPgConnection, _: Isolation) -> QueryResult<()> {
        match *conn {}
    }

    pub(super) async fn commit(conn: &mut AsyncPgConnection) -> QueryResult<()> {
        match *conn {}
    }

    pub(super) async fn rollback(conn: &mut AsyncPgConnection) -> QueryResult<()> {
        match *conn {}
    }
}
