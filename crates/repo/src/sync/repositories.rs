//! The sync repositories: the shared method list (`crate::repositories`),
//! each call run on a connection from the executor.

use keel_models::{
    Comment, NewComment, NewPost, NewUser, Post, PostChangeset, User, UserChangeset,
};

use super::{Executor, run};
use crate::loading::{PostWithAuthorAndComments, UserWithPosts, UserWithPostsAndComments};
use crate::repositories::{impl_repositories, with_repository_list};
use crate::requests::{self, CommentsQuery, MAX_PAGE_SIZE, Page, TableSizes, found};
use crate::scope::check_current;
use crate::{QueryScope, RepoError, validate};

/// Runs one operation on a connection from the executor.
macro_rules! call {
    ($self:ident, |$c:ident| $call:expr) => {
        check_current(run($self.executor, |$c| $call.map_err(RepoError::from)))
    };
}

/// `call!` for a write whose foreign keys are `$fields`.
macro_rules! call_write {
    ($self:ident, $fields:expr, |$c:ident| $call:expr) => {
        run($self.executor, |$c| {
            $call.map_err(|e| RepoError::from_write(e, $fields))
        })
    };
}

/// Sync mode loads on its own connection: `COPY` is already there.
macro_rules! load_with_copy {
    ($self:ident, $rows:ident, $repository:ident) => {};
}

/// `call!` for a paging call: repeats are intended, never an N+1.
macro_rules! call_paging {
    ($self:ident, |$c:ident| $call:expr) => {
        QueryScope::repeats_intended(|| call!($self, |$c| $call))
    };
}

/// Users: lookups, writes, pages, search and eager loads.
pub struct UserRepository<'a> {
    executor: &'a dyn Executor,
}

/// Posts: writes, lookups, the join by author email, and a post's comments.
pub struct PostRepository<'a> {
    executor: &'a dyn Executor,
}

/// Comments: writes, a post's comments page by page, an author's comments.
pub struct CommentRepository<'a> {
    executor: &'a dyn Executor,
}

impl<'a> UserRepository<'a> {
    pub(crate) fn new(executor: &'a dyn Executor) -> Self {
        Self { executor }
    }
}

impl<'a> PostRepository<'a> {
    pub(crate) fn new(executor: &'a dyn Executor) -> Self {
        Self { executor }
    }

    /// A post's comments as a query to refine (author, cursor, order,
    /// limit) before [`PostRepository::load_comments`] runs it.
    pub fn comments_query(&self, post_id: i32) -> CommentsQuery {
        CommentsQuery::new(post_id)
    }
}

impl<'a> CommentRepository<'a> {
    pub(crate) fn new(executor: &'a dyn Executor) -> Self {
        Self { executor }
    }
}

with_repository_list!(impl_repositories!(sync));
