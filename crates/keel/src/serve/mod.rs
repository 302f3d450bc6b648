//! `keel serve`: a JSON API over keel-repo's async mode (axum on tokio).
//!
//! Every request runs in a [`QueryScope`]: its statements are counted on the
//! pooled connections it used, returned as `X-Query-Count`, and logged with
//! the method, path, status and latency. A request over its statement budget,
//! or one that repeats a query shape (a likely N+1), logs a warning; with
//! `KEEL_STRICT=1` the repeat fails the request with a 500 (the statement is
//! logged, never sent to the client).
//!
//! Slow or numerous clients are bounded: a request head must arrive within
//! `--header-read-timeout`, each piece of a body within
//! `--body-read-timeout`, a whole request is answered within
//! `--request-timeout`, at most `--max-connections` are open, and shutdown
//! ends within `--grace-period` whatever clients do (see [`connections`]).

mod connections;
mod error;
mod health;
mod json;
mod metrics;
mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::{DatabaseConfig, Lsn, PgBouncerMode, PostgresUrl, QueryScope};

use self::connections::ConnectionLimits;

use self::error::ApiError;
use self::metrics::Metrics;
use self::routes::AppState;

/// Largest request body accepted (413 past it).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Options of `keel serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; loopback unless told otherwise.
    #[arg(long, env = "KEEL_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    no_migrate: bool,
    /// Fail a request that repeats a query shape (a likely N+1) with a 500,
    /// instead of only logging a warning.
    #[arg(long, env = "KEEL_STRICT", value_parser = clap::builder::BoolishValueParser::new())]
    strict: bool,
    /// Statements a request may run before its log line is a warning.
    #[arg(long, env = "KEEL_STATEMENT_BUDGET", default_value_t = 20)]
    statement_budget: u64,
    /// Seed an empty database with this many users (10 posts each, 2
    /// comments per post) before serving, so there is data to look at.
    #[arg(long, value_name = "USERS")]
    seed: Option<i64>,
    /// Seconds a client has to send a whole request head.
    #[arg(long, env = "KEEL_HEADER_READ_TIMEOUT", default_value = "5", value_parser = seconds, value_name = "SECONDS")]
    header_read_timeout: Duration,
    /// Seconds a request body may stall between two pieces (408 past it).
    #[arg(long, env = "KEEL_BODY_READ_TIMEOUT", default_value = "5", value_parser = seconds, value_name = "SECONDS")]
    body_read_timeout: Duration,
    /// Seconds a request may take in all, body included (503 past it).
    #[arg(long, env = "KEEL_REQUEST_TIMEOUT", default_value = "30", value_parser = seconds, value_name = "SECONDS")]
    request_timeout: Duration,
    /// Connections open at once; more wait in the kernel's listen queue.
    #[arg(long, env = "KEEL_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds shutdown waits for in-flight requests before cutting them.
    #[arg(long, env = "KEEL_GRACE_PERIOD", default_value = "10", value_parser = seconds, value_name = "SECONDS")]
    grace_period: Duration,
    /// A read replica of the PostgreSQL primary (repeat for several); adds
    /// to `DATABASE_REPLICA_URLS`. Reads outside transactions go to them.
    #[arg(long = "replica-url", value_name = "URL", value_parser = replica_url)]
    replica_urls: Vec<PostgresUrl>,
    /// PgBouncer in front of PostgreSQL: `off`, `session` or `transaction`
    /// (default: `KEEL_PGBOUNCER`, else off).
    #[arg(long, value_name = "MODE", value_parser = pgbouncer_mode)]
    pgbouncer: Option<PgBouncerMode>,
}

fn replica_url(text: &str) -> Result<PostgresUrl, String> {
    PostgresUrl::parse(text).map_err(|e| format!("not a PostgreSQL URL: {e}"))
}

fn pgbouncer_mode(text: &str) -> Result<PgBouncerMode, String> {
    match text {
        "off" => Ok(PgBouncerMode::Off),
        "session" => Ok(PgBouncerMode::Session),
        "transaction" => Ok(PgBouncerMode::Transaction),
        _ => Err("expected off, session or transaction".to_owned()),
    }
}

impl ServeArgs {
    /// `config` with this command's replica URLs and PgBouncer mode.
    fn database_config(&self, mut config: DatabaseConfig) -> DatabaseConfig {
        config
            .replica_urls
            .extend(self.replica_urls.iter().cloned());
        if let Some(mode) = self.pgbouncer {
            config.pgbouncer = mode;
        }
        config
    }
}

