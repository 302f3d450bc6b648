//! keel-repo: the repositories a service depends on, over keel's schema.
//!
//! - **An open core.** The infrastructure (connections, executors, pools,
//!   sessions, transactions, retry, scopes, bulk loading, explain, doctor)
//!   names no table; keel's own tables sit on it as ordinary modules in
//!   [`tables`], written the way a service writes its own. A service runs its
//!   own Diesel queries on any pool, session or transaction with
//!   `with_conn` and [`run!`], in either mode. See `docs/architecture.md`.
//! - **Two modes, one body.** Feature `sync` (default) gives
//!   [`sync::Database`] on diesel + r2d2; feature `async` gives
//!   [`asynchronous::AsyncDatabase`] on diesel-async with deadpool (and bb8
//!   with feature `bb8`, chosen by `KEEL_POOL`). The features are additive.
//!   Every operation is one `async fn` over [`Conn`]; sync executors run it to
//!   its end at once, async ones await it.
//! - **Backend by URL.** [`DatabaseConfig`] reads `DATABASE_URL`:
//!   `postgres://…` is PostgreSQL, `sqlite://PATH`, a path or `:memory:` is
//!   SQLite (with `busy_timeout`, WAL and foreign keys on every connection).
//! - **Eager loading without N+1.** `users_with_posts_and_comments` runs 3
//!   statements whatever the number of rows (one per level, children
//!   grouped under their parents by key),
//!   returning named types ([`UserWithPostsAndComments`]).
//! - **Tests in one call.** [`sync::Database::in_memory`] and
//!   [`asynchronous::AsyncDatabase::in_memory`] give a fresh, migrated
//!   in-memory SQLite database.
//! - **Typed errors.** [`RepoError`]: `NotFound`, `Conflict`,
//!   `RelatedMissing`, `Validation` (checked before any SQL), `PoolTimeout`, …
//! - **Statement counting.** [`StatementCounter`] on diesel's
//!   `Instrumentation`; every pool exposes one (`db.statements()`).
//!
//! Sync:
//!
//! ```
//! # #[cfg(feature = "sync")] fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keel_models::NewUser;
//! use keel_repo::prelude::*;
//! use keel_repo::sync::Database;
//!
//! // A fresh, migrated in-memory database; `Database::connect(&config)` and
//! // `db.run_migrations()` open a real one.
//! let db = Database::in_memory()?;
//! let user = db.users().create(&NewUser {
//!     email: "ada@example.com".into(),
//!     full_name: "Ada Lovelace".into(),
//!     first_name: Some("Ada".into()),
//!     last_name: Some("Lovelace".into()),
//!     is_active: true,
//! })?;
//! let before = db.statements().count();
//! let loaded = db.users().users_with_posts_and_comments(100)?;
//! assert_eq!(loaded[0].user, user);
//! assert_eq!(db.statements().count() - before, 2); // no posts: the comments level is skipped
//! # Ok(()) }
//! # #[cfg(not(feature = "sync"))] fn main() {}
//! ```
//!
//! Async (same repositories, awaited), with a transaction:
//!
//! ```
//! # #[cfg(feature = "async")] fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keel_models::{NewPost, NewUser};
//! use keel_repo::prelude::*;
//! use keel_repo::{DatabaseConfig, DatabaseUrl, asynchronous::AsyncDatabase};
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("doc.db").display().to_string();
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
//! let db = AsyncDatabase::connect(&DatabaseConfig::new(DatabaseUrl::Sqlite(path))).await?;
//! db.run_migrations().await?;
//! let post = db
//!     .transaction(async |tx| {
//!         let user = tx.users().create(&NewUser {
//!             email: "grace@example.com".into(),
//!             full_name: "Grace Hopper".into(),
//!             first_name: None,
//!             last_name: None,
//!             is_active: true,
//!         }).await?;
//!         tx.posts().create(&NewPost { title: "COBOL".into(), content: "…".into(), author_id: user.id }).await
//!     })
//!     .await?;
//! let by_email = db.posts().by_author_email("grace@example.com").await?;
//! assert_eq!(by_email, vec![post]);
//! # Ok::<_, RepoError>(()) })?;
//! # Ok(()) }
//! # #[cfg(not(feature = "async"))] fn main() {}
//! ```

// With neither mode on, only the shared pieces compile, and nothing uses them.
#![cfg_attr(not(any(feature = "sync", feature = "async")), allow(dead_code))]

// The core: names no table.
#[cfg(feature = "async")]
pub mod asynchronous;
pub mod bulk;
pub mod catalog;
mod config;
mod conn;
mod connection;
pub mod doctor;
mod error;
pub mod executor;
pub mod explain;
mod instrumentation;
mod interned;
pub mod loading;
pub mod maintenance;
pub mod page;
#[cfg(feature = "async")]
mod pgbouncer;
pub mod replicas;
mod retry;
pub mod scope;
mod sqlite_plans;
#[cfg(feature = "sync")]
pub mod sync;
pub mod validate;

// keel's own tables, on the core.
pub mod tables;

pub use config::{
    ConfigError, DatabaseConfig, DatabaseUrl, PgBouncerMode, PoolKind, PostgresUrl, StatementLog,
};
pub use conn::{AsyncPgConnection, Backend, Conn, Isolation, Pipeline};
pub use connection::AnyConnection;
pub use error::RepoError;
pub use executor::{ConnGuard, Executor, Mode, Out};
pub use instrumentation::StatementCounter;
pub use page::{MAX_PAGE_SIZE, Page, TableSize};
pub use replicas::{Lsn, ReplicaRole, ReplicaStatus};
pub use retry::{RetryPolicy, RetryableError};
pub use scope::{QueryScope, RepeatedStatement};
pub use tables::TableSizes;
pub use tables::comments::{
    CommentRepository, CommentThread, CommentWithParent, CommentWithPost, CommentsExt,
    CommentsQuery,
};
pub use tables::posts::{
    PostRepository, PostWithAuthor, PostWithAuthorAndComments, PostWithComments,
    PostWithCommentsAndTags, PostsExt,
};
pub use tables::tags::{PostWithTags, TagRepository, TagWithPosts, TagsExt};
pub use tables::users::{
    UserRepository, UserWithPosts, UserWithPostsAndComments, UserWithPostsAndTags,
    UserWithPostsCommentsAndTags, UsersExt,
};

/// What a module using keel-repo usually needs: the executors' traits, the
/// tables' `users()`/`posts()`/`comments()`, and the macros.
pub mod prelude {
    pub use crate::executor::{call, read};
    pub use crate::{
        CommentsExt, Conn, Executor, Out, PostsExt, RepoError, TagsExt, UsersExt, run,
    };
}

/// The crates `run!` expands to, so a service needs no
/// diesel-async dependency of its own for them.
#[doc(hidden)]
pub mod __private {
    pub use diesel;
    #[cfg(feature = "async")]
    pub use diesel_async;
}
