//! The executors: every repository operation, written once and compiled for
//! each connection type in each mode.
//!
//! `define_ops!` takes the list of operations below and writes
//! - `BlockingOps`, implemented for `PgConnection` and `SqliteConnection`
//!   (sync mode), and
//! - `AsyncOps`, implemented for `AsyncPgConnection` and diesel-async's
//!   `SyncConnectionWrapper<SqliteConnection>` (async mode).
//!
//! Lookups by a unique key use `get_result`, not `first`: `first` binds
//! `LIMIT ?`, and SQLite re-prepares a statement with a bound LIMIT every
//! time it runs (most of a point lookup's cost there).
//!
//! In a body, `db!(…)` marks a statement sent to the database: it is the
//! plain call in sync mode and the call `.await`ed in async mode. Queries come
//! from [`crate::queries`] and rows are assembled by [`crate::loading`], so a
//! body says only which queries run in which order.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use keel_models::{
    Comment, NewComment, NewPost, NewUser, Post, PostChangeset, User, UserChangeset,
};
use keel_schema::{comments, posts, users};

use crate::bulk::BulkInsert;
use crate::loading::{self, PostWithAuthorAndComments, UserWithPosts, UserWithPostsAndComments};
use crate::queries;
use crate::requests::{CommentsQuery, TableSize, TableSizes};
#[cfg(feature = "async")]
use crate::scope::ScopeContext;

/// Bind parameters one SQLite statement may carry (the bundled library's
/// limit; PostgreSQL allows 65,535).
pub(crate) const SQLITE_MAX_BINDS: usize = 32_766;
pub(crate) const POSTGRES_MAX_BINDS: usize = 65_535;

