//! Bulk inserts, generic over the table and the `Insertable` row type: one
//! multi-row `INSERT` per chunk of rows that fits the bind-parameter limit,
//! every chunk of one call in one transaction (all or nothing); for loads
//! on PostgreSQL, one `COPY … FROM STDIN`.
//!
//! Full chunks go to diesel as arrays (`&[R; N]`): diesel gives those a
//! static query id, so their statement is prepared once and then taken from
//! the connection's statement cache. A slice's `INSERT` is prepared afresh
//! every time, and on SQLite preparing a statement of 32,766 placeholders
//! costs about as much as running it. Only the last, shorter chunk goes as a
//! slice.

use diesel::pg::PgConnection;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::sqlite::SqliteConnection;
use diesel::{Insertable, QueryResult, Table};

use crate::conn::{AsyncPgConnection, Backend, Conn, Isolation};
use crate::executor::call;
use crate::{Executor, RepoError};

/// Bind parameters one SQLite statement may carry (the bundled library's limit).
pub const SQLITE_MAX_BINDS: usize = 32_766;
/// Bind parameters one PostgreSQL statement may carry.
pub const POSTGRES_MAX_BINDS: usize = 65_535;

/// Rows per multi-row `INSERT` on SQLite for a row type of `columns` columns.
pub const fn sqlite_rows_per_statement(columns: usize) -> usize {
    SQLITE_MAX_BINDS / columns
}

/// Rows per multi-row `INSERT` on PostgreSQL for a row type of `columns` columns.
pub const fn postgres_rows_per_statement(columns: usize) -> usize {
    POSTGRES_MAX_BINDS / columns
}

/// Loads rows on a sync PostgreSQL connection with `COPY … FROM STDIN`: a
/// table module's one-line function around `diesel::copy_from` (whose row
/// bounds diesel does not let generic code name).
pub type CopyIn<R> = fn(&mut PgConnection, &[R]) -> QueryResult<usize>;

/// Executing a statement on tokio-postgres, where this build has it.
#[cfg(feature = "async")]
pub trait AsyncExecute: diesel_async::methods::ExecuteDsl<AsyncPgConnection> {}
#[cfg(feature = "async")]
impl<S: diesel_async::methods::ExecuteDsl<AsyncPgConnection>> AsyncExecute for S {}
/// Without the `async` feature there is nothing to require.
#[cfg(not(feature = "async"))]
pub trait AsyncExecute {}
#[cfg(not(feature = "async"))]
impl<S> AsyncExecute for S {}

/// The `INSERT` of one chunk of `R` rows into `T`.
type InsertOf<'a, T, C> = InsertStatement<T, <&'a C as Insertable<T>>::Values>;

/// One `INSERT` statement, whichever connection.
async fn execute<S>(conn: &mut Conn<'_>, statement: S) -> QueryResult<usize>
where
    S: ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
{
    match conn {
        Conn::Postgres(c) => ExecuteDsl::execute(statement, &mut **c),
        Conn::Sqlite(c) => ExecuteDsl::execute(statement, &mut **c),
        Conn::AsyncPostgres(c) => async_execute(c, statement).await,
    }
}

#[cfg(feature = "async")]
async fn async_execute<S: AsyncExecute>(
    conn: &mut AsyncPgConnection,
    statement: S,
) -> QueryResult<usize> {
    diesel_async::methods::ExecuteDsl::execute(statement, conn).await
}

#[cfg(not(feature = "async"))]
async fn async_execute<S>(conn: &mut AsyncPgConnection, _: S) -> QueryResult<usize> {
    match *conn {}
}

/// Inserts `rows` without reading them back, one statement per chunk of
/// `N` rows on SQLite and `P` rows on PostgreSQL (each backend's bind limit:
/// [`sqlite_rows_per_statement`], [`postgres_rows_per_statement`]), in the
/// caller's transaction (or none); returns how many went in.
pub async fn insert_chunks<T, R, const N: usize, const P: usize>(
    conn: &mut Conn<'_>,
    table: T,
    rows: &[R],
) -> QueryResult<usize>
where
    T: Table + Copy,
    for<'r> &'r [R; N]: Insertable<T>,
    for<'r> &'r [R; P]: Insertable<T>,
    for<'r> &'r [R]: Insertable<T>,
    for<'r> InsertOf<'r, T, [R; N]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R; P]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
{
    match conn.backend() {
        Backend::Sqlite => chunked::<T, R, N>(conn, table, rows).await,
        Backend::Postgres => chunked::<T, R, P>(conn, table, rows).await,
    }
}

