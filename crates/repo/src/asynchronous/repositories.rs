//! The async repositories: validate, run one operation on the executor's
//! connection (awaited), and turn the outcome into a typed result. The
//! checks and result shapes are the sync repositories' own helpers.

use keel_models::{
    Comment, NewComment, NewPost, NewUser, Post, PostChangeset, User, UserChangeset,
};

use super::AsyncConn;
use super::{AsyncExecutor, ConnGuard, on_conn};
use crate::loading::{PostWithAuthorAndComments, UserWithPosts, UserWithPostsAndComments};
use crate::ops::{AsyncOps, InsertUsers as _};
use crate::requests::{self, CommentsQuery, MAX_PAGE_SIZE, Page, found};
use crate::{RepoError, validate};

/// Runs one `AsyncOps` call on a connection from the executor.
macro_rules! call {
    ($self:ident, |$c:ident| $call:expr) => {{
        let mut guard = $self.executor.checkout().await?;
        on_conn!(guard.conn(), |$c| $call)
    }};
}

/// Users: lookups, writes, pages, search and eager loads.
pub struct UserRepository<'a, E: AsyncExecutor> {
    executor: &'a E,
}

impl<'a, E: AsyncExecutor> UserRepository<'a, E> {
    pub(crate) fn new(executor: &'a E) -> Self {
        Self { executor }
    }

    /// The user with this id. 1 statement.
    pub async fn get_by_id(&self, id: i32) -> Result<User, RepoError> {
        validate::id("id", id)?;
        let user = call!(self, |c| c.user_by_id(id))?;
        found(user, "user", || format!("id {id}"))
    }

    /// The user with this email. 1 statement, on the unique index.
    pub async fn get_by_email(&self, email: &str) -> Result<User, RepoError> {
        validate::email(email)?;
        let user = call!(self, |c| c.user_by_email(email))?;
        found(user, "user", || format!("email {email}"))
    }

    /// Inserts a user and returns it as stored. A taken email is `Conflict`.
    pub async fn create(&self, user: &NewUser) -> Result<User, RepoError> {
        validate::new_user(user)?;
        Ok(call!(self, |c| c.insert_user(user))?)
    }

    /// Inserts many users in one transaction: one multi-row `INSERT` per
    /// chunk that fits the backend's bind-parameter limit. All or nothing.
    pub async fn create_many(&self, users: &[NewUser]) -> Result<Vec<User>, RepoError> {
        users.iter().try_for_each(validate::new_user)?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut guard = self.executor.checkout().await?;
        let inserted = match guard.conn() {
            AsyncConn::Postgres(c) => crate::ops::insert_users_async_pg(c, users).await,
            // diesel-async cannot batch-insert on SQLite: the whole bulk
            // insert runs on the blocking pool in one hop.
            AsyncConn::Sqlite(c) => {
                let users = users.to_vec();
                c.spawn_blocking(move |c| c.insert_users(&users)).await
            }
        };
        Ok(inserted?)
    }

    /// Applies `changes` and returns the user as stored. No change at all
    /// is not an error: it returns the user unchanged.
    pub async fn update(&self, id: i32, changes: &UserChangeset) -> Result<User, RepoError> {
        validate::id("id", id)?;
        validate::user_changeset(changes)?;
        let user = if *changes == UserChangeset::default() {
            call!(self, |c| c.user_by_id(id))?
        } else {
            call!(self, |c| c.update_user(id, changes))?
        };
        found(user, "user", || format!("id {id}"))
    }

    /// Deletes a user; the database deletes their posts, the comments on
    /// those posts and the user's own comments with them (ON DELETE CASCADE).
    pub async fn delete(&self, id: i32) -> Result<(), RepoError> {
        validate::id("id", id)?;
        let rows = call!(self, |c| c.delete_user(id))?;
        requests::deleted(rows, "user", id)
    }

    /// The first `limit` active users, by id. 1 statement.
    pub async fn active_users(&self, limit: i64) -> Result<Vec<User>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        Ok(call!(self, |c| c.active_users(limit))?)
    }

    /// A keyset page of users with id above `after` (`None`: from the
    /// start), ascending. Inserts between pages never make a page skip or
    /// repeat a row. 1 statement.
    pub async fn page(&self, after: Option<i32>, limit: i64) -> Result<Page<User>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        let users = call!(self, |c| c.users_after(after.unwrap_or(0), limit))?;
        Ok(Page::new(users, limit, |u| u.id))
    }

    /// Users with this last name whose first name starts with
    /// `first_name_prefix` (any, if `None`), in name order. Served by the
    /// composite index on (last_name, first_name). 1 statement.
    pub async fn search_by_name(
        &self,
        last_name: &str,
        first_name_prefix: Option<&str>,
    ) -> Result<Vec<User>, RepoError> {
        validate::required_text("last_name", last_name, Some(50))?;
        let pattern = requests::prefix_pattern(first_name_prefix);
        Ok(call!(self, |c| c.users_by_name(last_name, &pattern))?)
    }

    /// The first `limit` active users with their posts: 2 statements,
    /// whatever the number of users.
    pub async fn users_with_posts(&self, limit: i64) -> Result<Vec<UserWithPosts>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        Ok(call!(self, |c| c.users_with_posts(limit))?)
    }

    /// The first `limit` active users, their posts and the posts' comments:
    /// 3 statements, whatever the number of rows.
    pub async fn users_with_posts_and_comments(
        &self,
        limit: i64,
    ) -> Result<Vec<UserWithPostsAndComments>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        Ok(call!(self, |c| c.users_with_posts_and_comments(limit))?)
    }
}

