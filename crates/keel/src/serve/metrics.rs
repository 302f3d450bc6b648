//! `GET /metrics`: Prometheus text for requests, latencies and the database.

use axum::extract::State;
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use super::routes::AppState;

/// The service's metrics, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    statements: IntGauge,
    pool_max_size: IntGauge,
    pool_size: IntGauge,
    pool_idle: IntGauge,
    pool_waiting: IntGauge,
    pool_checkouts: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("keel".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to answer a request")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            &["method", "route"],
        )?;
        let statements = IntGauge::new(
            "db_statements_total",
            "SQL statements run on the pool's connections",
        )?;
        let pool_max_size = IntGauge::new("db_pool_max_size", "Most connections the pool opens")?;
        let pool_size = IntGauge::new("db_pool_size", "Connections open now")?;
        let pool_idle = IntGauge::new("db_pool_idle", "Open connections not checked out")?;
        let pool_waiting = IntGauge::new("db_pool_waiting", "Callers waiting for a connection")?;
        let pool_checkouts = IntGauge::new(
            "db_pool_checkouts_total",
            "Connections checked out since start",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(statements.clone()))?;
        registry.register(Box::new(pool_max_size.clone()))?;
        for gauge in [&pool_size, &pool_idle, &pool_waiting, &pool_checkouts] {
            registry.register(Box::new(gauge.clone()))?;
        }
        Ok(Self {
            registry,
            requests,
            latency,
            statements,
            pool_max_size,
            pool_size,
            pool_idle,
            pool_waiting,
            pool_checkouts,
        })
    }

    /// Records one answered request. The labels come from fixed sets, so
    /// no client can grow the output: the method is one of the standard
    /// ones or `other`, the route is the matched template (`/users/{id}`)
    /// or `unmatched`, and a status is one of at most 500 numbers.
    pub(crate) fn observe(&self, method: &Method, route: Option<&str>, status: u16, seconds: f64) {
        let method = method_label(method);
        let route = route.unwrap_or("unmatched");
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

/// A method's label: the standard methods by name, any other as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    metrics
        .statements
        .set(i64::try_from(state.db.statements().count()).unwrap_or(i64::MAX));
    let pool = state.db.pool_status();
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    metrics.pool_max_size.set(gauge(pool.max_size));
    metrics.pool_size.set(gauge(pool.size));
    metrics.pool_idle.set(gauge(pool.idle));
    metrics.pool_waiting.set(gauge(pool.waiting));
    metrics.pool_checkouts.set(gauge(pool.checkouts));
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&metrics.registry.gather(), &mut text) {
        tracing::error!(%error, "cannot encode metrics");
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
