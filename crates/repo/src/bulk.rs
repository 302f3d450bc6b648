//! Bulk inserts: one multi-row `INSERT … RETURNING` per chunk of rows that
//! fits the backend's bind-parameter limit, every chunk of one call in one
//! transaction (all or nothing).

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use keel_models::{Comment, NewComment, NewPost, NewUser, Post, User};
use keel_schema::{comments, posts, users};

#[cfg(feature = "async")]
use crate::QueryScope;
use crate::ops::{POSTGRES_MAX_BINDS, SQLITE_MAX_BINDS};

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
}

/// The chunk loop, for one table; `$run` turns one chunk's statement into
/// its rows (`.get_results(conn)`, awaited or not).
macro_rules! insert_chunks {
    ($conn:ident, $rows:ident, $table:path, $model:ty, $binds_per_row:expr, $max_binds:expr, |$stmt:ident| $run:expr) => {{
        let mut inserted: Vec<$model> = Vec::with_capacity($rows.len());
        for chunk in $rows.chunks($max_binds / $binds_per_row) {
            let $stmt = diesel::insert_into($table)
                .values(chunk)
                .returning(<$model>::as_returning());
            inserted.extend($run?);
        }
        Ok(inserted)
    }};
}

macro_rules! impl_bulk_insert_sync {
    ($conn:ty, $max_binds:expr, $transaction:ident) => {
        impl BulkInsert for $conn {
            fn insert_users(&mut self, rows: &[NewUser]) -> QueryResult<Vec<User>> {
                self.$transaction(|conn| {
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
                self.$transaction(|conn| {
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
                self.$transaction(|conn| {
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

// SQLite has one writer at a time: a write transaction takes the lock when it
// begins (BEGIN IMMEDIATE) and waits out the busy timeout there, instead of
// failing mid-way when its read lock cannot be upgraded.
impl_bulk_insert_sync!(SqliteConnection, SQLITE_MAX_BINDS, immediate_transaction);
#[cfg(feature = "sync")]
impl_bulk_insert_sync!(diesel::pg::PgConnection, POSTGRES_MAX_BINDS, transaction);

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
                            let scope = QueryScope::current();
                            conn.spawn_blocking(move |conn| {
                                let mut insert = || BulkInsert::$name(conn, &rows);
                                match scope {
                                    Some(scope) => scope.run(insert),
                                    None => insert(),
                                }
                            })
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