/// A duration given in seconds, fractions allowed (`0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive number of seconds"))
}

/// Runs the service until Ctrl-C or SIGTERM; in-flight requests finish,
/// then the pool closes.
pub fn run(config: DatabaseConfig, args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(serve(config, args));
    // Connections cut at the deadline, and any database call still running
    // on a blocking thread, must not hold the exit: dropping the runtime
    // would wait for the blocking ones.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

async fn serve(config: DatabaseConfig, args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.database_config(config);
    config.check()?;
    let db = AsyncDatabase::connect(&config).await?;
    if !args.no_migrate {
        let applied = db.run_migrations().await?;
        tracing::info!(count = applied.len(), "migrations applied");
    }
    if let Some(users) = args.seed {
        let workload = keel_workload::Workload::new(users, 10, 2)?;
        match crate::seed::seed(&db, &workload).await {
            Err(crate::seed::SeedError::NotResumable { table, .. }) => {
                tracing::warn!(table, "the database already holds other data: not seeding");
            }
            other => other?,
        }
    }
    let db = Arc::new(db);
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let address = listener.local_addr()?;
    tracing::info!(database = %config.url, "listening on http://{address}");
    let router = api(db.clone(), &args.api_options())?;
    connections::serve_connections(listener, router, args.limits(), shutdown_signal()).await;
    tracing::info!("stopped accepting requests; closing the database pool");
    drop(db);
    Ok(())
}

impl ServeArgs {
    fn api_options(&self) -> ApiOptions {
        ApiOptions {
            statement_budget: self.statement_budget,
            strict: self.strict,
            request_timeout: self.request_timeout,
        }
    }

    fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_connections: self.max_connections as usize,
            grace_period: self.grace_period,
        }
    }
}

/// What the API's router does per request: `keel serve`'s flags of the
/// same names; [`Default`] is their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOptions {
    /// Statements a request may run before its log line is a warning.
    pub statement_budget: u64,
    /// Fail a request that repeats a query shape (a likely N+1) with a 500.
    pub strict: bool,
    /// A request still running after this is answered 503 `timeout`.
    pub request_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            statement_budget: 20,
            strict: false,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The router `keel serve` runs, on `db`, with its per-request middleware:
/// statement scope and `X-Query-Count`, metrics, logs, request timeout.
/// keel's accept loop ([`serve_router`]) adds what guards the server as a
/// whole: the panic guard, the body limit and the body read timeout. Fails
/// only if the metrics cannot be registered.
pub fn api(db: Arc<AsyncDatabase>, options: &ApiOptions) -> Result<Router, prometheus::Error> {
    let state = AppState {
        db,
        metrics: Arc::new(Metrics::new()?),
        statement_budget: options.statement_budget,
        strict: options.strict,
        request_timeout: options.request_timeout,
    };
    Ok(app(state))
}

/// Serves `router` on `listener` as `keel serve` does, with its guards
/// (panic guard, body limit, body read timeout) and default connection
/// limits, until `shutdown` resolves; then stops as `keel serve` stops on
/// SIGTERM.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    connections::serve_connections(listener, router, ConnectionLimits::default(), shutdown).await;
}

/// The routes with the per-request middleware.
fn app(state: AppState) -> Router {
    with_middleware(routes::router(state.clone()), state)
}

fn with_middleware(router: Router, state: AppState) -> Router {
    // `observe` needs the matched route (for the metrics' labels), which
    // only exists inside the router, so it is a route layer. The guards that
    // need no route wrap the router once, in the accept loop ([`connections`]):
    // a `Router::layer` wraps every route, and a router around the router
    // routes every request twice.
    router.layer(Observe(state))
}

/// The per-request layer: [`observe`] around each route. Written out rather
/// than made with axum's `from_fn`, which costs every request two boxed
/// service clones and a split and rebuild of the request besides the boxed
/// future this costs.
#[derive(Clone)]
struct Observe(AppState);

impl<S> tower::Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            state: self.0.clone(),
        }
    }
}

/// A route with [`observe`] around it.
#[derive(Clone)]
struct Observed<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Observed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service made ready serves this request; a clone takes its
        // place for the next (tower's rule for a service moved into a future).
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let state = self.state.clone();
        Box::pin(async move { Ok(observe(state, request, ready).await) })
    }
}