/// The operations, in one list: each `with_op_list!(m!(args))` hands the
/// whole list to `m`, which declares or implements it.
macro_rules! with_op_list {
    ($callback:ident!($($args:tt)*)) => {
        $callback! { ($($args)*)
    fn user_by_id(&mut self, id: i32) -> Option<User> {
        db!(queries::user_by_id(id).get_result(self)).optional()
    }

    fn user_by_email(&mut self, email: &str) -> Option<User> {
        db!(queries::user_by_email(email).get_result(self)).optional()
    }

    fn insert_user(&mut self, user: &NewUser) -> User {
        durable_write!(self, |conn| {
            db!(diesel::insert_into(users::table).values(user).returning(User::as_returning()).get_result(conn))
        })
    }

    fn update_user(&mut self, id: i32, changes: &UserChangeset) -> Option<User> {
        durable_write!(self, |conn| {
            db!(diesel::update(users::table.find(id)).set(changes).returning(User::as_returning()).get_result(conn))
                .optional()
        })
    }

    fn delete_user(&mut self, id: i32) -> usize {
        durable_write!(self, |conn| {
            db!(diesel::delete(users::table.find(id)).execute(conn))
        })
    }

    fn active_users(&mut self, limit: i64) -> Vec<User> {
        db!(queries::active_users(limit).load(self))
    }

    fn users_after(&mut self, after: i32, limit: i64) -> Vec<User> {
        db!(queries::users_after(after, limit).load(self))
    }

    fn users_by_name(&mut self, last_name: &str, first_name_pattern: &str) -> Vec<User> {
        db!(queries::users_by_name(last_name, first_name_pattern).load(self))
    }

    fn user_with_posts(&mut self, id: i32) -> Option<UserWithPosts> {
        let Some(user) = db!(queries::user_by_id(id).get_result(self)).optional()? else {
            return Ok(None);
        };
        let posts = db!(backend::posts_of_authors(vec![user.id]).load(self))?;
        Ok(loading::users_with_posts(vec![user], posts).pop())
    }

    fn user_with_posts_and_comments(&mut self, id: i32) -> Option<UserWithPostsAndComments> {
        let Some(user) = db!(queries::user_by_id(id).get_result(self)).optional()? else {
            return Ok(None);
        };
        let posts: Vec<Post> = db!(backend::posts_of_authors(vec![user.id]).load(self))?;
        let comments = match loading::id_list(&posts) {
            Some(ids) => db!(backend::comments_of_posts(ids).load(self))?,
            None => Vec::new(),
        };
        Ok(loading::users_with_posts_and_comments(vec![user], posts, comments).pop())
    }

    fn users_with_posts(&mut self, limit: i64) -> Vec<UserWithPosts> {
        let users: Vec<User> = db!(queries::active_users(limit).load(self))?;
        let posts = match loading::id_list(&users) {
            Some(ids) => db!(backend::posts_of_authors(ids).load(self))?,
            None => Vec::new(),
        };
        Ok(loading::users_with_posts(users, posts))
    }

    fn users_with_posts_and_comments(&mut self, limit: i64) -> Vec<UserWithPostsAndComments> {
        let users: Vec<User> = db!(queries::active_users(limit).load(self))?;
        let posts = match loading::id_list(&users) {
            Some(ids) => db!(backend::posts_of_authors(ids).load(self))?,
            None => Vec::new(),
        };
        let comments = match loading::id_list(&posts) {
            Some(ids) => db!(backend::comments_of_posts(ids).load(self))?,
            None => Vec::new(),
        };
        Ok(loading::users_with_posts_and_comments(users, posts, comments))
    }

    fn table_sizes(&mut self) -> TableSizes {
        let (users, max_user_id) = db!(queries::user_count_and_max_id().get_result(self))?;
        let (posts, max_post_id) = db!(queries::post_count_and_max_id().get_result(self))?;
        let (comments, max_comment_id) = db!(queries::comment_count_and_max_id().get_result(self))?;
        Ok(TableSizes {
            users: TableSize { rows: users, max_id: max_user_id },
            posts: TableSize { rows: posts, max_id: max_post_id },
            comments: TableSize { rows: comments, max_id: max_comment_id },
        })
    }

    fn restart_id_sequences(&mut self) -> () {
        let statements = backend::restart_id_sequences();
        if statements.is_empty() {
            return Ok(());
        }
        in_transaction!(self, |conn| {
            for statement in statements {
                db!(statement.execute(conn))?;
            }
            Ok(())
        })
    }

    fn insert_post(&mut self, post: &NewPost) -> Post {
        durable_write!(self, |conn| {
            db!(diesel::insert_into(posts::table).values(post).returning(Post::as_returning()).get_result(conn))
        })
    }

    fn post_by_id(&mut self, id: i32) -> Option<Post> {
        db!(queries::post_by_id(id).get_result(self)).optional()
    }

    fn post_with_author(&mut self, id: i32) -> Option<(Post, User)> {
        db!(queries::post_with_author(id).get_result(self)).optional()
    }

    fn post_with_author_and_comments(&mut self, id: i32) -> Option<PostWithAuthorAndComments> {
        let Some((post, author)) = db!(queries::post_with_author(id).get_result(self)).optional()? else {
            return Ok(None);
        };
        let comments = db!(backend::comments_of_posts(vec![post.id]).load(self))?;
        Ok(Some(PostWithAuthorAndComments { post, author, comments }))
    }

    fn update_post(&mut self, id: i32, changes: &PostChangeset) -> Option<Post> {
        durable_write!(self, |conn| {
            db!(diesel::update(posts::table.find(id)).set(changes).returning(Post::as_returning()).get_result(conn))
                .optional()
        })
    }

    fn posts_by_author(&mut self, author_id: i32) -> Vec<Post> {
        db!(queries::posts_by_author(author_id).load(self))
    }

    fn posts_by_author_email(&mut self, email: &str) -> Vec<Post> {
        db!(queries::posts_by_author_email(email).load(self))
    }

    fn delete_post(&mut self, id: i32) -> usize {
        durable_write!(self, |conn| {
            db!(diesel::delete(posts::table.find(id)).execute(conn))
        })
    }

    fn insert_comment(&mut self, comment: &NewComment) -> Comment {
        durable_write!(self, |conn| {
            db!(diesel::insert_into(comments::table).values(comment).returning(Comment::as_returning()).get_result(conn))
        })
    }

    fn comment_by_id(&mut self, id: i32) -> Option<Comment> {
        db!(queries::comment_by_id(id).get_result(self)).optional()
    }

    fn comments_for_post(&mut self, post_id: i32, after: i32, limit: i64) -> Vec<Comment> {
        db!(queries::comments_for_post(post_id, after, limit).load(self))
    }

    fn comments_by_author(&mut self, author_id: i32) -> Vec<Comment> {
        db!(queries::comments_by_author(author_id).load(self))
    }

    fn delete_comment(&mut self, id: i32) -> usize {
        durable_write!(self, |conn| {
            db!(diesel::delete(comments::table.find(id)).execute(conn))
        })
    }

    fn load_comments(&mut self, query: &CommentsQuery) -> Vec<Comment> {
        db!(backend::comments_matching(query).load(self))
    }
}
    };
}

