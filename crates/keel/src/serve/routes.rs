//! The endpoints: each handler parses its input, makes one repository call
//! (eager loads included) and returns JSON.

use keel_repo::prelude::{CommentsExt as _, PostsExt as _, UsersExt as _};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_models::{NewComment, NewPost, NewUser, UserChangeset};
use keel_repo::asynchronous::{AsyncDatabase, AsyncTransaction};
use keel_repo::{RepoError, RetryPolicy};
use serde::Deserialize;

use super::error::{ApiError, JsonBody, PathParam, QueryParams, reject_nulls};
use super::metrics::Metrics;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) db: Arc<AsyncDatabase>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) statement_budget: u64,
    pub(crate) strict: bool,
    /// A request still running after this is answered 503 and dropped.
    pub(crate) request_timeout: std::time::Duration,
}

/// Default and largest page an endpoint returns.
const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/by-email/{email}", get(user_by_email))
        .route(
            "/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/users/{id}/posts", axum::routing::post(create_post))
        .route("/posts", get(posts_by_author_email))
        .route("/posts/{id}", get(get_post).delete(delete_post))
        .route(
            "/posts/{id}/comments",
            get(list_comments).post(create_comment),
        )
        .route("/healthz", get(super::health::healthz))
        .route("/metrics", get(super::metrics::metrics))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Runs one write in a transaction that is run again on a deadlock or a
/// serialization failure (and, on SQLite, a busy timeout): a delete's
/// cascade and a concurrent insert's foreign-key locks can deadlock on
/// PostgreSQL, and one of the two is then rolled back; the client should
/// not see that. Past the retries, a 409 `conflict_retry_exhausted`.
///
/// `write` returns a future that owns what it needs (an `async move` block
/// over a clone), not an async closure borrowing it: a future borrowing the
/// closure is not `Send` for every lifetime, which axum's handlers need.
async fn retried<T>(
    state: &AppState,
    write: impl AsyncFnMut(AsyncTransaction) -> Result<T, RepoError>,
) -> Result<T, ApiError> {
    Ok(state
        .db
        .transaction_with_retry(&RetryPolicy::default(), write)
        .await?)
}

/// Any path no route matches: a JSON 404, like every other error.
async fn no_such_endpoint() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// A route that exists, with a method it does not take: a JSON 405 (axum
/// adds the `Allow` header listing the methods it does take).
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    after: Option<i32>,
    limit: Option<i64>,
}

impl PageParams {
    /// The page size: 20 unless asked, never above 100.
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if n < 1 => Err(ApiError::invalid("limit", "limit must be at least 1")),
            Some(n) => Ok(n.min(MAX_PAGE)),
        }
    }
}

#[derive(Deserialize)]
struct IncludeParams {
    include: Option<String>,
}

impl IncludeParams {
    /// The relations asked for, each checked against `allowed`.
    fn relations(&self, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
        let Some(include) = &self.include else {
            return Ok(Vec::new());
        };
        include
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|relation| {
                if allowed.contains(&relation) {
                    Ok(relation.to_owned())
                } else {
                    Err(ApiError::invalid(
                        "include",
                        format!(
                            "unknown relation `{relation}`; expected one of: {}",
                            allowed.join(", ")
                        ),
                    ))
                }
            })
            .collect()
    }
}

fn created(value: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

async fn create_user(
    State(state): State<AppState>,
    JsonBody(user): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    Ok(created(state.db.users().create(&user).await?))
}

async fn list_users(
    State(state): State<AppState>,
    QueryParams(page): QueryParams<PageParams>,
) -> Result<Response, ApiError> {
    let limit = page.limit()?;
    Ok(Json(state.db.users().page(page.after, limit).await?).into_response())
}

async fn get_user(
    State(state): State<AppState>,
    PathParam(id): PathParam<i32>,
    QueryParams(include): QueryParams<IncludeParams>,
) -> Result<Response, ApiError> {
    let users = state.db.users();
    let relations = include.relations(&["posts", "posts.comments"])?;
    Ok(if relations.iter().any(|r| r == "posts.comments") {
        Json(users.get_with_posts_and_comments(id).await?).into_response()
    } else if relations.iter().any(|r| r == "posts") {
        Json(users.get_with_posts(id).await?).into_response()
    } else {
        Json(users.get_by_id(id).await?).into_response()
    })
}

async fn user_by_email(
    State(state): State<AppState>,
    PathParam(email): PathParam<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.db.users().get_by_email(&email).await?).into_response())
}

