//! The repositories' methods, written once for both modes: each validates
//! its input (before any SQL), runs one operation of [`crate::ops`] through
//! `call!`, and shapes the result. `sync::repositories` and
//! `asynchronous::repositories` define `call!` for their mode (a plain call,
//! or an awaited one) and expand this list into their repository types.
//! `load_with_copy!` is async mode's detour for loads: where the executor
//! has a blocking lane, the same method runs there in sync mode.

/// Hands the method list to `$callback`.
macro_rules! with_repository_list {
    ($callback:ident!($($args:tt)*)) => {
        $callback! { ($($args)*)
        UserRepository {
            /// The user with this id. 1 statement.
            pub fn get_by_id(&self, id: i32) -> User {
                validate::id("id", id)?;
                let user = call!(self, |c| c.user_by_id(id))?;
                found(user, "user", || format!("id {id}"))
            }

            /// The user with this email. 1 statement, on the unique index.
            pub fn get_by_email(&self, email: &str) -> User {
                validate::email(email)?;
                let user = call!(self, |c| c.user_by_email(email))?;
                found(user, "user", || format!("email {email}"))
            }

            /// Inserts a user and returns it as stored. A taken email is `Conflict`.
            pub fn create(&self, user: &NewUser) -> User {
                validate::new_user(user)?;
                call!(self, |c| c.insert_user(user))
            }

            /// Inserts many users in one transaction: one multi-row `INSERT` per
            /// chunk that fits the backend's bind-parameter limit. All or nothing.
            pub fn create_many(&self, users: &[NewUser]) -> Vec<User> {
                users.iter().try_for_each(validate::new_user)?;
                if users.is_empty() {
                    return Ok(Vec::new());
                }
                call!(self, |c| c.insert_users(users))
            }

            /// Loads many users without reading them back (no ids, no
            /// `RETURNING`), in one transaction; returns how many rows went
            /// in. The fast path for bulk loads. On PostgreSQL it is one
            /// `COPY … FROM STDIN`: in sync mode, and in async mode on the
            /// pool, which runs it on a blocking thread (needs the `sync`
            /// feature). In an async transaction, and on SQLite, it sends
            /// multi-row `INSERT`s.
            pub fn insert_many(&self, users: &[NewUser]) -> usize {
                if users.is_empty() {
                    return Ok(0);
                }
                load_with_copy!(self, users, users); // validates there
                users.iter().try_for_each(validate::new_user)?;
                call!(self, |c| c.bulk_load_users(users))
            }

            /// Applies `changes` and returns the user as stored. No change at all
            /// is not an error: it returns the user unchanged.
            pub fn update(&self, id: i32, changes: &UserChangeset) -> User {
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
            pub fn delete(&self, id: i32) -> () {
                validate::id("id", id)?;
                let rows = call!(self, |c| c.delete_user(id))?;
                requests::deleted(rows, "user", id)
            }

            /// The first `limit` active users, by id. 1 statement.
            pub fn active_users(&self, limit: i64) -> Vec<User> {
                validate::limit(limit, MAX_PAGE_SIZE)?;
                call!(self, |c| c.active_users(limit))
            }

            /// A keyset page of users with id above `after` (`None`: from the
            /// start), ascending. Inserts between pages never make a page skip or
            /// repeat a row. 1 statement.
            pub fn page(&self, after: Option<i32>, limit: i64) -> Page<User> {
                validate::limit(limit, MAX_PAGE_SIZE)?;
                let users = call_paging!(self, |c| c.users_after(after.unwrap_or(0), limit))?;
                Ok(Page::new(users, limit, |u| u.id))
            }

            /// Users with this last name whose first name starts with
            /// `first_name_prefix` (any, if `None`), in name order. Served by the
            /// composite index on (last_name, first_name). 1 statement.
            pub fn search_by_name(
                &self,
                last_name: &str,
                first_name_prefix: Option<&str>,
            ) -> Vec<User> {
                validate::required_text("last_name", last_name, Some(50))?;
                let pattern = requests::prefix_pattern(first_name_prefix);
                call!(self, |c| c.users_by_name(last_name, &pattern))
            }

            /// One user with their posts: 2 statements.
            pub fn get_with_posts(&self, id: i32) -> UserWithPosts {
                validate::id("id", id)?;
                let user = call!(self, |c| c.user_with_posts(id))?;
                found(user, "user", || format!("id {id}"))
            }

            /// One user with their posts and the posts' comments: 3
            /// statements whatever the number of posts (2 when there are none).
            pub fn get_with_posts_and_comments(&self, id: i32) -> UserWithPostsAndComments {
                validate::id("id", id)?;
                let user = call!(self, |c| c.user_with_posts_and_comments(id))?;
                found(user, "user", || format!("id {id}"))
            }

            /// Rows and highest id of every table: 3 statements.
            pub fn table_sizes(&self) -> TableSizes {
                call!(self, |c| c.table_sizes())
            }

            /// Moves every table's id sequence past its highest id, so the
            /// next insert gets `MAX(id) + 1`: for loads that must resume
            /// with ids following on. On PostgreSQL it first locks the tables
            /// (`SHARE ROW EXCLUSIVE`), so it waits for transactions still
            /// writing them, a dead client's last commit included; counts read
            /// after it are settled. 2 statements on PostgreSQL, none on SQLite.
            pub fn restart_id_sequences(&self) -> () {
                call!(self, |c| c.restart_id_sequences())
            }

            /// The first `limit` active users with their posts: 2 statements,
            /// whatever the number of users.
            pub fn users_with_posts(&self, limit: i64) -> Vec<UserWithPosts> {
                validate::limit(limit, MAX_PAGE_SIZE)?;
                call!(self, |c| c.users_with_posts(limit))
            }

            /// The first `limit` active users, their posts and the posts' comments:
            /// 3 statements, whatever the number of rows.
            pub fn users_with_posts_and_comments(
                &self,
                limit: i64,
            ) -> Vec<UserWithPostsAndComments> {
                validate::limit(limit, MAX_PAGE_SIZE)?;
                call!(self, |c| c.users_with_posts_and_comments(limit))
            }
        }

        PostRepository {
            /// Inserts a post; an author that does not exist is `RelatedMissing`.
            pub fn create(&self, post: &NewPost) -> Post {
                validate::new_post(post)?;
                call_write!(self, "author_id", |c| c.insert_post(post))
            }

            /// Inserts many posts in one transaction, one multi-row `INSERT`
            /// per chunk that fits the bind limit. All or nothing.
            pub fn create_many(&self, posts: &[NewPost]) -> Vec<Post> {
                posts.iter().try_for_each(validate::new_post)?;
                if posts.is_empty() {
                    return Ok(Vec::new());
                }
                call_write!(self, "author_id", |c| c.insert_posts(posts))
            }

            /// Loads many posts without reading them back; see
            /// `UserRepository::insert_many`.
            pub fn insert_many(&self, posts: &[NewPost]) -> usize {
                if posts.is_empty() {
                    return Ok(0);
                }
                load_with_copy!(self, posts, posts); // validates there
                posts.iter().try_for_each(validate::new_post)?;
                call_write!(self, "author_id", |c| c.bulk_load_posts(posts))
            }

            /// The post with this id. 1 statement.
            pub fn get_by_id(&self, id: i32) -> Post {
                validate::id("id", id)?;
                let post = call!(self, |c| c.post_by_id(id))?;
                found(post, "post", || format!("id {id}"))
            }

            /// A post and its author in 1 statement (inner join).
            pub fn get_with_author(&self, id: i32) -> (Post, User) {
                validate::id("id", id)?;
                let row = call!(self, |c| c.post_with_author(id))?;
                found(row, "post", || format!("id {id}"))
            }

            /// A post with its author (joined) and its comments: 2 statements.
            pub fn post_with_author_and_comments(
                &self,
                id: i32,
            ) -> PostWithAuthorAndComments {
                validate::id("id", id)?;
                let post = call!(self, |c| c.post_with_author_and_comments(id))?;
                found(post, "post", || format!("id {id}"))
            }

            /// Applies `changes` and returns the post as stored.
            pub fn update(&self, id: i32, changes: &PostChangeset) -> Post {
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
            pub fn by_author(&self, author_id: i32) -> Vec<Post> {
                validate::id("author_id", author_id)?;
                call!(self, |c| c.posts_by_author(author_id))
            }

            /// The posts of the user with this email: posts joined to users. 1 statement.
            pub fn by_author_email(&self, email: &str) -> Vec<Post> {
                validate::email(email)?;
                call!(self, |c| c.posts_by_author_email(email))
            }

            /// Runs a [`CommentsQuery`]. 1 statement.
            pub fn load_comments(&self, query: &CommentsQuery) -> Vec<Comment> {
                validate::id("post_id", query.post_id)?;
                if let Some(limit) = query.limit {
                    validate::limit(limit, MAX_PAGE_SIZE)?;
                }
                call!(self, |c| c.load_comments(query))
            }

            /// Deletes a post and, by cascade, its comments.
            pub fn delete(&self, id: i32) -> () {
                validate::id("id", id)?;
                let rows = call!(self, |c| c.delete_post(id))?;
                requests::deleted(rows, "post", id)
            }
        }

        CommentRepository {
            /// Inserts a comment; a post or author that does not exist is `RelatedMissing`.
            pub fn create(&self, comment: &NewComment) -> Comment {
                validate::new_comment(comment)?;
                call_write!(self, "post_id or author_id", |c| c.insert_comment(comment))
            }

            /// Inserts many comments in one transaction, one multi-row
            /// `INSERT` per chunk that fits the bind limit. All or nothing.
            pub fn create_many(&self, comments: &[NewComment]) -> Vec<Comment> {
                comments.iter().try_for_each(validate::new_comment)?;
                if comments.is_empty() {
                    return Ok(Vec::new());
                }
                call_write!(self, "post_id or author_id", |c| c.insert_comments(comments))
            }

            /// Loads many comments without reading them back; see
            /// `UserRepository::insert_many`.
            pub fn insert_many(&self, comments: &[NewComment]) -> usize {
                if comments.is_empty() {
                    return Ok(0);
                }
                load_with_copy!(self, comments, comments); // validates there
                comments.iter().try_for_each(validate::new_comment)?;
                call_write!(self, "post_id or author_id", |c| c.bulk_load_comments(comments))
            }

            /// The comment with this id. 1 statement.
            pub fn get_by_id(&self, id: i32) -> Comment {
                validate::id("id", id)?;
                let comment = call!(self, |c| c.comment_by_id(id))?;
                found(comment, "comment", || format!("id {id}"))
            }

            /// A keyset page of a post's comments, oldest first. 1 statement.
            pub fn for_post(
                &self,
                post_id: i32,
                after: Option<i32>,
                limit: i64,
            ) -> Page<Comment> {
                validate::id("post_id", post_id)?;
                validate::limit(limit, MAX_PAGE_SIZE)?;
                let comments = call_paging!(self, |c| c.comments_for_post(post_id, after.unwrap_or(0), limit))?;
                Ok(Page::new(comments, limit, |c| c.id))
            }

            /// Every comment a user wrote, oldest first. 1 statement.
            pub fn by_author(&self, author_id: i32) -> Vec<Comment> {
                validate::id("author_id", author_id)?;
                call!(self, |c| c.comments_by_author(author_id))
            }

            /// Deletes a comment.
            pub fn delete(&self, id: i32) -> () {
                validate::id("id", id)?;
                let rows = call!(self, |c| c.delete_comment(id))?;
                requests::deleted(rows, "comment", id)
            }
        }
        }
    };
}
pub(crate) use with_repository_list;

/// Expands the list into `impl` blocks: `(sync)` as plain methods on
/// `Repo<'a>`, `(async)` as async methods on `Repo<'a, E>`.
macro_rules! impl_repositories {
    ((sync) $( $repo:ident { $(
        $(#[$meta:meta])* pub fn $name:ident(&$this:ident $(, $arg:ident: $arg_ty:ty)* $(,)?) -> $ret:ty $body:block
    )* } )*) => {
        $( impl $repo<'_> { $(
            $(#[$meta])* pub fn $name(&$this $(, $arg: $arg_ty)*) -> Result<$ret, RepoError> $body
        )* } )*
    };
    ((async) $( $repo:ident { $(
        $(#[$meta:meta])* pub fn $name:ident(&$this:ident $(, $arg:ident: $arg_ty:ty)* $(,)?) -> $ret:ty $body:block
    )* } )*) => {
        $( impl<E: AsyncExecutor> $repo<'_, E> { $(
            $(#[$meta])* pub async fn $name(&$this $(, $arg: $arg_ty)*) -> Result<$ret, RepoError> $body
        )* } )*
    };
}
pub(crate) use impl_repositories;
