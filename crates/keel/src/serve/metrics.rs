//! `GET /metrics`: Prometheus text for requests, latencies and the database.

use axum::extract::State;
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
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("keel".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by method and status",
            ),
            &["method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to answer a request")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            &["method"],
        )?;
        let statements = IntGauge::new(
            "db_statements_total",
            "SQL statements run on the pool's connections",
        )?;
        let pool_max_size = IntGauge::new("db_pool_max_size", "Most connections the pool opens")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(statements.clone()))?;
        registry.register(Box::new(pool_max_size.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            statements,
            pool_max_size,
        })
    }

    /// Records one answered request.
    pub(crate) fn observe(&self, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[method]).observe(seconds);
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    metrics
        .statements
        .set(i64::try_from(state.db.statements().count()).unwrap_or(i64::MAX));
    metrics
        .pool_max_size
        .set(i64::from(state.db.config().pool_size));
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&metrics.registry.gather(), &mut text) {
        tracing::error!(%error, "cannot encode metrics");
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
