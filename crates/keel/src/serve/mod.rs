//! `keel serve`: a JSON API over keel-repo's async mode (axum on tokio).
//!
//! Every request runs in a [`QueryScope`]: its statements are counted on the
//! pooled connections it used, returned as `X-Query-Count`, and logged with
//! the method, path, status and latency.

mod error;
mod health;
mod metrics;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::{DatabaseConfig, QueryScope};
use tower_http::catch_panic::CatchPanicLayer;

use self::error::ApiError;
use self::metrics::Metrics;
use self::routes::AppState;

/// Largest request body accepted (413 past it).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Options of `keel serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; loopback unless told otherwise.
    #[arg(long, env = "KEEL_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    no_migrate: bool,
    /// Seed an empty database with this many users (10 posts each, 2
    /// comments per post) before serving, so there is data to look at.
    #[arg(long, value_name = "USERS")]
    seed: Option<i64>,
}

/// Runs the service until Ctrl-C or SIGTERM; in-flight requests finish,
/// then the pool closes.
pub(crate) fn run(
    config: DatabaseConfig,
    args: &ServeArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, args))
}

async fn serve(config: DatabaseConfig, args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
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
    let state = AppState {
        db: Arc::new(db),
        metrics: Arc::new(Metrics::new()?),
    };
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let address = listener.local_addr()?;
    tracing::info!(database = %config.url, "listening on http://{address}");
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped accepting requests; closing the database pool");
    drop(state);
    Ok(())
}

/// The router with its middleware: body limit, panic guard, per-request scope.
pub(crate) fn app(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(middleware::from_fn_with_state(state, observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
}

/// Runs the request in its own statement scope, then logs one line and sets
/// `X-Query-Count`.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let scope = QueryScope::new();
    let mut response = scope.run_async(next.run(request)).await;
    let statements = scope.statements();
    let elapsed = started.elapsed();
    response
        .headers_mut()
        .insert("x-query-count", HeaderValue::from(statements));
    let status = response.status().as_u16();
    state
        .metrics
        .observe(method.as_str(), status, elapsed.as_secs_f64());
    tracing::info!(
        %method,
        %path,
        status,
        latency_ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1000.0),
        statements,
        "request"
    );
    response
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