/// Declares a trait with every operation of the list.
macro_rules! declare_ops {
    ((sync $trait:ident) $( fn $name:ident(&mut $this:ident $(, $arg:ident: $arg_ty:ty)*) -> $ret:ty $body:block )*) => {
        #[cfg_attr(not(feature = "sync"), allow(dead_code))] // async-only: SQLite uses BulkInsert alone
        pub(crate) trait $trait: Send + BulkInsert {
            $( fn $name(&mut $this $(, $arg: $arg_ty)*) -> QueryResult<$ret>; )*
        }
    };
    ((async $trait:ident) $( fn $name:ident(&mut $this:ident $(, $arg:ident: $arg_ty:ty)*) -> $ret:ty $body:block )*) => {
        pub(crate) trait $trait: Send {
            $( fn $name(&mut $this $(, $arg: $arg_ty)*) -> impl Future<Output = QueryResult<$ret>> + Send; )*
        }
    };
}

/// Implements the trait for one connection type, whose backend's queries
/// are in `$backend`.
macro_rules! impl_ops {
    ((sync $trait:ident for $conn:ty, $backend:path)
     $( fn $name:ident(&mut $this:ident $(, $arg:ident: $arg_ty:ty)*) -> $ret:ty $body:block )*) => {
        impl $trait for $conn {
            $(
                fn $name(&mut $this $(, $arg: $arg_ty)*) -> QueryResult<$ret> {
                    #[allow(unused_imports)]
                    use $backend as backend;
                    $body
                }
            )*
        }
    };
    ((async $trait:ident for $conn:ty, $backend:path)
     $( fn $name:ident(&mut $this:ident $(, $arg:ident: $arg_ty:ty)*) -> $ret:ty $body:block )*) => {
        impl $trait for $conn {
            $(
                async fn $name(&mut $this $(, $arg: $arg_ty)*) -> QueryResult<$ret> {
                    #[allow(unused_imports)]
                    use $backend as backend;
                    $body
                }
            )*
        }
    };
}

with_op_list!(declare_ops!(sync BlockingOps));

/// The sync executors. Statements run as plain calls.
mod blocking {
    use super::*;
    use diesel::RunQueryDsl;

    macro_rules! db {
        ($e:expr) => {
            $e
        };
    }

    macro_rules! in_transaction {
        ($conn:ident, |$c:ident| $body:block) => {
            diesel::Connection::transaction($conn, |$c| $body)
        };
    }

    // A sync driver returns only once the statement's implicit transaction
    // has committed: a single write needs nothing more.
    macro_rules! durable_write {
        ($conn:ident, |$c:ident| $body:block) => {{
            let $c = $conn;
            $body
        }};
    }

    with_op_list!(impl_ops!(sync BlockingOps for SqliteConnection, queries::sqlite));
    #[cfg(feature = "sync")]
    with_op_list!(impl_ops!(sync BlockingOps for diesel::pg::PgConnection, queries::postgres));
}

#[cfg(feature = "async")]
with_op_list!(declare_ops!(async AsyncOps));

