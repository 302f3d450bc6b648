//! keel's row shapes, one struct per shape, for the tables in [`keel_schema`].
//!
//! Each table has three: a read struct (what a `SELECT` returns, with its
//! associations for eager loading), an insert struct (`New*`, what the caller
//! supplies; the server fills `id` and `created_at`), and a changeset
//! (`*Changeset`, where `None` leaves a column as it is).
//!
//! Every struct is checked at compile time against both PostgreSQL and SQLite
//! (`check_for_backend`), so a schema change that breaks either backend fails
//! the build rather than a query at run time.

mod comment;
mod post;
mod user;

pub use comment::{Comment, CommentChangeset, NewComment};
pub use post::{NewPost, Post, PostChangeset};
pub use user::{NewUser, User, UserChangeset};

/// Deserializes a field that is present in the input, `null` included, as
/// `Some(value)`: with `#[serde(default)]`, an absent field stays `None`, so a
/// changeset tells "leave it" (absent) from "clear it" (`null`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
