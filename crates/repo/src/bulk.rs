//! Bulk inserts: one multi-row `INSERT … RETURNING` per chunk of rows that
//! fits the backend's bind-parameter limit, every chunk of one call in one
//! transaction (all or nothing).

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use keel_models::{Comment, NewComment, NewPost, NewUser, Post, User};
use keel_schema::{comments, posts, users};

use crate::ops::{POSTGRES_MAX_BINDS, SQLITE_MAX_BINDS};
#[cfg(feature = "async")]
use crate::scope::ScopeContext;

/// Bind parameters per row of each insert struct (its column count).
const NEW_USER_BINDS: usize = 5;
const NEW_POST_BINDS: usize = 3;
const NEW_COMMENT_BINDS: usize = 3;

/// Bulk inserts on a sync connection.
pub(crate) trait BulkInsert {
    /// Inserts users; returns them as stored, in order.
    fn insert_users(&mut self, rows: &[NewUser]) -> QueryResult<Vec<User>>;
    /// Inserts posts; returns them as stored, in order.
    fn insert_posts(&mut self, rows: &[NewPost]) -> QueryResult<Vec<Post>>;
    /// Inserts comments; returns them as stored, in order.
    fn insert_comments(&mut self, rows: &[NewComment]) -> QueryResult<Vec<Comment>>;
    /// Loads users without reading them back; returns how many.
    fn bulk_load_users(&mut self, rows: &[NewUser]) -> QueryResult<usize>;
    /// Loads posts without reading them back; returns how many.
    fn bulk_load_posts(&mut self, rows: &[NewPost]) -> QueryResult<usize>;
    /// Loads comments without reading them back; returns how many.
    fn bulk_load_comments(&mut self, rows: &[NewComment]) -> QueryResult<usize>;
}

/// Runs `$run` on one multi-row INSERT per chunk of `$chunk` rows (a
/// constant). Full chunks go as arrays (`&[Row; N]`): diesel gives those a
/// static query id, so their statement is prepared once and then taken from
/// the connection's statement cache. A slice's INSERT is prepared afresh
/// every time, and on SQLite preparing a statement of 32,766 placeholders
/// costs about as much as running it. Only the last, shorter chunk goes as
/// a slice.
macro_rules! for_each_chunk {
    ($rows:ident, $table:path, $chunk:expr, |$stmt:ident| $run:expr) => {{
        let (full, rest) = $rows.as_chunks::<{ $chunk }>();
        for chunk in full {
            let $stmt = diesel::insert_into($table).values(chunk);
            $run;
        }
        if !rest.is_empty() {
            let $stmt = diesel::insert_into($table).values(rest);
            $run;
        }
    }};
}

/// The chunk loop without `RETURNING`: rows in, a count out.
macro_rules! load_chunks {
    ($rows:ident, $table:path, $binds_per_row:expr, $max_binds:expr, |$stmt:ident| $run:expr) => {{
        let mut loaded = 0;
        for_each_chunk!($rows, $table, $max_binds / $binds_per_row, |$stmt| {
            loaded += $run?
        });
        Ok(loaded)
    }};
}

/// SQLite: a write transaction takes the lock when it begins (BEGIN
/// IMMEDIATE) and waits out the busy timeout there, instead of failing
/// mid-way when its read lock cannot be upgraded; inside a caller's
/// transaction it is a savepoint.
fn sqlite_write_transaction<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let depth = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()?;
    if depth.is_some() {
        conn.transaction(f)
    } else {
        conn.immediate_transaction(f)
    }
}

