//! The endpoints: each handler parses its input, makes one repository call
//! (eager loads included) and returns JSON.

use keel_repo::prelude::{CommentsExt as _, PostsExt as _, TagsExt as _, UsersExt as _};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_models::{NewComment, NewPost, NewUser, UserChangeset};
use keel_repo::asynchronous::{AsyncDatabase, AsyncTransaction};
use keel_repo::tables::comments::MAX_THREAD_DEPTH;
use keel_repo::{RepoError, RetryPolicy};
use serde::Deserialize;

use super::error::{ApiError, JsonBody, PathParam, QueryParams, reject_nulls};
use super::json::Json;
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
        .route(
            "/posts/{id}/tags/{name}",
            axum::routing::put(tag_post).delete(untag_post),
        )
        .route("/tags", axum::routing::post(create_tag))
        .route("/tags/{name}/posts", get(posts_with_tag))
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
    let relations = include.relations(&["posts", "posts.comments", "posts.tags"])?;
    let comments = relations.iter().any(|r| r == "posts.comments");
    let tags = relations.iter().any(|r| r == "posts.tags");
    Ok(if comments && tags {
        Json(users.get_with_posts_comments_and_tags(id).await?).into_response()
    } else if tags {
        Json(users.get_with_posts_and_tags(id).await?).into_response()
    } else if comments {
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

/// `GET /posts/{id}`'s query: which relations to load, and how deep a
/// thread of replies goes (`comments.replies`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostParams {
    include: Option<String>,
    depth: Option<i32>,
}

/// A post, and each relation asked for under its own key: one statement
/// for the post (joined to its author when `author` is asked), one per
/// other relation, whatever the number of rows.
async fn get_post(
    State(state): State<AppState>,
    PathParam(id): PathParam<i32>,
    QueryParams(params): QueryParams<PostParams>,
) -> Result<Response, ApiError> {
    let include = IncludeParams {
        include: params.include,
    };
    let relations = include.relations(&["author", "comments", "comments.replies", "tags"])?;
    let asked = |name: &str| relations.iter().any(|r| r == name);
    if params.depth.is_some() && !asked("comments.replies") {
        return Err(ApiError::invalid(
            "depth",
            "depth is the depth of include=comments.replies",
        ));
    }
    if relations.is_empty() {
        return Ok(Json(state.db.posts().get_by_id(id).await?).into_response());
    }
    let mut body = serde_json::Map::new();
    if asked("author") {
        let (post, author) = state.db.posts().get_with_author(id).await?;
        body.insert("post".into(), json(post)?);
        body.insert("author".into(), json(author)?);
    } else {
        body.insert("post".into(), json(state.db.posts().get_by_id(id).await?)?);
    }
    if asked("comments.replies") {
        let depth = params.depth.unwrap_or(MAX_THREAD_DEPTH);
        let thread = state.db.comments().thread(id, depth).await?;
        body.insert("comments".into(), json(thread)?);
    } else if asked("comments") {
        let posts = state.db.posts();
        let comments = posts.load_comments(&posts.comments_query(id)).await?;
        body.insert("comments".into(), json(comments)?);
    }
    if asked("tags") {
        body.insert(
            "tags".into(),
            json(state.db.tags().tags_of_post(id).await?)?,
        );
    }
    Ok(Json(body).into_response())
}

/// A value as JSON; keel's rows always serialize, so a failure is a 500.
fn json(value: impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|error| {
        tracing::error!(%error, "a response did not serialize");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
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
    /// The comment this one replies to, on the same post.
    #[serde(default)]
    parent_id: Option<i32>,
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
    let parent_id = body.parent_id;
    Ok(created(
        retried(&state, move |tx: AsyncTransaction| {
            let comment = comment.clone();
            async move {
                match parent_id {
                    Some(parent_id) => tx.comments().reply(parent_id, &comment).await,
                    None => tx.comments().create(&comment).await,
                }
            }
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

/// A tag as a client sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    name: String,
}

async fn create_tag(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<TagBody>,
) -> Result<Response, ApiError> {
    let name = body.name;
    Ok(created(
        retried(&state, move |tx: AsyncTransaction| {
            let name = name.clone();
            async move { tx.tags().create(&name).await }
        })
        .await?,
    ))
}

/// A missing post in a tag link is the path's post: a 404, as for
/// `GET /posts/{id}`, not a 422 about a field the client never sent.
fn post_in_path(error: RepoError, post_id: i32) -> RepoError {
    match error {
        RepoError::RelatedMissing { .. } => RepoError::NotFound {
            entity: "post",
            key: format!("id {post_id}"),
        },
        other => other,
    }
}

/// Tags a post: 201 when the link is new, 200 when it was there already
/// (PUT is idempotent). The tag must exist (`POST /tags`).
async fn tag_post(
    State(state): State<AppState>,
    PathParam((post_id, name)): PathParam<(i32, String)>,
) -> Result<Response, ApiError> {
    let (tag, added) = retried(&state, move |tx: AsyncTransaction| {
        let name = name.clone();
        async move {
            tx.tags()
                .tag_post(post_id, &name)
                .await
                .map_err(|e| post_in_path(e, post_id))
        }
    })
    .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(tag)).into_response())
}

/// Removes a tag from a post: 204 whether or not the post carried it.
async fn untag_post(
    State(state): State<AppState>,
    PathParam((post_id, name)): PathParam<(i32, String)>,
) -> Result<StatusCode, ApiError> {
    retried(&state, move |tx: AsyncTransaction| {
        let name = name.clone();
        async move { tx.tags().untag_post(post_id, &name).await }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn posts_with_tag(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(page): QueryParams<PageParams>,
) -> Result<Response, ApiError> {
    let limit = page.limit()?;
    Ok(Json(
        state
            .db
            .tags()
            .posts_with_tag(&name, page.after, limit)
            .await?,
    )
    .into_response())
}