/// What a client sees when a handler panics (the panic itself is logged by
/// the panic hook).
fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// A 413 for a request whose `Content-Length` is over the limit, to answer
/// at once, before any of its body is read: the body limit alone answers
/// only once 64 KiB have arrived, and a client may never send them.
fn declared_oversize(request: &Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_none_or(|bytes| bytes <= MAX_BODY_BYTES as u64) {
        return None;
    }
    let mut response = ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is too large",
    )
    .into_response();
    // The unread body is still on the wire: the connection cannot carry
    // another request, and the client must not reuse it.
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// Runs the request in its own statement scope (or refuses a declared
/// oversize body at once), then logs one line, counts it in the metrics and
/// sets `X-Query-Count`. One layer does all of it: each layer costs every
/// request a boxed future and a clone of the service below.
async fn observe<S>(state: AppState, request: Request, mut service: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let path = request.uri().path();
    let mut name = String::with_capacity(method.as_str().len() + 1 + path.len());
    name.push_str(method.as_str());
    name.push(' ');
    name.push_str(path);
    let scope = QueryScope::named(name).strict(state.strict);
    // The scope's name holds the path: the log line reads it there after
    // the request is handed on, without a copy of the URI.
    let path = scope
        .name()
        .get(method.as_str().len() + 1..)
        .unwrap_or_default();
    let answered = match (declared_oversize(&request), client_lsn(&request)) {
        (Some(refused), _) => Ok(refused),
        (None, Err(refused)) => Ok(*refused),
        (None, Ok(lsn)) => {
            if let Some(lsn) = lsn {
                scope.observe_lsn(lsn);
            }
            scope
                .run_async(tokio::time::timeout(
                    state.request_timeout,
                    service.call(request),
                ))
                .await
                .map(|answered| answered.unwrap_or_else(|never| match never {}))
        }
    };
    let mut response = answered.unwrap_or_else(|_| {
        // Dropping the handler rolls back its open transaction, if any.
        tracing::warn!(%method, %path, timeout_s = state.request_timeout.as_secs_f64(), "request timed out");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .into_response()
    });
    let statements = scope.statements();
    if statements > state.statement_budget {
        tracing::warn!(
            %method,
            %path,
            statements,
            budget = state.statement_budget,
            "request ran more statements than its budget"
        );
    }
    let elapsed = started.elapsed();
    response
        .headers_mut()
        .insert(QUERY_COUNT_HEADER, query_count(statements));
    if let Some(lsn) = scope.write_lsn()
        && let Ok(value) = HeaderValue::from_str(&lsn.to_string())
    {
        response.headers_mut().insert(LSN_HEADER, value);
    }
    let status = response.status();
    state.metrics.observe(
        &method,
        route.as_ref().map(MatchedPath::as_str),
        status,
        elapsed.as_secs_f64(),
    );
    let status = status.as_u16();
    // Milliseconds with three decimals, from integers: formatting a float
    // was a visible share of the line's cost, which every request pays.
    let micros = elapsed.as_micros();
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        %method,
        %path,
        status,
        latency_ms = format_args!("{}.{:03}", micros / 1000, micros % 1000),
        statements,
        "request"
    );
    response
}

/// The target of the line [`observe`] logs per request (the access log):
/// `RUST_LOG=info,keel::serve::access=off` turns those lines off and keeps
/// every other line, warnings about requests included. Off, a request does
/// not pay for its line at all (the filter is decided once per call site);
/// on, the line is the largest per-request cost of the features `keel
/// serve` adds (BENCHMARKS.md, "HTTP, eighth session").
pub const ACCESS_LOG_TARGET: &str = "keel::serve::access";

/// The header that carries a write's commit LSN: keel sets it on a response
/// to a request that wrote (on a pool with replicas), and a client that
/// sends it back reads its write on any replica.
const LSN_HEADER: HeaderName = HeaderName::from_static("x-keel-lsn");

/// `X-Query-Count`'s value. Most requests run a handful of statements:
/// their counts are static strings, where `HeaderValue::from(u64)` would
/// allocate.
fn query_count(statements: u64) -> HeaderValue {
    const SMALL: [&str; 21] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20",
    ];
    match usize::try_from(statements).ok().and_then(|n| SMALL.get(n)) {
        Some(count) => HeaderValue::from_static(count),
        None => HeaderValue::from(statements),
    }
}

/// The header that carries a request's statement count. A `HeaderName`
/// made once: a `&str` name is parsed and hashed again on every insert.
const QUERY_COUNT_HEADER: HeaderName = HeaderName::from_static("x-query-count");