#[cfg(feature = "sync")]
fn postgres_write_transaction<T>(
    conn: &mut diesel::pg::PgConnection,
    f: impl FnOnce(&mut diesel::pg::PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(f)
}

/// The chunk loop, for one table; `$run` turns one chunk's statement into
/// its rows (`.get_results(conn)`, awaited or not).
macro_rules! insert_chunks {
    ($conn:ident, $rows:ident, $table:path, $model:ty, $binds_per_row:expr, $max_binds:expr, |$stmt:ident| $run:expr) => {{
        let mut inserted: Vec<$model> = Vec::with_capacity($rows.len());
        for_each_chunk!($rows, $table, $max_binds / $binds_per_row, |insert| {
            let $stmt = insert.returning(<$model>::as_returning());
            inserted.extend($run?)
        });
        Ok(inserted)
    }};
}

macro_rules! impl_bulk_insert_sync {
    ($conn:ty, $max_binds:expr, $transaction:ident, $load:ident) => {
        impl BulkInsert for $conn {
            fn bulk_load_users(&mut self, rows: &[NewUser]) -> QueryResult<usize> {
                $load!(self, rows, users::table, NEW_USER_BINDS)
            }

            fn bulk_load_posts(&mut self, rows: &[NewPost]) -> QueryResult<usize> {
                $load!(self, rows, posts::table, NEW_POST_BINDS)
            }

            fn bulk_load_comments(&mut self, rows: &[NewComment]) -> QueryResult<usize> {
                $load!(self, rows, comments::table, NEW_COMMENT_BINDS)
            }

            fn insert_users(&mut self, rows: &[NewUser]) -> QueryResult<Vec<User>> {
                $transaction(self, |conn| {
                    insert_chunks!(
                        conn,
                        rows,
                        users::table,
                        User,
                        NEW_USER_BINDS,
                        $max_binds,
                        |stmt| { diesel::RunQueryDsl::get_results(stmt, conn) }
                    )
                })
            }

            fn insert_posts(&mut self, rows: &[NewPost]) -> QueryResult<Vec<Post>> {
                $transaction(self, |conn| {
                    insert_chunks!(
                        conn,
                        rows,
                        posts::table,
                        Post,
                        NEW_POST_BINDS,
                        $max_binds,
                        |stmt| { diesel::RunQueryDsl::get_results(stmt, conn) }
                    )
                })
            }

            fn insert_comments(&mut self, rows: &[NewComment]) -> QueryResult<Vec<Comment>> {
                $transaction(self, |conn| {
                    insert_chunks!(
                        conn,
                        rows,
                        comments::table,
                        Comment,
                        NEW_COMMENT_BINDS,
                        $max_binds,
                        |stmt| { diesel::RunQueryDsl::get_results(stmt, conn) }
                    )
                })
            }
        }
    };
}

/// SQLite loads: multi-row INSERTs without `RETURNING`, in one write transaction.
macro_rules! load_sqlite {
    ($conn:ident, $rows:ident, $table:path, $binds:expr) => {
        sqlite_write_transaction($conn, |conn| {
            load_chunks!($rows, $table, $binds, SQLITE_MAX_BINDS, |stmt| {
                diesel::RunQueryDsl::execute(stmt, conn)
            })
        })
    };
}

/// PostgreSQL loads: one `COPY … FROM STDIN (FORMAT BINARY)`, the fastest
/// way in (diesel's `copy_from`).
#[cfg(feature = "sync")]
macro_rules! load_postgres_copy {
    ($conn:ident, $rows:ident, $table:path, $binds:expr) => {
        diesel::ExecuteCopyFromDsl::execute(diesel::copy_from($table).from_insertable($rows), $conn)
    };
}

impl_bulk_insert_sync!(
    SqliteConnection,
    SQLITE_MAX_BINDS,
    sqlite_write_transaction,
    load_sqlite
);
#[cfg(feature = "sync")]
impl_bulk_insert_sync!(
    diesel::pg::PgConnection,
    POSTGRES_MAX_BINDS,
    postgres_write_transaction,
    load_postgres_copy
);

/// Bulk inserts in async mode: awaited chunks in one transaction on
/// PostgreSQL; on SQLite the sync bulk insert in one blocking hop
/// (diesel-async cannot batch-insert on SQLite at all).
#[cfg(feature = "async")]
macro_rules! impl_bulk_insert_async {
    ($( fn $name:ident($row:ty) -> $model:ty { $table:path, $binds:expr } )*) => {
        impl crate::asynchronous::AsyncConn<'_> {
            $(
                pub(crate) async fn $name(&mut self, rows: &[$row]) -> QueryResult<Vec<$model>> {
                    use diesel_async::AsyncConnection;
                    match self {
                        Self::Postgres(conn) => {
                            conn.transaction(async |conn| {
                                insert_chunks!(conn, rows, $table, $model, $binds, POSTGRES_MAX_BINDS, |stmt| {
                                    diesel_async::RunQueryDsl::get_results(stmt, conn).await
                                })
                            })
                            .await
                        }
                        Self::Sqlite(conn) => {
                            let rows = rows.to_vec();
                            let context = ScopeContext::capture();
                            conn.spawn_blocking(move |conn| context.enter(|| BulkInsert::$name(conn, &rows)))
                            .await
                        }
                    }
                }
            )*
        }
    };
}

#[cfg(feature = "async")]
impl_bulk_insert_async! {
    fn insert_users(NewUser) -> User { users::table, NEW_USER_BINDS }
    fn insert_posts(NewPost) -> Post { posts::table, NEW_POST_BINDS }
    fn insert_comments(NewComment) -> Comment { comments::table, NEW_COMMENT_BINDS }
}

/// Loads in async mode: on PostgreSQL multi-row INSERTs without
/// `RETURNING`, awaited in one transaction (diesel-async has no COPY); on
/// SQLite the sync load in one blocking hop.
#[cfg(feature = "async")]
macro_rules! impl_bulk_load_async {
    ($( fn $name:ident($row:ty) { $table:path, $binds:expr } )*) => {
        impl crate::asynchronous::AsyncConn<'_> {
            $(
                pub(crate) async fn $name(&mut self, rows: &[$row]) -> QueryResult<usize> {
                    use diesel_async::AsyncConnection;
                    match self {
                        Self::Postgres(conn) => {
                            conn.transaction(async |conn| {
                                load_chunks!(rows, $table, $binds, POSTGRES_MAX_BINDS, |stmt| {
                                    diesel_async::RunQueryDsl::execute(stmt, conn).await
                                })
                            })
                            .await
                        }
                        Self::Sqlite(conn) => {
                            let rows = rows.to_vec();
                            let context = ScopeContext::capture();
                            conn.spawn_blocking(move |conn| context.enter(|| BulkInsert::$name(conn, &rows)))
                                .await
                        }
                    }
                }
            )*
        }
    };
}

#[cfg(feature = "async")]
impl_bulk_load_async! {
    fn bulk_load_users(NewUser) { users::table, NEW_USER_BINDS }
    fn bulk_load_posts(NewPost) { posts::table, NEW_POST_BINDS }
    fn bulk_load_comments(NewComment) { comments::table, NEW_COMMENT_BINDS }
}
