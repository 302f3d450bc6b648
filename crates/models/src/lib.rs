//! keel's row shapes, one struct per shape, for the tables in [`keel_schema`].
//!
//! Each table has three (`post_tags`, a join table, has one): a read struct (what a `SELECT` returns, with its
//! associations for eager loading), an insert struct (`New*`, what the caller
//! supplies; the server fills `id` and `created_at`), and a changeset
//! (`*Changeset`, where `None` leaves a column as it is).
//!
//! Every struct is checked at compile time against both PostgreSQL and SQLite
//! (`check_for_backend`), so a schema change that breaks either backend fails
//! the build rather than a query at run time.

mod comment;
mod post;
mod tag;
mod timestamp;
mod user;

pub use comment::{Comment, CommentChangeset, NewComment};
pub use post::{NewPost, Post, PostChangeset};
pub use tag::{NewTag, PostTag, Tag};
pub use timestamp::StoredTimestamp;
pub use user::{NewUser, User, UserChangeset};

/// Serializes a UTC timestamp as RFC 3339 with `Z` (`2026-11-30T03:00:00.123456Z`):
/// the columns are `TIMESTAMP` without a zone, and a client must not read
/// them as its local time.
fn utc_rfc3339<S: serde::Serializer>(
    at: &chrono::NaiveDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(
        &at.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// `is_active` when a new user's input leaves it out: active, as the
/// reference model's default.
fn active_by_default() -> bool {
    true
}

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