/// Runs each operation on whichever backend an async connection is: on
/// PostgreSQL the async executor; on SQLite the sync executor, the whole
/// operation in one hop to tokio's blocking pool (SQLite is an in-process C
/// library: there is nothing to await, and one hop per statement would cost
/// a thread switch each). Arguments are copied to owned values for the hop.
#[cfg(feature = "async")]
macro_rules! dispatch_ops {
    (() $( fn $name:ident(&mut $this:ident $(, $arg:ident: $arg_ty:ty)*) -> $ret:ty $body:block )*) => {
        impl crate::asynchronous::AsyncConn<'_> {
            $(
                pub(crate) async fn $name(&mut self $(, $arg: $arg_ty)*) -> QueryResult<$ret> {
                    match self {
                        Self::Postgres(conn) => AsyncOps::$name(&mut **conn $(, $arg)*).await,
                        Self::Sqlite(conn) => {
                            $( let $arg = owned_args::IntoOwnedArg::into_owned_arg($arg); )*
                            let context = ScopeContext::capture();
                            conn.spawn_blocking(move |conn| context.enter(|| {
                                BlockingOps::$name(conn $(, owned_args::OwnedArg::as_arg(&$arg))*)
                            }))
                            .await
                        }
                    }
                }
            )*
        }
    };
}

#[cfg(feature = "async")]
with_op_list!(dispatch_ops!());

/// Owned copies of operation arguments, so an operation can move to a
/// blocking thread and borrow them there as the sync executor expects.
#[cfg(feature = "async")]
mod owned_args {
    /// An argument as the async caller passes it.
    pub(crate) trait IntoOwnedArg {
        type Owned: OwnedArg + Send + 'static;
        fn into_owned_arg(self) -> Self::Owned;
    }

    /// The owned copy, lent back as the argument type.
    pub(crate) trait OwnedArg {
        type Arg<'a>
        where
            Self: 'a;
        fn as_arg(&self) -> Self::Arg<'_>;
    }

    macro_rules! by_value {
        ($($t:ty),*) => {$(
            impl IntoOwnedArg for $t {
                type Owned = $t;
                fn into_owned_arg(self) -> $t {
                    self
                }
            }
            impl OwnedArg for $t {
                type Arg<'a> = $t;
                fn as_arg(&self) -> $t {
                    *self
                }
            }
        )*};
    }
    by_value!(i32, i64);

    impl IntoOwnedArg for &str {
        type Owned = String;
        fn into_owned_arg(self) -> String {
            self.to_owned()
        }
    }

    impl OwnedArg for String {
        type Arg<'a> = &'a str;
        fn as_arg(&self) -> &str {
            self
        }
    }

    /// A cloned struct argument (`&NewUser`, `&CommentsQuery`, …).
    pub(crate) struct Cloned<T>(T);

    impl<T: Clone + Send + 'static> IntoOwnedArg for &T {
        type Owned = Cloned<T>;
        fn into_owned_arg(self) -> Cloned<T> {
            Cloned(self.clone())
        }
    }

    impl<T> OwnedArg for Cloned<T> {
        type Arg<'a>
            = &'a T
        where
            T: 'a;
        fn as_arg(&self) -> &T {
            &self.0
        }
    }
}

/// The async executors. Statements are awaited.
#[cfg(feature = "async")]
mod nonblocking {
    use super::*;
    use diesel_async::RunQueryDsl;

    macro_rules! db {
        ($e:expr) => {
            $e.await
        };
    }

    macro_rules! in_transaction {
        ($conn:ident, |$c:ident| $body:block) => {
            diesel_async::AsyncConnection::transaction($conn, async |$c| $body).await
        };
    }

    // tokio-postgres hands back a statement's result before the server's
    // ReadyForQuery, i.e. before its implicit transaction has committed: a
    // connection lost in that window turns an `Ok` into a lost write. An
    // explicit COMMIT, awaited, closes the window (BEGIN and COMMIT are not
    // counted as statements).
    macro_rules! durable_write {
        ($conn:ident, |$c:ident| $body:block) => {
            diesel_async::AsyncConnection::transaction($conn, async |$c| $body).await
        };
    }

    with_op_list!(impl_ops!(async AsyncOps for diesel_async::AsyncPgConnection, queries::postgres));
}