/// Posts: writes, lookups, the join by author email, and a post's comments.
pub struct PostRepository<'a, E: AsyncExecutor> {
    executor: &'a E,
}

impl<'a, E: AsyncExecutor> PostRepository<'a, E> {
    pub(crate) fn new(executor: &'a E) -> Self {
        Self { executor }
    }

    /// Inserts a post; an author that does not exist is `RelatedMissing`.
    pub async fn create(&self, post: &NewPost) -> Result<Post, RepoError> {
        validate::new_post(post)?;
        call!(self, |c| c.insert_post(post)).map_err(|e| RepoError::from_write(e, "author_id"))
    }

    /// The post with this id. 1 statement.
    pub async fn get_by_id(&self, id: i32) -> Result<Post, RepoError> {
        validate::id("id", id)?;
        let post = call!(self, |c| c.post_by_id(id))?;
        found(post, "post", || format!("id {id}"))
    }

    /// A post and its author in 1 statement (inner join).
    pub async fn get_with_author(&self, id: i32) -> Result<(Post, User), RepoError> {
        validate::id("id", id)?;
        let row = call!(self, |c| c.post_with_author(id))?;
        found(row, "post", || format!("id {id}"))
    }

    /// A post with its author (joined) and its comments: 2 statements.
    pub async fn post_with_author_and_comments(
        &self,
        id: i32,
    ) -> Result<PostWithAuthorAndComments, RepoError> {
        validate::id("id", id)?;
        let post = call!(self, |c| c.post_with_author_and_comments(id))?;
        found(post, "post", || format!("id {id}"))
    }

    /// Applies `changes` and returns the post as stored.
    pub async fn update(&self, id: i32, changes: &PostChangeset) -> Result<Post, RepoError> {
        validate::id("id", id)?;
        validate::post_changeset(changes)?;
        let post = if *changes == PostChangeset::default() {
            call!(self, |c| c.post_by_id(id))?
        } else {
            call!(self, |c| c.update_post(id, changes))?
        };
        found(post, "post", || format!("id {id}"))
    }

    /// An author's posts, oldest first. 1 statement.
    pub async fn by_author(&self, author_id: i32) -> Result<Vec<Post>, RepoError> {
        validate::id("author_id", author_id)?;
        Ok(call!(self, |c| c.posts_by_author(author_id))?)
    }

    /// The posts of the user with this email: posts joined to users. 1 statement.
    pub async fn by_author_email(&self, email: &str) -> Result<Vec<Post>, RepoError> {
        validate::email(email)?;
        Ok(call!(self, |c| c.posts_by_author_email(email))?)
    }

    /// A post's comments as a query to refine (author, cursor, order,
    /// limit) before [`PostRepository::load_comments`] runs it.
    pub fn comments_query(&self, post_id: i32) -> CommentsQuery {
        CommentsQuery::new(post_id)
    }

    /// Runs a [`CommentsQuery`]. 1 statement.
    pub async fn load_comments(&self, query: &CommentsQuery) -> Result<Vec<Comment>, RepoError> {
        validate::id("post_id", query.post_id)?;
        if let Some(limit) = query.limit {
            validate::limit(limit, MAX_PAGE_SIZE)?;
        }
        Ok(call!(self, |c| c.load_comments(query))?)
    }

    /// Deletes a post and, by cascade, its comments.
    pub async fn delete(&self, id: i32) -> Result<(), RepoError> {
        validate::id("id", id)?;
        let rows = call!(self, |c| c.delete_post(id))?;
        requests::deleted(rows, "post", id)
    }
}

/// Comments: writes, a post's comments page by page, an author's comments.
pub struct CommentRepository<'a, E: AsyncExecutor> {
    executor: &'a E,
}

impl<'a, E: AsyncExecutor> CommentRepository<'a, E> {
    pub(crate) fn new(executor: &'a E) -> Self {
        Self { executor }
    }

    /// Inserts a comment; a post or author that does not exist is `RelatedMissing`.
    pub async fn create(&self, comment: &NewComment) -> Result<Comment, RepoError> {
        validate::new_comment(comment)?;
        call!(self, |c| c.insert_comment(comment))
            .map_err(|e| RepoError::from_write(e, "post_id or author_id"))
    }

    /// The comment with this id. 1 statement.
    pub async fn get_by_id(&self, id: i32) -> Result<Comment, RepoError> {
        validate::id("id", id)?;
        let comment = call!(self, |c| c.comment_by_id(id))?;
        found(comment, "comment", || format!("id {id}"))
    }

    /// A keyset page of a post's comments, oldest first. 1 statement.
    pub async fn for_post(
        &self,
        post_id: i32,
        after: Option<i32>,
        limit: i64,
    ) -> Result<Page<Comment>, RepoError> {
        validate::id("post_id", post_id)?;
        validate::limit(limit, MAX_PAGE_SIZE)?;
        let comments = call!(self, |c| c.comments_for_post(
            post_id,
            after.unwrap_or(0),
            limit
        ))?;
        Ok(Page::new(comments, limit, |c| c.id))
    }

    /// Every comment a user wrote, oldest first. 1 statement.
    pub async fn by_author(&self, author_id: i32) -> Result<Vec<Comment>, RepoError> {
        validate::id("author_id", author_id)?;
        Ok(call!(self, |c| c.comments_by_author(author_id))?)
    }

    /// Deletes a comment.
    pub async fn delete(&self, id: i32) -> Result<(), RepoError> {
        validate::id("id", id)?;
        let rows = call!(self, |c| c.delete_comment(id))?;
        requests::deleted(rows, "comment", id)
    }
}
