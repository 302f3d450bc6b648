//! The sync repositories: validate, run one blocking operation on the
//! executor's connection, and turn the outcome into a typed result.

use keel_models::{
    Comment, NewComment, NewPost, NewUser, Post, PostChangeset, User, UserChangeset,
};

use super::{Executor, run};
use crate::loading::{PostWithAuthorAndComments, UserWithPosts, UserWithPostsAndComments};
use crate::requests::{self, CommentsQuery, MAX_PAGE_SIZE, Page, found};
use crate::{RepoError, validate};

/// Users: lookups, writes, pages, search and eager loads.
pub struct UserRepository<'a> {
    executor: &'a dyn Executor,
}

impl<'a> UserRepository<'a> {
    pub(crate) fn new(executor: &'a dyn Executor) -> Self {
        Self { executor }
    }

    /// The user with this id. 1 statement.
    pub fn get_by_id(&self, id: i32) -> Result<User, RepoError> {
        validate::id("id", id)?;
        let user = run(self.executor, |c| Ok(c.user_by_id(id)?))?;
        found(user, "user", || format!("id {id}"))
    }

    /// The user with this email. 1 statement, on the unique index.
    pub fn get_by_email(&self, email: &str) -> Result<User, RepoError> {
        validate::email(email)?;
        let user = run(self.executor, |c| Ok(c.user_by_email(email)?))?;
        found(user, "user", || format!("email {email}"))
    }

    /// Inserts a user and returns it as stored. A taken email is `Conflict`.
    pub fn create(&self, user: &NewUser) -> Result<User, RepoError> {
        validate::new_user(user)?;
        run(self.executor, |c| Ok(c.insert_user(user)?))
    }

    /// Inserts many users in one transaction: one multi-row `INSERT` per
    /// chunk that fits the backend's bind-parameter limit. All or nothing.
    pub fn create_many(&self, users: &[NewUser]) -> Result<Vec<User>, RepoError> {
        users.iter().try_for_each(validate::new_user)?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        run(self.executor, |c| Ok(c.insert_users(users)?))
    }

    /// Applies `changes` and returns the user as stored. No change at all
    /// is not an error: it returns the user unchanged.
    pub fn update(&self, id: i32, changes: &UserChangeset) -> Result<User, RepoError> {
        validate::id("id", id)?;
        validate::user_changeset(changes)?;
        let user = if *changes == UserChangeset::default() {
            run(self.executor, |c| Ok(c.user_by_id(id)?))?
        } else {
            run(self.executor, |c| Ok(c.update_user(id, changes)?))?
        };
        found(user, "user", || format!("id {id}"))
    }

    /// Deletes a user; the database deletes their posts, the comments on
    /// those posts and the user's own comments with them (ON DELETE CASCADE).
    pub fn delete(&self, id: i32) -> Result<(), RepoError> {
        validate::id("id", id)?;
        let rows = run(self.executor, |c| Ok(c.delete_user(id)?))?;
        requests::deleted(rows, "user", id)
    }

    /// The first `limit` active users, by id. 1 statement.
    pub fn active_users(&self, limit: i64) -> Result<Vec<User>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        run(self.executor, |c| Ok(c.active_users(limit)?))
    }

    /// A keyset page of users with id above `after` (`None`: from the
    /// start), ascending. Inserts between pages never make a page skip or
    /// repeat a row. 1 statement.
    pub fn page(&self, after: Option<i32>, limit: i64) -> Result<Page<User>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        let users = run(self.executor, |c| {
            Ok(c.users_after(after.unwrap_or(0), limit)?)
        })?;
        Ok(Page::new(users, limit, |u| u.id))
    }

    /// Users with this last name whose first name starts with
    /// `first_name_prefix` (any, if `None`), in name order. Served by the
    /// composite index on (last_name, first_name). 1 statement.
    pub fn search_by_name(
        &self,
        last_name: &str,
        first_name_prefix: Option<&str>,
    ) -> Result<Vec<User>, RepoError> {
        validate::required_text("last_name", last_name, Some(50))?;
        let pattern = requests::prefix_pattern(first_name_prefix);
        run(self.executor, |c| Ok(c.users_by_name(last_name, &pattern)?))
    }

    /// The first `limit` active users with their posts: 2 statements,
    /// whatever the number of users.
    pub fn users_with_posts(&self, limit: i64) -> Result<Vec<UserWithPosts>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        run(self.executor, |c| Ok(c.users_with_posts(limit)?))
    }

    /// The first `limit` active users, their posts and the posts' comments:
    /// 3 statements, whatever the number of rows.
    pub fn users_with_posts_and_comments(
        &self,
        limit: i64,
    ) -> Result<Vec<UserWithPostsAndComments>, RepoError> {
        validate::limit(limit, MAX_PAGE_SIZE)?;
        run(self.executor, |c| {
            Ok(c.users_with_posts_and_comments(limit)?)
        })
    }
}

/// Posts: writes, lookups, the join by author email, and a post's comments.
pub struct PostRepository<'a> {
    executor: &'a dyn Executor,
}

impl<'a> PostRepository<'a> {
    pub(crate) fn new(executor: &'a dyn Executor) -> Self {
        Self { executor }
    }

