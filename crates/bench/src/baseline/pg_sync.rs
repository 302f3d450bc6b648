//! The baseline on PostgreSQL for sync mode: the `postgres` crate, named
//! prepared statements (prepared on first use, kept for the connection's
//! life, as diesel's statement cache does), `= ANY($1)` id arrays for the
//! eager load, and `COPY … FROM STDIN (FORMAT BINARY)` for the load.

use std::collections::HashMap;
use std::time::Instant;

use keel_models::{Comment, Post, User};
use keel_workload::{GraphChecksum, JoinChecksum, LookupChecksum, Workload};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Row, Statement};

use super::{
    ACTIVE_USERS, COMMENT_INSERT_COLUMNS, COMMENTS_BY_POST, POST_INSERT_COLUMNS, POSTS_BY_AUTHOR,
    POSTS_BY_AUTHOR_EMAIL, USER_BY_EMAIL, USER_INSERT_COLUMNS, assemble_graph, copy_statement,
};
use crate::keel_sync::graph_limit;
use crate::steps::{Contender, LoadRows, Run, TableSeconds, graph_rows, walk_graph};

/// The column types of each table's COPY, in insert-column order.
pub const USER_COPY_TYPES: [Type; 5] = [
    Type::VARCHAR,
    Type::VARCHAR,
    Type::VARCHAR,
    Type::VARCHAR,
    Type::BOOL,
];
pub const POST_COPY_TYPES: [Type; 3] = [Type::VARCHAR, Type::TEXT, Type::INT4];
pub const COMMENT_COPY_TYPES: [Type; 3] = [Type::TEXT, Type::INT4, Type::INT4];

/// B2's posts level: every post of these authors.
pub const POSTS_OF_AUTHORS: &str = "SELECT id, title, content, author_id, created_at FROM posts WHERE author_id = ANY($1) ORDER BY id";
/// B2's comments level: every comment on these posts.
pub const COMMENTS_OF_POSTS: &str = "SELECT id, body, post_id, author_id, created_at, parent_id FROM comments WHERE post_id = ANY($1) ORDER BY id";

/// The hand-written PostgreSQL baseline on the sync `postgres` crate.
pub struct PgSyncBaseline {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl PgSyncBaseline {
    /// Connects to `url`.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::connect(url, NoTls)?,
            prepared: HashMap::new(),
        })
    }

    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

pub fn read_user(row: &Row) -> Result<User, postgres::Error> {
    Ok(User {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        full_name: row.try_get(2)?,
        first_name: row.try_get(3)?,
        last_name: row.try_get(4)?,
        is_active: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

pub fn read_post(row: &Row) -> Result<Post, postgres::Error> {
    Ok(Post {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        content: row.try_get(2)?,
        author_id: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

pub fn read_comment(row: &Row) -> Result<Comment, postgres::Error> {
    Ok(Comment {
        id: row.try_get(0)?,
        body: row.try_get(1)?,
        post_id: row.try_get(2)?,
        author_id: row.try_get(3)?,
        created_at: row.try_get(4)?,
        parent_id: row.try_get(5)?,
    })
}

fn read_all<T>(
    rows: &[Row],
    read: fn(&Row) -> Result<T, postgres::Error>,
) -> Result<Vec<T>, postgres::Error> {
    rows.iter().map(read).collect()
}

/// Copies `rows` into `table` in binary, one `write` per row.
fn copy_rows<T>(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    columns: &[&str],
    types: &[Type],
    rows: &[T],
    values: impl Fn(&T) -> Vec<&(dyn ToSql + Sync)>,
) -> Result<(), postgres::Error> {
    let sink = tx.copy_in(&copy_statement(table, columns))?;
    let mut writer = BinaryCopyInWriter::new(sink, types);
    for row in rows {
        writer.write(&values(row))?;
    }
    writer.finish()?;
    Ok(())
}

impl Contender for PgSyncBaseline {
    /// Three `COPY … (FORMAT BINARY)` in one transaction.
    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>> {
        let start = Instant::now();
        let mut tx = self.client.transaction()?;
        copy_rows(
            &mut tx,
            "users",
            &USER_INSERT_COLUMNS,
            &USER_COPY_TYPES,
            &rows.users,
            |u| {
                vec![
                    &u.email,
                    &u.full_name,
                    &u.first_name,
                    &u.last_name,
                    &u.is_active,
                ]
            },
        )?;
        let users_done = start.elapsed();
        copy_rows(
            &mut tx,
            "posts",
            &POST_INSERT_COLUMNS,
            &POST_COPY_TYPES,
            &rows.posts,
            |p| vec![&p.title, &p.content, &p.author_id],
        )?;
        let posts_done = start.elapsed();
        copy_rows(
            &mut tx,
            "comments",
            &COMMENT_INSERT_COLUMNS,
            &COMMENT_COPY_TYPES,
            &rows.comments,
            |c| vec![&c.body, &c.post_id, &c.author_id],
        )?;
        tx.commit()?;
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: 3,
            rows: rows.len(),
            checksum: (),
            tables: Some(TableSeconds {
                users: users_done.as_secs_f64(),
                posts: (posts_done - users_done).as_secs_f64(),
                comments: (elapsed - posts_done).as_secs_f64(),
            }),
        })
    }

    /// Three statements, each level's parent ids bound as one array.
    fn eager_load(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        let start = Instant::now();
        let users_select = self.statement(ACTIVE_USERS)?;
        let posts_select = self.statement(POSTS_OF_AUTHORS)?;
        let comments_select = self.statement(COMMENTS_OF_POSTS)?;
        let users = read_all(
            &self.client.query(&users_select, &[&true, &graph_limit()])?,
            read_user,
        )?;
        let user_ids: Vec<i32> = users.iter().map(|u| u.id).collect();
        let posts = read_all(&self.client.query(&posts_select, &[&user_ids])?, read_post)?;
        let post_ids: Vec<i32> = posts.iter().map(|p| p.id).collect();
        let comments = read_all(
            &self.client.query(&comments_select, &[&post_ids])?,
            read_comment,
        )?;
        let graph = assemble_graph(users, posts, comments);
        let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
        let elapsed = start.elapsed();
        Ok(Run {
            elapsed,
            statements: 3,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn n_plus_one(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        let start = Instant::now();
        let users_select = self.statement(ACTIVE_USERS)?;
        let posts_select = self.statement(POSTS_BY_AUTHOR)?;
        let comments_select = self.statement(COMMENTS_BY_POST)?;
        let users = read_all(
            &self.client.query(&users_select, &[&true, &graph_limit()])?,
            read_user,
        )?;
        let mut statements = 1;
        let mut graph = Vec::with_capacity(users.len());
        for user in users {
            let posts = read_all(&self.client.query(&posts_select, &[&user.id])?, read_post)?;
            statements += 1;
            let mut user_posts = Vec::with_capacity(posts.len());
            for post in posts {
                let comments = read_all(
                    &self.client.query(&comments_select, &[&post.id])?,
                    read_comment,
                )?;
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
        let select = self.statement(USER_BY_EMAIL)?;
        let mut checksum = LookupChecksum::default();
        for &id in ids {
            let found = self
                .client
                .query_opt(&select, &[&Workload::email(id)])?
                .map(|row| read_user(&row))
                .transpose()?;
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
        let select = self.statement(POSTS_BY_AUTHOR_EMAIL)?;
        let mut checksum = JoinChecksum::default();
        for &id in ids {
            let posts = read_all(
                &self.client.query(&select, &[&Workload::email(id)])?,
                read_post,
            )?;
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