/// The LSN a request carries in `X-Keel-Lsn`, if any; a 400 when the header
/// is not one.
fn client_lsn(request: &Request) -> Result<Option<Lsn>, Box<Response>> {
    let Some(value) = request.headers().get(LSN_HEADER) else {
        return Ok(None);
    };
    match value.to_str().ok().and_then(|text| text.parse().ok()) {
        Some(lsn) => Ok(Some(lsn)),
        None => Err(Box::new(
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_lsn",
                "X-Keel-Lsn must be a PostgreSQL LSN such as 16/B374D848, as a response gave it",
            )
            .into_response(),
        )),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    //! The N+1 guard in the request path: a handler that looks rows up one
    //! by one warns, or in strict mode fails with a 500 whose body does not
    //! leak the SQL.

    use std::sync::OnceLock;

    use axum::extract::State;
    use axum::routing::get;
    use keel_repo::DatabaseUrl;

    use super::*;
    use crate::logging::CapturedLog;
    use keel_repo::prelude::UsersExt as _;

    /// Every log line of this test binary, for the assertions below.
    fn captured_log() -> CapturedLog {
        static LOG: OnceLock<CapturedLog> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = CapturedLog::default();
            let sink = log.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
            log
        })
        .clone()
    }

    /// A deliberate N+1: the same lookup, once per "row".
    async fn lookup_in_a_loop(State(state): State<AppState>) -> Result<&'static str, ApiError> {
        for _ in 0..12 {
            state.db.users().get_by_id(1).await?;
        }
        Ok("done")
    }

    async fn serve_loop(strict: bool) -> (reqwest::Response, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = DatabaseUrl::Sqlite(dir.path().join("keel.db").display().to_string());
        let db = AsyncDatabase::connect(&DatabaseConfig::new(url))
            .await
            .expect("pool");
        db.run_migrations().await.expect("migrate");
        db.users()
            .create(&keel_models::NewUser {
                email: "a@example.com".into(),
                full_name: "A".into(),
                first_name: None,
                last_name: None,
                is_active: true,
            })
            .await
            .expect("user");
        let state = AppState {
            db: Arc::new(db),
            metrics: Arc::new(Metrics::new().expect("metrics")),
            statement_budget: 5,
            strict,
            request_timeout: Duration::from_secs(30),
        };
        let router = Router::new()
            .route("/loop", get(lookup_in_a_loop))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, with_middleware(router, state)).await });
        let response = reqwest::get(format!("http://{address}/loop"))
            .await
            .expect("request");
        (response, dir)
    }

    fn log_text() -> String {
        captured_log().text()
    }

    #[test]
    fn a_query_count_reads_as_its_number() {
        for statements in [0, 1, 9, 10, 20, 21, 1_000, u64::MAX] {
            assert_eq!(
                query_count(statements),
                HeaderValue::from(statements),
                "{statements}"
            );
        }
    }

    #[test]
    fn serve_binds_to_loopback_unless_told_otherwise() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = Cli::try_parse_from(["keel"]).expect("defaults parse");
        assert!(cli.serve.bind.ip().is_loopback(), "{}", cli.serve.bind);
        let cli = Cli::try_parse_from(["keel", "--bind", "0.0.0.0:9000"]).expect("explicit bind");
        assert!(!cli.serve.bind.ip().is_loopback());
    }

    #[test]
    fn the_library_defaults_are_the_command_line_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = Cli::try_parse_from(["keel"]).expect("defaults parse");
        assert_eq!(cli.serve.api_options(), ApiOptions::default());
        assert_eq!(cli.serve.limits(), ConnectionLimits::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repeated_shape_warns_and_strict_mode_fails_the_request() {
        captured_log();
        let (response, _dir) = serve_loop(false).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-query-count"], "12");
        let log = log_text();
        assert!(
            log.contains("likely N+1") && log.contains("GET /loop"),
            "{log}"
        );
        assert!(log.contains("more statements than its budget"), "{log}");

        let (response, _dir) = serve_loop(true).await;
        assert_eq!(response.status(), 500);
        let body = response.text().await.expect("body");
        assert!(
            body.contains("internal") && !body.contains("SELECT"),
            "the SQL stays out of the body: {body}"
        );
        assert!(
            log_text().contains("RepeatedStatement")
                || log_text().contains("likely N+1 in GET /loop"),
            "{}",
            log_text()
        );
    }
}
