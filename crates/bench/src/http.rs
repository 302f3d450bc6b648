//! Steps H1 and H2: `keel serve` answering HTTP, beside a hand-written axum
//! router on the plain drivers, under the same load.
//!
//! - H1: `GET /users/{id}`, ids from the workload's lookup sequence.
//! - H2: `GET /users/{id}?include=posts.comments`.
//!
//! keel's side is the router `keel serve` runs (`keel::serve::api`, every
//! middleware on: statement scope, `X-Query-Count`, metrics, a log line per
//! request written to a sink) on keel's accept loop. The hand-written side
//! is axum with prepared statements on tokio-postgres (a deadpool of the
//! same size as keel's pool) or on rusqlite (a pool of connections used on
//! blocking threads), serializing the same keel-models types, so both
//! answer the same bytes; a sample of ids is checked before timing.
//!
//! The load: a fixed number of HTTP/1.1 keep-alive connections on loopback
//! (hyper's client, one connection per task), each sending its share of the
//! requests one after another. Each side gets a warm-up; then the timed
//! requests are split into rounds, the sides taking turns, so that the
//! machine's drift weighs on both alike.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use keel_models::{Comment, Post, User};
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::{DatabaseConfig, DatabaseUrl, PostWithComments, UserWithPostsAndComments};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing_subscriber::Layer as _;

use crate::baseline::{POSTS_BY_AUTHOR, USER_BY_ID};
use crate::cli::HttpSideChoice;

/// Which HTTP step (`--http-steps` names them `h1`, `h2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum HttpStep {
    /// `GET /users/{id}`.
    H1,
    /// `GET /users/{id}?include=posts.comments`.
    H2,
}

impl HttpStep {
    fn path(self, id: i32) -> String {
        match self {
            Self::H1 => format!("/users/{id}"),
            Self::H2 => format!("/users/{id}?include=posts.comments"),
        }
    }

    /// What the step asks, for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::H1 => "H1 GET /users/{id}",
            Self::H2 => "H2 GET /users/{id}?include=posts.comments",
        }
    }
}

/// How one side did, over all its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSide {
    /// Requests answered (all 200).
    pub requests: usize,
    /// Wall time of the timed rounds, summed.
    pub seconds: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// This process's CPU time (user and system, every thread: the load
    /// generator's and the server's) per request, microseconds. Less noisy
    /// than requests per second: the two sides share the load generator, so
    /// the difference is the difference between the servers.
    pub cpu_us_per_request: f64,
}

/// One HTTP step on one backend: both sides, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct HttpResult {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// H1 or H2.
    pub step: HttpStep,
    /// Concurrent connections of the load.
    pub connections: usize,
    /// Rounds each side's requests were split into, the sides taking turns.
    pub rounds: usize,
    /// keel serve's router.
    pub keel: HttpSide,
    /// The hand-written axum router.
    pub baseline: HttpSide,
    /// keel's requests per second over the hand-written router's (higher
    /// is better; 1.00 is parity).
    pub ratio: f64,
    /// Ids whose response bodies were compared, byte for byte, before timing.
    pub bodies_compared: usize,
}

/// The load's shape.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    /// Timed requests per side and step.
    pub requests: usize,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Rounds the requests are split into, the sides taking turns.
    pub rounds: usize,
    /// The steps that run.
    pub steps: Vec<HttpStep>,
    /// One side driven alone, for a profiler (`--http-profile`).
    pub profile: Option<HttpSideChoice>,
}

