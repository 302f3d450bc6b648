//! The accept loop of `keel serve`: HTTP/1 connections with a header-read
//! timeout and a cap on how many are open, and a shutdown with a deadline.
//!
//! axum's own `serve` sets no header timeout and has no deadline: a client
//! that sends half a request holds its connection, and SIGTERM, forever. So
//! keel drives hyper's connections itself, as axum's "serve-with-hyper"
//! example does, with the same router and middleware.
//!
//! On shutdown:
//! 1. open connections are told to finish: idle ones close at once, one in
//!    the middle of a request answers it and then closes;
//! 2. connections the kernel already accepted but keel had not (the listen
//!    queue) are taken and served one request each, so they get an answer
//!    rather than a reset; then the listener closes;
//! 3. whatever is still open when the grace period ends is cut, and the
//!    log says how many.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// How long and how many: the limits that keep slow or numerous clients
/// from holding the server. [`Default`] is `keel serve`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// A client must send a whole request head within this time.
    pub(crate) header_read_timeout: Duration,
    /// A body that stalls this long between two pieces is answered 408.
    pub(crate) body_read_timeout: Duration,
    /// Connections open at once; past it, new ones wait in the kernel's
    /// listen queue until one closes.
    pub(crate) max_connections: usize,
    /// How long shutdown waits for in-flight requests before cutting them.
    pub(crate) grace_period: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
            grace_period: Duration::from_secs(10),
        }
    }
}

/// How the server stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stopped {
    /// Connections taken from the listen queue after the signal.
    pub(crate) drained: usize,
    /// Connections still open at the end of the grace period, now cut.
    pub(crate) cut: usize,
}

/// Serves `router` on `listener`, behind the guards every request passes
/// whatever its route (a panic becomes a JSON 500, a body is refused past
/// 64 KiB, one that stalls between two pieces is answered 408), until
/// `shutdown` resolves, then stops as the module documentation describes.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    // Around the router, not inside it: a `Router::layer` wraps every route,
    // and a router around the router routes every request twice.
    let guarded = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(super::panic_response))
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES))
        .service(router);
    let service = TowerToHyperService::new(guarded);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    let cut_all = CancellationToken::new();

    tokio::pin!(shutdown);
    loop {
        let next = async {
            // Waiting for a permit before accepting leaves the excess in the
            // kernel's queue, where it costs keel nothing.
            let permit = permits.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        tokio::select! {
            () = &mut shutdown => break,
            (permit, accepted) = next => match (permit, accepted) {
                (Ok(permit), Ok((stream, _))) => {
                    let connection = http.serve_connection(TokioIo::new(stream), service.clone());
                    let connection = graceful.watch(connection);
                    tracker.spawn(run_connection(connection, Some(permit), cut_all.clone()));
                }
                (_, Err(error)) => {
                    // Out of file descriptors, most likely: wait for some to
                    // close rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (Err(_), _) => break,
            },
        }
    }

    // One deadline for all that follows: the drain, then the wait.
    let deadline = tokio::time::Instant::now() + limits.grace_period;
    // Idle connections close now; busy ones after their current response.
    tokio::spawn(graceful.shutdown());

    // Connections the kernel had already accepted: one request each. At
    // most a cap's worth, and not past the deadline, so clients that keep
    // reconnecting cannot hold the shutdown open.
    let mut one_request = http.clone();
    one_request.keep_alive(false);
    let mut drained = 0;
    while drained < limits.max_connections && tokio::time::Instant::now() < deadline {
        let Some(stream) = already_queued(&listener).await else {
            break;
        };
        drained += 1;
        let connection = one_request.serve_connection(TokioIo::new(stream), service.clone());
        tracker.spawn(run_connection(connection, None, cut_all.clone()));
    }
    drop(listener);
    if drained > 0 {
        tracing::info!(
            drained,
            "answering connections that were queued at the signal"
        );
    }

    tracker.close();
    let cut = match tokio::time::timeout_at(deadline, tracker.wait()).await {
        Ok(()) => 0,
        Err(_) => {
            let cut = tracker.len();
            tracing::warn!(
                cut,
                grace_period_s = limits.grace_period.as_secs_f64(),
                "grace period over: cutting the connections still open"
            );
            // Dropping each connection closes it, on any runtime (a caller
            // of `serve_router` keeps its runtime running).
            cut_all.cancel();
            cut
        }
    };
    Stopped { drained, cut }
}

/// A connection the kernel has already accepted, without waiting for one.
async fn already_queued(listener: &TcpListener) -> Option<TcpStream> {
    // A zero timeout still polls `accept` once: ready means queued.
    match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
        Ok(Ok((stream, _))) => Some(stream),
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot accept a queued connection");
            None
        }
        Err(_) => None,
    }
}

/// Drives one connection to its end, or until `cut` (the deadline), holding
/// its slot until then.
async fn run_connection<E: std::fmt::Display>(
    connection: impl Future<Output = Result<(), E>>,
    permit: Option<OwnedSemaphorePermit>,
    cut: CancellationToken,
) {
    tokio::select! {
        ended = connection => {
            if let Err(error) = ended {
                // Timeouts and clients that hang up mid-request: routine.
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = cut.cancelled() => {}
    }
    drop(permit);
}
