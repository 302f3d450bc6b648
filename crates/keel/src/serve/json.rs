//! JSON responses, serialized into a `Vec<u8>`.
//!
//! axum's `Json` response serializes through `bytes`' `Writer` over a
//! `BytesMut`, and serde_json writes a document a few bytes at a time (each
//! key, quote, comma and timestamp piece), each piece paying that writer's
//! capacity checks. For `GET /users/{id}?include=posts.comments` (a user, 10
//! posts, 20 comments) writing into a `Vec` instead took 7,300 instructions
//! off each response (callgrind, keel-bench H2; see BENCHMARKS.md, "HTTP,
//! eighth session"). [`Json`] writes into a `Vec`, with the same bytes and
//! the same `Content-Type`.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A value answered as `application/json`; use it where axum's `Json`
/// response would go.
pub(crate) struct Json<T>(pub(crate) T);

/// The body of a response whose value could not be serialized (a map with
/// keys that are not strings, a `Serialize` impl that fails): the API's
/// error shape, written out, since serializing it could fail the same way.
const UNSERIALIZABLE: &str =
    r#"{"error":{"code":"internal","message":"the response could not be serialized"}}"#;

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let content_type = [(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        match serde_json::to_vec(&self.0) {
            Ok(body) => (content_type, body).into_response(),
            Err(error) => {
                tracing::error!(%error, "a response could not be serialized");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    content_type,
                    UNSERIALIZABLE,
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::to_bytes;

    use super::*;

    async fn answered(response: Response) -> (StatusCode, String, String) {
        let status = response.status();
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_bytes_are_axums() {
        let value =
            serde_json::json!({"id": 7, "name": "A \"quoted\" é", "tags": [1, 2], "none": null});
        let ours = answered(Json(&value).into_response()).await;
        let axums = answered(axum::Json(&value).into_response()).await;
        assert_eq!(ours, axums);
        assert_eq!(ours.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_value_that_cannot_be_serialized_is_a_json_500() {
        // serde_json refuses map keys that are not strings or numbers.
        let value: BTreeMap<(i32, i32), i32> = [((1, 2), 3)].into();
        let (status, content_type, body) = answered(Json(value).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/json");
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(parsed["error"]["code"], "internal", "{body}");
    }
}
