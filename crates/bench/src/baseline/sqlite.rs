//! The baseline on SQLite: rusqlite on the same bundled SQLite keel links,
//! cached prepared statements, and one multi-row `INSERT` per chunk that
//! fits SQLite's bind limit for the load.

use std::time::Instant;

use keel_models::{Comment, Post, User};
use keel_workload::{GraphChecksum, JoinChecksum, LookupChecksum, Workload};
use rusqlite::{Connection, OptionalExtension, Row, Statement, TransactionBehavior, params};

use super::{
    ACTIVE_USERS, COMMENT_COLUMNS, COMMENT_INSERT_COLUMNS, COMMENTS_BY_POST, POST_COLUMNS,
    POST_INSERT_COLUMNS, POSTS_BY_AUTHOR, POSTS_BY_AUTHOR_EMAIL, USER_BY_EMAIL,
    USER_INSERT_COLUMNS, assemble_graph,
};
use crate::keel_sync::graph_limit;
use crate::steps::{Contender, LoadRows, Run, TableSeconds, graph_rows, walk_graph};

/// Bind parameters one statement of the bundled SQLite may carry.
pub const SQLITE_MAX_BINDS: usize = 32_766;

/// What every connection runs first: the same settings keel's pool gives
/// its SQLite connections, so both sides run on the same terms.
pub const CONNECTION_SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON;";

/// The hand-written SQLite baseline: one connection.
pub struct SqliteBaseline {
    path: String,
    conn: Connection,
}

impl SqliteBaseline {
    /// Opens `path` with [`CONNECTION_SETUP`].
    pub fn connect(path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            conn: open(path)?,
        })
    }
}

/// A connection to `path` with [`CONNECTION_SETUP`] run.
pub fn open(path: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(CONNECTION_SETUP)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) fn read_user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        full_name: row.get(2)?,
        first_name: row.get(3)?,
        last_name: row.get(4)?,
        is_active: row.get(5)?,
        created_at: row.get(6)?,
    })
}

pub(crate) fn read_post(row: &Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        id: row.get(0)?,
        title: row.get(1)?,
        content: row.get(2)?,
        author_id: row.get(3)?,
        created_at: row.get(4)?,
    })
}

pub(crate) fn read_comment(row: &Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: row.get(0)?,
        body: row.get(1)?,
        post_id: row.get(2)?,
        author_id: row.get(3)?,
        created_at: row.get(4)?,
        parent_id: row.get(5)?,
    })
}

