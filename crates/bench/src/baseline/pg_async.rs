//! The baseline on PostgreSQL for async mode: tokio-postgres with the same
//! statements as the sync baseline, and for B6 a hand-written pool of 16
//! connections (a semaphore over a stack of clients).

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use keel_workload::{GraphChecksum, JoinChecksum, LookupChecksum, Workload};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use super::pg_sync::{
    COMMENT_COPY_TYPES, COMMENTS_OF_POSTS, POST_COPY_TYPES, POSTS_OF_AUTHORS, USER_COPY_TYPES,
    read_comment, read_post, read_user,
};
use super::{
    ACTIVE_USERS, COMMENT_INSERT_COLUMNS, COMMENTS_BY_POST, POST_INSERT_COLUMNS, POSTS_BY_AUTHOR,
    POSTS_BY_AUTHOR_EMAIL, USER_BY_EMAIL, USER_BY_ID, USER_INSERT_COLUMNS, assemble_graph,
    copy_statement,
};
use crate::keel_sync::graph_limit;
use crate::steps::{
    B6_TASKS, Contender, LoadRows, POOL_SIZE, Run, TableSeconds, graph_rows, task_share, walk_graph,
};

/// The hand-written PostgreSQL baseline on tokio-postgres.
pub struct PgAsyncBaseline {
    runtime: Handle,
    client: Client,
    prepared: HashMap<&'static str, Statement>,
    pool: Arc<Pool>,
}

/// B6's pool: at most 16 lookups at once, each on a client of its own.
struct Pool {
    permits: Semaphore,
    idle: Mutex<Vec<PooledClient>>,
}

/// A pooled connection and its lookup statement, prepared on first use.
struct PooledClient {
    client: Client,
    user_by_id: Option<Statement>,
}

/// Connects to `url` and drives the connection on `runtime`.
async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("keel-bench: a baseline connection failed: {error}");
        }
    });
    Ok(client)
}

impl PgAsyncBaseline {
    /// One connection for the sequential steps, and B6's 16, all open now.
    pub fn connect(runtime: Handle, url: &str) -> anyhow::Result<Self> {
        let (client, pooled) = runtime.block_on(async {
            let client = connect(url).await?;
            let mut pooled = Vec::new();
            for _ in 0..POOL_SIZE {
                pooled.push(PooledClient {
                    client: connect(url).await?,
                    user_by_id: None,
                });
            }
            Ok::<_, anyhow::Error>((client, pooled))
        })?;
        let pool = Pool {
            permits: Semaphore::new(pooled.len()),
            idle: Mutex::new(pooled),
        };
        Ok(Self {
            runtime,
            client,
            prepared: HashMap::new(),
            pool: Arc::new(pool),
        })
    }
}

/// The prepared statement for `sql` on `client`, preparing it on first use.
async fn statement(
    client: &Client,
    prepared: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(statement) = prepared.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql).await?;
    prepared.insert(sql, statement.clone());
    Ok(statement)
}

fn read_all<T>(
    rows: &[tokio_postgres::Row],
    read: fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    rows.iter().map(read).collect()
}

/// Copies `rows` into `table` in binary, one `write` per row.
async fn copy_rows<T>(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &[&str],
    types: &[Type],
    rows: &[T],
    values: impl Fn(&T) -> Vec<&(dyn ToSql + Sync)>,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(&copy_statement(table, columns)).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&values(row)).await?;
    }
    writer.finish().await?;
    Ok(())
}

impl Pool {
    /// One lookup on a pooled client: wait for a permit, take a client,
    /// run the query, give the client back.
    async fn user_id(&self, id: i32) -> anyhow::Result<Option<i32>> {
        let _permit = self.permits.acquire().await?;
        let mut pooled = self
            .idle
            .lock()
            .map_err(|_| anyhow::anyhow!("the baseline pool's lock is poisoned"))?
            .pop()
            .context("a permit was granted but no client was idle")?;
        let result = async {
            let select = match &pooled.user_by_id {
                Some(select) => select.clone(),
                None => {
                    let select = pooled.client.prepare(USER_BY_ID).await?;
                    pooled.user_by_id = Some(select.clone());
                    select
                }
            };
            let row = pooled.client.query_opt(&select, &[&id]).await?;
            row.map(|row| read_user(&row).map(|u| u.id)).transpose()
        }
        .await;
        self.idle
            .lock()
            .map_err(|_| anyhow::anyhow!("the baseline pool's lock is poisoned"))?
            .push(pooled);
        Ok(result?)
    }
}