/// Whether keel's log lines are written (to a sink) now: only while the
/// HTTP steps run, so that `keel serve`'s per-request log line costs what
/// it costs in production, and the B steps stay as they were.
static LOGGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs the process's log subscriber: info and above, formatted as
/// `keel serve` formats them, written nowhere, while [`LOGGING`] is on;
/// without keel's access log unless `access_log`, filtered off by target as
/// `keel serve`'s `RUST_LOG` directive would.
pub fn install_log_sink(access_log: bool) {
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // The level hint also tells `log` (tokio-postgres logs through it) to
    // drop debug and trace records at the call site, as keel serve's own
    // `info` filter does.
    let filter = filter_fn(|meta| {
        LOGGING.load(std::sync::atomic::Ordering::Relaxed) && LevelFilter::INFO >= *meta.level()
    })
    .with_max_level_hint(LevelFilter::INFO);
    // Decided once per call site, as an `EnvFilter` directive is.
    let mut targets = Targets::new().with_default(LevelFilter::TRACE);
    if !access_log {
        targets = targets.with_target(keel::serve::ACCESS_LOG_TARGET, LevelFilter::OFF);
    }
    let layer = keel::logging::layer(std::io::sink, false).with_filter(filter.and(targets));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Runs H1 and H2 against the loaded database at `url`.
pub async fn run(
    url: &DatabaseUrl,
    lookup_ids: &[i32],
    load: HttpLoad,
) -> anyhow::Result<Vec<HttpResult>> {
    let backend = match url {
        DatabaseUrl::Postgres(_) => "postgres",
        DatabaseUrl::Sqlite(_) => "sqlite",
    };
    let config = DatabaseConfig::new(url.clone());
    let pool_size = config.pool_size as usize;
    let keel_db = Arc::new(AsyncDatabase::connect(&config).await?);
    let keel_router = keel::serve::api(keel_db, &keel::serve::ApiOptions::default())?;
    let baseline_router = match url {
        DatabaseUrl::Postgres(pg) => postgres_router(pg.as_connection_str(), pool_size).await?,
        DatabaseUrl::Sqlite(path) => sqlite_router(path, pool_size)?,
    };
    let keel_server = Server::start(keel_router, true).await?;
    let baseline_server = Server::start(baseline_router, false).await?;
    LOGGING.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = steps(&keel_server, &baseline_server, backend, lookup_ids, load).await;
    LOGGING.store(false, std::sync::atomic::Ordering::Relaxed);
    keel_server.stop().await;
    baseline_server.stop().await;
    results
}

async fn steps(
    keel_server: &Server,
    baseline_server: &Server,
    backend: &'static str,
    lookup_ids: &[i32],
    load: HttpLoad,
) -> anyhow::Result<Vec<HttpResult>> {
    let mut results = Vec::new();
    for &step in &load.steps {
        let paths: Vec<String> = lookup_ids
            .iter()
            .cycle()
            .take(load.requests)
            .map(|id| step.path(*id))
            .collect();
        let warm_up = &paths[..paths.len().min(load.requests / 5).max(1)];
        if let Some(side) = load.profile {
            let address = match side {
                HttpSideChoice::Keel => keel_server.address,
                HttpSideChoice::HandWritten => baseline_server.address,
            };
            // No CPU clock: it reads the vDSO, which valgrind does not map.
            drive(address, warm_up, load.connections, false).await?;
            let round = drive(address, &paths, load.connections, false).await?;
            eprintln!(
                "  {backend} {} {side:?} alone: {} requests (and {} to warm up), {:.0} req/s",
                step.label(),
                round.latencies.len(),
                warm_up.len(),
                round.latencies.len() as f64 / round.seconds.max(f64::EPSILON)
            );
            continue;
        }
        let bodies_compared = compare_bodies(
            keel_server.address,
            baseline_server.address,
            &paths[..paths.len().min(20)],
        )
        .await?;
        drive(keel_server.address, warm_up, load.connections, true).await?;
        drive(baseline_server.address, warm_up, load.connections, true).await?;
        let rounds = load.rounds.clamp(1, paths.len().max(1));
        let per_round = paths.len().div_ceil(rounds);
        let mut keel = Vec::new();
        let mut baseline = Vec::new();
        for (round, chunk) in paths.chunks(per_round).enumerate() {
            // Turns: keel first in even rounds, the hand-written router in
            // odd ones, so neither side always runs on the warmer machine.
            let keel_first = round % 2 == 0;
            for keel_side in [keel_first, !keel_first] {
                if keel_side {
                    keel.push(drive(keel_server.address, chunk, load.connections, true).await?);
                } else {
                    baseline
                        .push(drive(baseline_server.address, chunk, load.connections, true).await?);
                }
            }
        }
        let keel = HttpSide::from_rounds(keel);
        let baseline = HttpSide::from_rounds(baseline);
        results.push(HttpResult {
            backend,
            step,
            connections: load.connections,
            rounds,
            ratio: keel.requests_per_second / baseline.requests_per_second,
            keel,
            baseline,
            bodies_compared,
        });
    }
    Ok(results)
}

/// A router served on an ephemeral loopback port until [`Server::stop`].
struct Server {
    address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// `keel_loop`: keel's own accept loop (keel serve's), else axum's.
    async fn start(router: Router, keel_loop: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = if keel_loop {
            tokio::spawn(keel::serve::serve_router(listener, router, shutdown))
        } else {
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await;
            })
        };
        Ok(Self {
            address,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// One GET on a connection of its own: status and body.
async fn fetch(address: SocketAddr, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut sender = connect(address).await?;
    request(&mut sender, address, path).await
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(address: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn request(
    sender: &mut Sender,
    address: SocketAddr,
    path: &str,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Both sides answer `paths` with 200 and the same bytes.
async fn compare_bodies(
    keel: SocketAddr,
    baseline: SocketAddr,
    paths: &[String],
) -> anyhow::Result<usize> {
    for path in paths {
        let (keel_status, keel_body) = fetch(keel, path).await?;
        let (baseline_status, baseline_body) = fetch(baseline, path).await?;
        anyhow::ensure!(
            keel_status == StatusCode::OK && baseline_status == StatusCode::OK,
            "{path}: keel answered {keel_status}, the hand-written router {baseline_status}"
        );
        anyhow::ensure!(
            keel_body == baseline_body,
            "{path}: the bodies differ:\nkeel:         {}\nhand-written: {}",
            String::from_utf8_lossy(&keel_body),
            String::from_utf8_lossy(&baseline_body)
        );
    }
    Ok(paths.len())
}

/// One round of one side: every request's latency, the wall time and the
/// process's CPU time.
struct Round {
    latencies: Vec<Duration>,
    seconds: f64,
    cpu_seconds: f64,
}

impl HttpSide {
    /// One side's rounds, together: requests over their summed wall time,
    /// percentiles over every request.
    fn from_rounds(rounds: Vec<Round>) -> Self {
        let seconds: f64 = rounds.iter().map(|r| r.seconds).sum();
        let cpu_seconds: f64 = rounds.iter().map(|r| r.cpu_seconds).sum();
        let mut latencies: Vec<Duration> = rounds.into_iter().flat_map(|r| r.latencies).collect();
        latencies.sort_unstable();
        let percentile = |p: f64| {
            let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies
                .get(index)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Self {
            requests: latencies.len(),
            seconds,
            requests_per_second: latencies.len() as f64 / seconds.max(f64::EPSILON),
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
            cpu_us_per_request: cpu_seconds * 1e6 / (latencies.len().max(1) as f64),
        }
    }
}

/// Sends every path once over `connections` keep-alive connections; with
/// `cpu_clock`, reads the process's CPU time around it.
async fn drive(
    address: SocketAddr,
    paths: &[String],
    connections: usize,
    cpu_clock: bool,
) -> anyhow::Result<Round> {
    let cpu_time = || {
        if cpu_clock {
            process_cpu_time()
        } else {
            Duration::ZERO
        }
    };
    let paths: Arc<Vec<String>> = Arc::new(paths.to_vec());
    let connections = connections.clamp(1, paths.len().max(1));
    let started = Instant::now();
    let cpu_started = cpu_time();
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..connections {
        let paths = paths.clone();
        tasks.spawn(async move {
            let mut sender = connect(address).await?;
            let mut latencies = Vec::with_capacity(paths.len() / connections + 1);
            for path in paths.iter().skip(first).step_by(connections) {
                let sent = Instant::now();
                let (status, _) = request(&mut sender, address, path).await?;
                anyhow::ensure!(status == StatusCode::OK, "{path}: {status}");
                latencies.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(paths.len());
    while let Some(task) = tasks.join_next().await {
        latencies.extend(task.context("a load task panicked")??);
    }
    Ok(Round {
        latencies,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_time().saturating_sub(cpu_started).as_secs_f64(),
    })
}

/// CPU time this process has used so far, all threads.
fn process_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

// ---- the hand-written routers -----------------------------------------------

#[derive(Deserialize)]
struct Include {
    include: Option<String>,
}

impl Include {
    fn posts_and_comments(&self) -> bool {
        self.include.as_deref() == Some("posts.comments")
    }
}

fn json_response(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn failed(error: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

/// Posts with their comments, in the posts' order (comments arrive in id order).
fn assemble(user: User, posts: Vec<Post>, comments: Vec<Comment>) -> UserWithPostsAndComments {
    let mut by_post: std::collections::HashMap<i32, Vec<Comment>> =
        std::collections::HashMap::new();
    for comment in comments {
        by_post.entry(comment.post_id).or_default().push(comment);
    }
    let posts = posts
        .into_iter()
        .map(|post| {
            let comments = by_post.remove(&post.id).unwrap_or_default();
            PostWithComments { post, comments }
        })
        .collect();
    UserWithPostsAndComments { user, posts }
}

/// The comments of many posts at once (PostgreSQL: an id array).
const COMMENTS_OF_POSTS_PG: &str = crate::baseline::pg_sync::COMMENTS_OF_POSTS;

/// axum + deadpool-postgres + tokio-postgres, prepared statements.
async fn postgres_router(url: &str, pool_size: usize) -> anyhow::Result<Router> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(pool_size)
        .build()?;
    async fn user(
        State(pool): State<deadpool_postgres::Pool>,
        Path(id): Path<i32>,
        Query(include): Query<Include>,
    ) -> Response {
        let answer = async {
            let client = pool.get().await?;
            let statement = client.prepare_cached(USER_BY_ID).await?;
            let row = client.query_one(&statement, &[&id]).await?;
            let user = crate::baseline::pg_sync::read_user(&row)?;
            if !include.posts_and_comments() {
                return Ok::<_, anyhow::Error>(json_response(&user));
            }
            let statement = client.prepare_cached(POSTS_BY_AUTHOR).await?;
            let posts = client
                .query(&statement, &[&id])
                .await?
                .iter()
                .map(crate::baseline::pg_sync::read_post)
                .collect::<Result<Vec<_>, _>>()?;
            let post_ids: Vec<i32> = posts.iter().map(|p| p.id).collect();
            let statement = client.prepare_cached(COMMENTS_OF_POSTS_PG).await?;
            let comments = client
                .query(&statement, &[&post_ids])
                .await?
                .iter()
                .map(crate::baseline::pg_sync::read_comment)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json_response(&assemble(user, posts, comments)))
        };
        answer.await.unwrap_or_else(failed)
    }
    Ok(Router::new()
        .route("/users/{id}", axum::routing::get(user))
        .with_state(pool))
}

/// The comments of many posts at once (SQLite: a JSON array, as keel binds it).
const COMMENTS_OF_POSTS_SQLITE: &str = "SELECT id, body, post_id, author_id, created_at, parent_id \
     FROM comments WHERE post_id IN (SELECT value FROM json_each($1)) ORDER BY id";

/// rusqlite connections, each used by one blocking call at a time, at most
/// as many at once as keel's pool has.
#[derive(Clone)]
struct SqlitePool {
    idle: Arc<Mutex<Vec<rusqlite::Connection>>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl SqlitePool {
    /// Runs `work` on an idle connection (opening one if none is idle) on a
    /// blocking thread, then puts the connection back.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.clone();
        let slot = self.slots.clone().acquire_owned().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let conn = pool
                .idle
                .lock()
                .map_err(|_| anyhow::anyhow!("pool poisoned"))?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("a slot without an idle connection"))?;
            let result = work(&conn);
            pool.idle
                .lock()
                .map_err(|_| anyhow::anyhow!("pool poisoned"))?
                .push(conn);
            result
        })
        .await?
    }
}

/// axum + rusqlite, cached prepared statements.
fn sqlite_router(path: &str, pool_size: usize) -> anyhow::Result<Router> {
    let idle = (0..pool_size)
        .map(|_| crate::baseline::sqlite::open(path))
        .collect::<Result<Vec<_>, _>>()?;
    let pool = SqlitePool {
        idle: Arc::new(Mutex::new(idle)),
        slots: Arc::new(tokio::sync::Semaphore::new(pool_size)),
    };
    async fn user(
        State(pool): State<SqlitePool>,
        Path(id): Path<i32>,
        Query(include): Query<Include>,
    ) -> Response {
        let with_posts = include.posts_and_comments();
        let answer = pool
            .run(move |conn| {
                use crate::baseline::sqlite::{read_comment, read_post, read_user};
                let user = conn
                    .prepare_cached(USER_BY_ID)?
                    .query_row([id], read_user)?;
                if !with_posts {
                    return Ok(json_response(&user));
                }
                let posts = conn
                    .prepare_cached(POSTS_BY_AUTHOR)?
                    .query_map([id], read_post)?
                    .collect::<Result<Vec<_>, _>>()?;
                let ids: Vec<String> = posts.iter().map(|p| p.id.to_string()).collect();
                let ids = format!("[{}]", ids.join(","));
                let comments = conn
                    .prepare_cached(COMMENTS_OF_POSTS_SQLITE)?
                    .query_map([ids], read_comment)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(json_response(&assemble(user, posts, comments)))
            })
            .await;
        answer.unwrap_or_else(failed)
    }
    Ok(Router::new()
        .route("/users/{id}", axum::routing::get(user))
        .with_state(pool))
}