/// `INSERT INTO table (columns) VALUES (?, …), …` for `rows` rows.
fn multi_row_insert(table: &str, columns: &[&str], rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    sql.reserve(rows * (row.len() + 2));
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// Inserts `rows` in chunks of as many rows as fit the bind limit, one
/// prepared multi-row `INSERT` per chunk. `bind` binds one row's values
/// from parameter index `first` on. Returns the statements sent.
fn insert_rows<T>(
    conn: &Connection,
    table: &str,
    columns: &[&str],
    rows: &[T],
    bind: impl Fn(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<u64> {
    let mut statements = 0;
    for chunk in rows.chunks(SQLITE_MAX_BINDS / columns.len()) {
        let mut insert = conn.prepare_cached(&multi_row_insert(table, columns, chunk.len()))?;
        for (i, row) in chunk.iter().enumerate() {
            bind(&mut insert, i * columns.len() + 1, row)?;
        }
        insert.raw_execute()?;
        statements += 1;
    }
    Ok(statements)
}

/// `SELECT columns FROM table WHERE key IN (…) ORDER BY id` over `ids`,
/// one statement per chunk that fits the bind limit. Returns the rows and
/// the statements sent.
fn rows_where_in<T>(
    conn: &Connection,
    columns: &str,
    table: &str,
    key: &str,
    ids: &[i32],
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<(Vec<T>, u64)> {
    let mut rows = Vec::new();
    let mut statements = 0;
    for chunk in ids.chunks(SQLITE_MAX_BINDS) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let mut select = conn.prepare_cached(&format!(
            "SELECT {columns} FROM {table} WHERE {key} IN ({placeholders}) ORDER BY id"
        ))?;
        let found = select.query_map(rusqlite::params_from_iter(chunk), read)?;
        for row in found {
            rows.push(row?);
        }
        statements += 1;
    }
    Ok((rows, statements))
}

impl Contender for SqliteBaseline {
    fn reopen(&mut self) -> anyhow::Result<()> {
        self.conn = open(&self.path)?;
        Ok(())
    }

    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>> {
        let start = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut statements = insert_rows(
            &tx,
            "users",
            &USER_INSERT_COLUMNS,
            &rows.users,
            |s, at, u| {
                s.raw_bind_parameter(at, &u.email)?;
                s.raw_bind_parameter(at + 1, &u.full_name)?;
                s.raw_bind_parameter(at + 2, &u.first_name)?;
                s.raw_bind_parameter(at + 3, &u.last_name)?;
                s.raw_bind_parameter(at + 4, u.is_active)
            },
        )?;
        let users_done = start.elapsed();
        statements += insert_rows(
            &tx,
            "posts",
            &POST_INSERT_COLUMNS,
            &rows.posts,
            |s, at, p| {
                s.raw_bind_parameter(at, &p.title)?;
                s.raw_bind_parameter(at + 1, &p.content)?;
                s.raw_bind_parameter(at + 2, p.author_id)
            },
        )?;
        let posts_done = start.elapsed();
        statements += insert_rows(
            &tx,
            "comments",
            &COMMENT_INSERT_COLUMNS,
            &rows.comments,
            |s, at, c| {
                s.raw_bind_parameter(at, &c.body)?;
                s.raw_bind_parameter(at + 1, c.post_id)?;
                s.raw_bind_parameter(at + 2, c.author_id)
            },
        )?;
        tx.commit()?;
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements,
            rows: rows.len(),
            checksum: (),
            tables: Some(TableSeconds {
                users: users_done.as_secs_f64(),
                posts: (posts_done - users_done).as_secs_f64(),
                comments: (elapsed - posts_done).as_secs_f64(),
            }),
        })
    }

    /// Three statements: the users, their posts by `IN` list, those posts'
    /// comments by `IN` list; then grouped in memory.
    fn eager_load(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        let start = Instant::now();
        let mut statements = 0;
        let users = {
            let mut select = self.conn.prepare_cached(ACTIVE_USERS)?;
            let found = select.query_map(params![true, graph_limit()], read_user)?;
            statements += 1;
            found.collect::<rusqlite::Result<Vec<User>>>()?
        };
        let user_ids: Vec<i32> = users.iter().map(|u| u.id).collect();
        let (posts, sent) = rows_where_in(
            &self.conn,
            POST_COLUMNS,
            "posts",
            "author_id",
            &user_ids,
            read_post,
        )?;
        statements += sent;
        let post_ids: Vec<i32> = posts.iter().map(|p| p.id).collect();
        let (comments, sent) = if post_ids.is_empty() {
            (Vec::new(), 0)
        } else {
            rows_where_in(
                &self.conn,
                COMMENT_COLUMNS,
                "comments",
                "post_id",
                &post_ids,
                read_comment,
            )?
        };
        statements += sent;
        let graph = assemble_graph(users, posts, comments);
        let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn n_plus_one(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        let start = Instant::now();
        let mut statements = 0;
        let mut users_select = self.conn.prepare_cached(ACTIVE_USERS)?;
        let mut posts_select = self.conn.prepare_cached(POSTS_BY_AUTHOR)?;
        let mut comments_select = self.conn.prepare_cached(COMMENTS_BY_POST)?;
        let users = users_select
            .query_map(params![true, graph_limit()], read_user)?
            .collect::<rusqlite::Result<Vec<User>>>()?;
        statements += 1;
        let mut graph = Vec::with_capacity(users.len());
        for user in users {
            let posts = posts_select
                .query_map([user.id], read_post)?
                .collect::<rusqlite::Result<Vec<Post>>>()?;
            statements += 1;
            let mut user_posts = Vec::with_capacity(posts.len());
            for post in posts {
                let comments = comments_select
                    .query_map([post.id], read_comment)?
                    .collect::<rusqlite::Result<Vec<Comment>>>()?;
                statements += 1;
                user_posts.push((post, comments));
            }
            graph.push((user, user_posts));
        }
        let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn point_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Run<LookupChecksum>> {
        let start = Instant::now();
        let mut select = self.conn.prepare_cached(USER_BY_EMAIL)?;
        let mut checksum = LookupChecksum::default();
        for &id in ids {
            let found = select
                .query_row([Workload::email(id)], read_user)
                .optional()?;
            checksum.add(found.map(|u| u.id));
        }
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: checksum.lookups,
            rows: checksum.found,
            checksum,
            tables: None,
        })
    }

    fn join_filter(&mut self, ids: &[i32]) -> anyhow::Result<Run<JoinChecksum>> {
        let start = Instant::now();
        let mut select = self.conn.prepare_cached(POSTS_BY_AUTHOR_EMAIL)?;
        let mut checksum = JoinChecksum::default();
        for &id in ids {
            let posts = select
                .query_map([Workload::email(id)], read_post)?
                .collect::<rusqlite::Result<Vec<Post>>>()?;
            checksum.add_query(posts.iter().map(|p| p.id));
        }
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: checksum.queries,
            rows: checksum.rows,
            checksum,
            tables: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_have_one_placeholder_per_value() {
        assert_eq!(
            multi_row_insert("posts", &POST_INSERT_COLUMNS, 2),
            "INSERT INTO posts (title, content, author_id) VALUES (?, ?, ?), (?, ?, ?)"
        );
        let users = multi_row_insert("users", &USER_INSERT_COLUMNS, SQLITE_MAX_BINDS / 5);
        assert_eq!(users.matches('?').count(), 6_553 * 5);
    }
}
