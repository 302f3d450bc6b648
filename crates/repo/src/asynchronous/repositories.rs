//! The async repositories: the shared method list (`crate::repositories`),
//! each call awaited on a connection from the executor.

use keel_models::{
    Comment, NewComment, NewPost, NewUser, Post, PostChangeset, User, UserChangeset,
};

use super::AsyncExecutor;
use crate::asynchronous::ConnGuard as _;
use crate::loading::{PostWithAuthorAndComments, UserWithPosts, UserWithPostsAndComments};
use crate::repositories::{impl_repositories, with_repository_list};
use crate::requests::{self, CommentsQuery, MAX_PAGE_SIZE, Page, TableSizes, found};
use crate::scope::check_current;
use crate::{QueryScope, RepoError, validate};

/// Runs one operation on a connection from the executor.
macro_rules! call {
    ($self:ident, |$c:ident| $call:expr) => {{
        let mut guard = $self.executor.checkout().await?;
        let mut $c = guard.conn();
        check_current($call.await.map_err(RepoError::from))
    }};
}

/// `call!` for a write whose foreign keys are `$fields`.
macro_rules! call_write {
    ($self:ident, $fields:expr, |$c:ident| $call:expr) => {{
        let mut guard = $self.executor.checkout().await?;
        let mut $c = guard.conn();
        check_current($call.await.map_err(|e| RepoError::from_write(e, $fields)))
    }};
}

/// On the pool, a load runs as the sync repository's, on the blocking lane
/// (`COPY` on PostgreSQL), which validates the rows itself: the caller
/// places this before its own validation, so each row is checked once.
/// `$rows` are copied for the blocking thread.
macro_rules! load_with_copy {
    ($self:ident, $rows:ident, $repository:ident) => {
        #[cfg(feature = "sync")]
        if let Some(lane) = $self.executor.copy_lane() {
            let rows = $rows.to_vec();
            return lane
                .run(move |db| db.$repository().insert_many(&rows))
                .await;
        }
    };
}

/// `call!` for a paging call: repeats are intended, never an N+1.
macro_rules! call_paging {
    ($self:ident, |$c:ident| $call:expr) => {
        QueryScope::repeats_intended_async(async { call!($self, |$c| $call) }).await
    };
}

/// Users: lookups, writes, pages, search and eager loads.
pub struct UserRepository<'a, E: AsyncExecutor> {
    executor: &'a E,
}

/// Posts: writes, lookups, the join by author email, and a post's comments.
pub struct PostRepository<'a, E: AsyncExecutor> {
    executor: &'a E,
}

/// Comments: writes, a post's comments page by page, an author's comments.
pub struct CommentRepository<'a, E: AsyncExecutor> {
    executor: &'a E,
}

impl<'a, E: AsyncExecutor> UserRepository<'a, E> {
    pub(crate) fn new(executor: &'a E) -> Self {
        Self { executor }
    }
}

impl<'a, E: AsyncExecutor> PostRepository<'a, E> {
    pub(crate) fn new(executor: &'a E) -> Self {
        Self { executor }
    }

    /// A post's comments as a query to refine (author, cursor, order,
    /// limit) before [`PostRepository::load_comments`] runs it.
    pub fn comments_query(&self, post_id: i32) -> CommentsQuery {
        CommentsQuery::new(post_id)
    }
}

impl<'a, E: AsyncExecutor> CommentRepository<'a, E> {
    pub(crate) fn new(executor: &'a E) -> Self {
        Self { executor }
    }
}

with_repository_list!(impl_repositories!(async));