async fn update_user(
    State(state): State<AppState>,
    PathParam(id): PathParam<i32>,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, ApiError> {
    reject_nulls(&body, &["email", "full_name", "is_active"])?;
    let JsonBody(changes) = JsonBody::<UserChangeset>::from_value(body.into())?;
    let user = retried(&state, move |tx: AsyncTransaction| {
        let changes = changes.clone();
        async move { tx.users().update(id, &changes).await }
    })
    .await?;
    Ok(Json(user).into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    PathParam(id): PathParam<i32>,
) -> Result<StatusCode, ApiError> {
    retried(&state, move |tx: AsyncTransaction| async move {
        tx.users().delete(id).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A post as a client sends it: the author comes from the path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    title: String,
    content: String,
}

async fn create_post(
    State(state): State<AppState>,
    PathParam(author_id): PathParam<i32>,
    JsonBody(body): JsonBody<PostBody>,
) -> Result<Response, ApiError> {
    let post = NewPost {
        title: body.title,
        content: body.content,
        author_id,
    };
    Ok(created(
        retried(&state, move |tx: AsyncTransaction| {
            let post = post.clone();
            async move { tx.posts().create(&post).await }
        })
        .await?,
    ))
}

#[derive(serde::Serialize)]
struct PostWithAuthor {
    post: keel_models::Post,
    author: keel_models::User,
}

#[derive(serde::Serialize)]
struct PostWithComments {
    post: keel_models::Post,
    comments: Vec<keel_models::Comment>,
}

async fn get_post(
    State(state): State<AppState>,
    PathParam(id): PathParam<i32>,
    QueryParams(include): QueryParams<IncludeParams>,
) -> Result<Response, ApiError> {
    let posts = state.db.posts();
    let relations = include.relations(&["author", "comments"])?;
    let author = relations.iter().any(|r| r == "author");
    let comments = relations.iter().any(|r| r == "comments");
    Ok(match (author, comments) {
        (true, true) => Json(posts.post_with_author_and_comments(id).await?).into_response(),
        (true, false) => {
            let (post, author) = posts.get_with_author(id).await?;
            Json(PostWithAuthor { post, author }).into_response()
        }
        (false, true) => {
            let post = posts.get_by_id(id).await?;
            let comments = posts.load_comments(&posts.comments_query(id)).await?;
            Json(PostWithComments { post, comments }).into_response()
        }
        (false, false) => Json(posts.get_by_id(id).await?).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorEmailParams {
    author_email: Option<String>,
}

async fn posts_by_author_email(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<AuthorEmailParams>,
) -> Result<Response, ApiError> {
    let email = params
        .author_email
        .ok_or_else(|| ApiError::invalid("author_email", "give ?author_email=ADDRESS"))?;
    Ok(Json(state.db.posts().by_author_email(&email).await?).into_response())
}

async fn delete_post(
    State(state): State<AppState>,
    PathParam(id): PathParam<i32>,
) -> Result<StatusCode, ApiError> {
    retried(&state, move |tx: AsyncTransaction| async move {
        tx.posts().delete(id).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A comment as a client sends it: the post comes from the path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    body: String,
    author_id: i32,
}

async fn create_comment(
    State(state): State<AppState>,
    PathParam(post_id): PathParam<i32>,
    JsonBody(body): JsonBody<CommentBody>,
) -> Result<Response, ApiError> {
    let comment = NewComment {
        body: body.body,
        post_id,
        author_id: body.author_id,
    };
    Ok(created(
        retried(&state, move |tx: AsyncTransaction| {
            let comment = comment.clone();
            async move { tx.comments().create(&comment).await }
        })
        .await?,
    ))
}

async fn list_comments(
    State(state): State<AppState>,
    PathParam(post_id): PathParam<i32>,
    QueryParams(page): QueryParams<PageParams>,
) -> Result<Response, ApiError> {
    let limit = page.limit()?;
    let comments = state
        .db
        .comments()
        .for_post(post_id, page.after, limit)
        .await?;
    if comments.items.is_empty() {
        // A post without (more) comments, or no post at all: only the
        // second is a 404, as `GET /posts/{id}` says. One lookup, and only
        // for an empty page.
        state.db.posts().get_by_id(post_id).await?;
    }
    Ok(Json(comments).into_response())
}