impl Contender for PgAsyncBaseline {
    /// Three `COPY … (FORMAT BINARY)` in one transaction.
    fn load(&mut self, rows: &LoadRows) -> anyhow::Result<Run<()>> {
        let client = &mut self.client;
        let (elapsed, users_done, posts_done) = self.runtime.block_on(async {
            let start = Instant::now();
            let tx = client.transaction().await?;
            copy_rows(
                &tx,
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
            )
            .await?;
            let users_done = start.elapsed();
            copy_rows(
                &tx,
                "posts",
                &POST_INSERT_COLUMNS,
                &POST_COPY_TYPES,
                &rows.posts,
                |p| vec![&p.title, &p.content, &p.author_id],
            )
            .await?;
            let posts_done = start.elapsed();
            copy_rows(
                &tx,
                "comments",
                &COMMENT_INSERT_COLUMNS,
                &COMMENT_COPY_TYPES,
                &rows.comments,
                |c| vec![&c.body, &c.post_id, &c.author_id],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>((start.elapsed(), users_done, posts_done))
        })?;
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

    fn eager_load(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        let (client, prepared) = (&self.client, &mut self.prepared);
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let users_select = statement(client, prepared, ACTIVE_USERS).await?;
            let posts_select = statement(client, prepared, POSTS_OF_AUTHORS).await?;
            let comments_select = statement(client, prepared, COMMENTS_OF_POSTS).await?;
            let users = read_all(
                &client
                    .query(&users_select, &[&true, &graph_limit()])
                    .await?,
                read_user,
            )?;
            let user_ids: Vec<i32> = users.iter().map(|u| u.id).collect();
            let posts = read_all(&client.query(&posts_select, &[&user_ids]).await?, read_post)?;
            let post_ids: Vec<i32> = posts.iter().map(|p| p.id).collect();
            let comments = read_all(
                &client.query(&comments_select, &[&post_ids]).await?,
                read_comment,
            )?;
            let graph = assemble_graph(users, posts, comments);
            let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
            Ok::<_, tokio_postgres::Error>((start.elapsed(), checksum))
        })?;
        Ok(Run {
            elapsed,
            statements: 3,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn n_plus_one(&mut self) -> anyhow::Result<Run<GraphChecksum>> {
        let (client, prepared) = (&self.client, &mut self.prepared);
        let (elapsed, statements, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let users_select = statement(client, prepared, ACTIVE_USERS).await?;
            let posts_select = statement(client, prepared, POSTS_BY_AUTHOR).await?;
            let comments_select = statement(client, prepared, COMMENTS_BY_POST).await?;
            let users = read_all(
                &client
                    .query(&users_select, &[&true, &graph_limit()])
                    .await?,
                read_user,
            )?;
            let mut statements = 1;
            let mut graph = Vec::with_capacity(users.len());
            for user in users {
                let posts = read_all(&client.query(&posts_select, &[&user.id]).await?, read_post)?;
                statements += 1;
                let mut user_posts = Vec::with_capacity(posts.len());
                for post in posts {
                    let comments = read_all(
                        &client.query(&comments_select, &[&post.id]).await?,
                        read_comment,
                    )?;
                    statements += 1;
                    user_posts.push((post, comments));
                }
                graph.push((user, user_posts));
            }
            let checksum = walk_graph(&graph, |u| &u.1, |p| &p.1, |c| c.body.as_str());
            Ok::<_, tokio_postgres::Error>((start.elapsed(), statements, checksum))
        })?;
        Ok(Run {
            elapsed,
            statements,
            rows: graph_rows(&checksum),
            checksum,
            tables: None,
        })
    }

    fn point_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Run<LookupChecksum>> {
        let (client, prepared) = (&self.client, &mut self.prepared);
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let select = statement(client, prepared, USER_BY_EMAIL).await?;
            let mut checksum = LookupChecksum::default();
            for &id in ids {
                let found = client
                    .query_opt(&select, &[&Workload::email(id)])
                    .await?
                    .map(|row| read_user(&row))
                    .transpose()?;
                checksum.add(found.map(|u| u.id));
            }
            Ok::<_, tokio_postgres::Error>((start.elapsed(), checksum))
        })?;
        Ok(Run {
            elapsed,
            statements: checksum.lookups,
            rows: checksum.found,
            checksum,
            tables: None,
        })
    }

    fn join_filter(&mut self, ids: &[i32]) -> anyhow::Result<Run<JoinChecksum>> {
        let (client, prepared) = (&self.client, &mut self.prepared);
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let select = statement(client, prepared, POSTS_BY_AUTHOR_EMAIL).await?;
            let mut checksum = JoinChecksum::default();
            for &id in ids {
                let posts = read_all(
                    &client.query(&select, &[&Workload::email(id)]).await?,
                    read_post,
                )?;
                checksum.add_query(posts.iter().map(|p| p.id));
            }
            Ok::<_, tokio_postgres::Error>((start.elapsed(), checksum))
        })?;
        Ok(Run {
            elapsed,
            statements: checksum.queries,
            rows: checksum.rows,
            checksum,
            tables: None,
        })
    }

    /// 64 tasks on the hand-written pool of 16; one checkout per lookup.
    fn concurrent_lookups(&mut self, ids: &[i32]) -> anyhow::Result<Option<Run<LookupChecksum>>> {
        let shares: Vec<Vec<i32>> = (0..B6_TASKS).map(|t| task_share(ids, t)).collect();
        let pool = &self.pool;
        let (elapsed, checksum) = self.runtime.block_on(async {
            let start = Instant::now();
            let mut tasks = JoinSet::new();
            for share in shares {
                let pool = Arc::clone(pool);
                tasks.spawn(async move {
                    let mut checksum = LookupChecksum::default();
                    for id in share {
                        checksum.add(pool.user_id(id).await?);
                    }
                    Ok::<_, anyhow::Error>(checksum)
                });
            }
            let mut checksum = LookupChecksum::default();
            while let Some(done) = tasks.join_next().await {
                checksum.merge(done??);
            }
            Ok::<_, anyhow::Error>((start.elapsed(), checksum))
        })?;
        Ok(Some(Run {
            elapsed,
            statements: checksum.lookups,
            rows: checksum.found,
            checksum,
            tables: None,
        }))
    }
}