    /// Inserts a post; an author that does not exist is `RelatedMissing`.
    pub fn create(&self, post: &NewPost) -> Result<Post, RepoError> {
        validate::new_post(post)?;
        run(self.executor, |c| {
            c.insert_post(post)
                .map_err(|e| RepoError::from_write(e, "author_id"))
        })
    }

    /// The post with this id. 1 statement.
    pub fn get_by_id(&self, id: i32) -> Result<Post, RepoError> {
        validate::id("id", id)?;
        let post = run(self.executor, |c| Ok(c.post_by_id(id)?))?;
        found(post, "post", || format!("id {id}"))
    }

    /// A post and its author in 1 statement (inner join).
    pub fn get_with_author(&self, id: i32) -> Result<(Post, User), RepoError> {
        validate::id("id", id)?;
        let row = run(self.executor, |c| Ok(c.post_with_author(id)?))?;
        found(row, "post", || format!("id {id}"))
    }

    /// A post with its author (joined) and its comments: 2 statements.
    pub fn post_with_author_and_comments(
        &self,
        id: i32,
    ) -> Result<PostWithAuthorAndComments, RepoError> {
        validate::id("id", id)?;
        let post = run(self.executor, |c| Ok(c.post_with_author_and_comments(id)?))?;
        found(post, "post", || format!("id {id}"))
    }

    /// Applies `changes` and returns the post as stored.
    pub fn update(&self, id: i32, changes: &PostChangeset) -> Result<Post, RepoError> {
        validate::id("id", id)?;
        validate::post_changeset(changes)?;
        let post = if *changes == PostChangeset::default() {
            run(self.executor, |c| Ok(c.post_by_id(id)?))?
        } else {
            run(self.executor, |c| Ok(c.update_post(id, changes)?))?
        };
        found(post, "post", || format!("id {id}"))
    }

    /// An author's posts, oldest first. 1 statement.
    pub fn by_author(&self, author_id: i32) -> Result<Vec<Post>, RepoError> {
        validate::id("author_id", author_id)?;
        run(self.executor, |c| Ok(c.posts_by_author(author_id)?))
    }

    /// The posts of the user with this email: posts joined to users. 1 statement.
    pub fn by_author_email(&self, email: &str) -> Result<Vec<Post>, RepoError> {
        validate::email(email)?;
        run(self.executor, |c| Ok(c.posts_by_author_email(email)?))
    }

    /// A post's comments as a query to refine (author, cursor, order,
    /// limit) before [`PostRepository::load_comments`] runs it.
    pub fn comments_query(&self, post_id: i32) -> CommentsQuery {
        CommentsQuery::new(post_id)
    }

    /// Runs a [`CommentsQuery`]. 1 statement.
    pub fn load_comments(&self, query: &CommentsQuery) -> Result<Vec<Comment>, RepoError> {
        validate::id("post_id", query.post_id)?;
        if let Some(limit) = query.limit {
            validate::limit(limit, MAX_PAGE_SIZE)?;
        }
        run(self.executor, |c| Ok(c.load_comments(query)?))
    }

    /// Deletes a post and, by cascade, its comments.
    pub fn delete(&self, id: i32) -> Result<(), RepoError> {
        validate::id("id", id)?;
        let rows = run(self.executor, |c| Ok(c.delete_post(id)?))?;
        requests::deleted(rows, "post", id)
    }
}

/// Comments: writes, a post's comments page by page, an author's comments.
pub struct CommentRepository<'a> {
    executor: &'a dyn Executor,
}

impl<'a> CommentRepository<'a> {
    pub(crate) fn new(executor: &'a dyn Executor) -> Self {
        Self { executor }
    }

    /// Inserts a comment; a post or author that does not exist is `RelatedMissing`.
    pub fn create(&self, comment: &NewComment) -> Result<Comment, RepoError> {
        validate::new_comment(comment)?;
        run(self.executor, |c| {
            c.insert_comment(comment)
                .map_err(|e| RepoError::from_write(e, "post_id or author_id"))
        })
    }

    /// The comment with this id. 1 statement.
    pub fn get_by_id(&self, id: i32) -> Result<Comment, RepoError> {
        validate::id("id", id)?;
        let comment = run(self.executor, |c| Ok(c.comment_by_id(id)?))?;
        found(comment, "comment", || format!("id {id}"))
    }

    /// A keyset page of a post's comments, oldest first. 1 statement.
    pub fn for_post(
        &self,
        post_id: i32,
        after: Option<i32>,
        limit: i64,
    ) -> Result<Page<Comment>, RepoError> {
        validate::id("post_id", post_id)?;
        validate::limit(limit, MAX_PAGE_SIZE)?;
        let comments = run(self.executor, |c| {
            Ok(c.comments_for_post(post_id, after.unwrap_or(0), limit)?)
        })?;
        Ok(Page::new(comments, limit, |c| c.id))
    }

    /// Every comment a user wrote, oldest first. 1 statement.
    pub fn by_author(&self, author_id: i32) -> Result<Vec<Comment>, RepoError> {
        validate::id("author_id", author_id)?;
        run(self.executor, |c| Ok(c.comments_by_author(author_id)?))
    }

    /// Deletes a comment.
    pub fn delete(&self, id: i32) -> Result<(), RepoError> {
        validate::id("id", id)?;
        let rows = run(self.executor, |c| Ok(c.delete_comment(id)?))?;
        requests::deleted(rows, "comment", id)
    }
}