/// One statement per chunk of `K` rows: full chunks as arrays (cached
/// statements), the rest as a slice.
async fn chunked<T, R, const K: usize>(
    conn: &mut Conn<'_>,
    table: T,
    rows: &[R],
) -> QueryResult<usize>
where
    T: Table + Copy,
    for<'r> &'r [R; K]: Insertable<T>,
    for<'r> &'r [R]: Insertable<T>,
    for<'r> InsertOf<'r, T, [R; K]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
{
    let (full, rest) = rows.as_chunks::<K>();
    let mut inserted = 0;
    for chunk in full {
        inserted += execute(conn, diesel::insert_into(table).values(chunk)).await?;
    }
    if !rest.is_empty() {
        inserted += execute(conn, diesel::insert_into(table).values(rest)).await?;
    }
    Ok(inserted)
}

/// Inserts `rows` and reads them back, in one transaction: `insert` runs
/// one multi-row `INSERT … RETURNING` for each chunk of `sqlite_chunk` rows
/// (SQLite) or `postgres_chunk` rows (PostgreSQL). A table module supplies
/// the statement, since diesel's `RETURNING` bounds over a generic row type
/// do not hold across an `await`.
pub async fn insert_returning_chunks<R, M>(
    conn: &mut Conn<'_>,
    rows: &[R],
    (sqlite_chunk, postgres_chunk): (usize, usize),
    mut insert: impl AsyncFnMut(&mut Conn<'_>, &[R]) -> QueryResult<Vec<M>>,
) -> QueryResult<Vec<M>> {
    let size = match conn.backend() {
        Backend::Sqlite => sqlite_chunk,
        Backend::Postgres => postgres_chunk,
    };
    conn.transaction(async |c| {
        let mut stored = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(size.max(1)) {
            stored.extend(insert(c, chunk).await?);
        }
        Ok(stored)
    })
    .await
}

/// `insert_many` of a repository: `rows` loaded without reading them back,
/// all in one transaction. `COPY` on PostgreSQL where the connection is a
/// sync one, or the executor is an async pool with a blocking lane (the
/// rows are copied for its thread); multi-row `INSERT`s elsewhere.
pub async fn insert_many<E, T, R, const N: usize, const P: usize>(
    db: &E,
    table: T,
    rows: &[R],
    copy_in: CopyIn<R>,
) -> Result<usize, RepoError>
where
    E: Executor,
    T: Table + Copy + Send + Sync,
    R: Clone + Send + Sync + 'static,
    for<'r> &'r [R; N]: Insertable<T>,
    for<'r> &'r [R; P]: Insertable<T>,
    for<'r> &'r [R]: Insertable<T>,
    for<'r> InsertOf<'r, T, [R; N]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R; P]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
{
    if rows.is_empty() {
        return Ok(0);
    }
    #[cfg(all(feature = "async", feature = "sync"))]
    if let Some(lane) = db.blocking_lane() {
        let rows = rows.to_vec();
        return lane
            .run(move |sync_db| {
                sync_db.with_conn(async |conn| {
                    conn.transaction(async |c| load_in(c, &rows, copy_in)).await
                })
            })
            .await;
    }
    call(db, async |conn| {
        load_rows::<T, R, N, P>(conn, table, rows, copy_in).await
    })
    .await
}

/// `rows` in one transaction: `COPY` on sync PostgreSQL, chunks elsewhere.
async fn load_rows<T, R, const N: usize, const P: usize>(
    conn: &mut Conn<'_>,
    table: T,
    rows: &[R],
    copy_in: CopyIn<R>,
) -> QueryResult<usize>
where
    T: Table + Copy,
    for<'r> &'r [R; N]: Insertable<T>,
    for<'r> &'r [R; P]: Insertable<T>,
    for<'r> &'r [R]: Insertable<T>,
    for<'r> InsertOf<'r, T, [R; N]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R; P]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
    for<'r> InsertOf<'r, T, [R]>:
        ExecuteDsl<PgConnection> + ExecuteDsl<SqliteConnection> + AsyncExecute,
{
    conn.begin(Isolation::Default).await?;
    let loaded = match conn {
        Conn::Postgres(pg) => copy_in(pg, rows),
        _ => insert_chunks::<T, R, N, P>(conn, table, rows).await,
    };
    conn.end(loaded).await
}

/// `COPY` on a sync PostgreSQL connection (what the blocking lane has).
#[cfg(all(feature = "async", feature = "sync"))]
fn load_in<R>(conn: &mut Conn<'_>, rows: &[R], copy_in: CopyIn<R>) -> QueryResult<usize> {
    match conn {
        Conn::Postgres(pg) => copy_in(pg, rows),
        _ => Err(diesel::result::Error::QueryBuilderError(
            "the blocking lane is for PostgreSQL only".into(),
        )),
    }
}
