//! `GET /metrics`: Prometheus text for requests, latencies and the database.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
    replica_in_rotation: IntGaugeVec,
    replica_lag_ms: IntGaugeVec,
    replica_reads: IntGaugeVec,
    replica_fallbacks: IntGaugeVec,
    reads_without_replica: IntGauge,
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
        let per_replica =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["replica", "role"]);
        let replica_in_rotation = per_replica(
            "db_replica_in_rotation",
            "1 when the replica takes reads, 0 when it is out of rotation",
        )?;
        let replica_lag_ms = per_replica(
            "db_replica_lag_ms",
            "How far the replica was behind the primary at the last check",
        )?;
        let replica_reads = per_replica("db_replica_reads_total", "Reads the replica answered")?;
        let replica_fallbacks = per_replica(
            "db_replica_fallbacks_total",
            "Reads meant for the replica that went to the primary (behind the caller's write, or failed)",
        )?;
        let reads_without_replica = IntGauge::new(
            "db_reads_without_replica_total",
            "Reads sent to the primary because no replica was in rotation",
        )?;
        for vec in [
            &replica_in_rotation,
            &replica_lag_ms,
            &replica_reads,
            &replica_fallbacks,
        ] {
            registry.register(Box::new(vec.clone()))?;
        }
        registry.register(Box::new(reads_without_replica.clone()))?;
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
            replica_in_rotation,
            replica_lag_ms,
            replica_reads,
            replica_fallbacks,
            reads_without_replica,
        })
    }

    /// Records one answered request. The labels come from fixed sets, so
    /// no client can grow the output: the method is one of the standard
    /// ones or `other`, the route is the matched template (`/users/{id}`)
    /// or `unmatched`, and a status is one of at most 500 numbers.
    pub(crate) fn observe(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        seconds: f64,
    ) {
        let method = method_label(method);
        let route = route.unwrap_or("unmatched");
        self.requests
            .with_label_values(&[method, route, status.as_str()])
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
    metrics
        .reads_without_replica
        .set(gauge(state.db.reads_without_replica()));
    for vec in [
        &metrics.replica_in_rotation,
        &metrics.replica_lag_ms,
        &metrics.replica_reads,
        &metrics.replica_fallbacks,
    ] {
        vec.reset(); // a replica's role is a label: drop the old one's series
    }
    for replica in state.db.replica_status() {
        let labels = [replica.url.as_str(), replica.role.as_str()];
        let set = |vec: &IntGaugeVec, value: u64| vec.with_label_values(&labels).set(gauge(value));
        set(&metrics.replica_in_rotation, u64::from(replica.in_rotation));
        set(&metrics.replica_lag_ms, replica.lag_ms.unwrap_or(u64::MAX));
        set(&metrics.replica_reads, replica.reads);
        set(&metrics.replica_fallbacks, replica.fallbacks);
    }
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&metrics.registry.gather(), &mut text) {
        tracing::error!(%error, "cannot encode metrics");
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
