//! `GET /healthz`: the database answers and no migration is pending; and
//! how each read replica stands (a replica out of rotation is not a failure:
//! its reads go to the primary).

use super::json::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_migrations::{MigrationState, Migrator};
use serde_json::{Value, json};

use super::routes::AppState;

pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let url = state.db.config().migration_url().clone();
    // A fresh connection, not a pooled one: it proves the server accepts
    // connections now, and reads the migration table.
    let status =
        tokio::task::spawn_blocking(move || Migrator::connect(&url).and_then(|mut m| m.status()))
            .await;
    match status {
        Ok(Ok(migrations)) => {
            let pending = migrations
                .iter()
                .filter(|m| m.state == MigrationState::Pending)
                .count();
            let code = if pending == 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let status = if pending == 0 {
                "ok"
            } else {
                "migrations_pending"
            };
            (
                code,
                Json(json!({
                    "status": status,
                    "database": "reachable",
                    "pending_migrations": pending,
                    "replicas": state.db.replica_status(),
                })),
            )
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unreachable" })),
            )
        }
        Err(error) => {
            tracing::error!(%error, "health check task failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable" })),
            )
        }
    }
}
