//! The API's error responses: `{"error": {"code", "message", "field"?}}`
//! with the status that fits, and extractors whose rejections use that
//! shape too, so bad input never becomes a 500 or a bare text body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use keel_repo::RepoError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error as the API reports it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A 422 naming the offending field.
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, super::json::Json(body)).into_response()
    }
}

impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> Self {
        let message = error.to_string();
        match error {
            RepoError::NotFound { .. } => Self::not_found(message),
            RepoError::Conflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            RepoError::RelatedMissing { field } => Self {
                field: Some(field),
                ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "related_missing", message)
            },
            RepoError::Validation { field, .. } => Self::invalid(field, message),
            RepoError::TransactionConflict(_) => {
                // Still conflicting after `transaction_with_retry`'s attempts:
                // contention, not an outage.
                tracing::warn!(%message, "transaction conflict survived the retries");
                Self::new(
                    StatusCode::CONFLICT,
                    "conflict_retry_exhausted",
                    "the request kept conflicting with concurrent ones; try again",
                )
            }
            transient if transient.is_transient() => {
                // Pool exhausted, connection lost, SQLite busy, a transaction
                // conflict: the request can be tried again.
                tracing::warn!(%message, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; try again shortly",
                )
            }
            other => {
                // The detail goes to the log, not to the client.
                tracing::error!(error = %other, "database error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s: malformed JSON 400, wrong
/// content type 415, too large 413, a well-formed body of the wrong shape 422.
/// The body must be a JSON object: serde would also read an array into a
/// struct, field by position (`["a@x.com", "Name"]` as an email and a name).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => Self::from_value(value),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => Self::data_error(&e.body_text()),
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())
                }
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with Content-Type: application/json",
                ),
                JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        "the request body is too large",
                    )
                }
                JsonRejection::BytesRejection(e) if stalled(&e) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body stopped arriving",
                ),
                other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
            }),
        }
    }
}

/// Whether the body failed because the client stopped sending it (the
/// body-read timeout fired), rather than because it was malformed.
fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>())
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// Reads a parsed body: a JSON object of `T`'s shape, else a 422.
    pub(crate) fn from_value(value: serde_json::Value) -> Result<Self, ApiError> {
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| Self::data_error(&e.to_string()))
    }
}

/// A 422 for the first of `fields` that `body` sets to `null`: in a
/// changeset an absent field means "leave it", and `null` cannot be stored
/// in these columns, so it must not pass for "leave it".
pub(crate) fn reject_nulls(
    body: &serde_json::Map<String, serde_json::Value>,
    fields: &[&str],
) -> Result<(), ApiError> {
    match fields
        .iter()
        .find(|f| body.get(**f).is_some_and(|v| v.is_null()))
    {
        Some(field) => Err(ApiError::invalid(field, format!("{field} cannot be null"))),
        None => Ok(()),
    }
}

impl<T> JsonBody<T> {
    /// serde's message names the field where it can (`missing field `email``).
    fn data_error(text: &str) -> ApiError {
        let field = text
            .split('`')
            .nth(1)
            .filter(|_| text.contains("field"))
            .map(str::to_owned);
        ApiError {
            field,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", text)
        }
    }
}

/// `Path<T>` whose rejections are 400s in the API's shape (`/users/abc`).
pub(crate) struct PathParam<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|e: PathRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.body_text())
            })
    }
}

/// `Query<T>` whose rejections are 400s in the API's shape (`?limit=x`).
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadlock that outlived the retries is contention, not an outage:
    /// a 409 with a code of its own, where it used to be a 503.
    #[test]
    fn a_conflict_past_the_retries_is_a_409_of_its_own() {
        let error = ApiError::from(RepoError::TransactionConflict("deadlock detected".into()));
        assert_eq!(
            (error.status, error.code),
            (StatusCode::CONFLICT, "conflict_retry_exhausted")
        );
        let pool = ApiError::from(RepoError::PoolTimeout {
            waited: std::time::Duration::from_secs(5),
        });
        assert_eq!(pool.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
