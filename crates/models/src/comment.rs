//! The `comments` table's shapes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use keel_schema::comments;
use serde::{Deserialize, Serialize};

use crate::{Post, User};

/// A comment as stored; it belongs to a post and to its author, and a reply
/// also to the comment it answers (`parent_id`, always a smaller id).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Queryable,
    QueryableByName,
    Selectable,
    Identifiable,
    Associations,
    Serialize,
)]
#[diesel(table_name = comments)]
#[diesel(belongs_to(Post))]
#[diesel(belongs_to(User, foreign_key = author_id))]
#[diesel(belongs_to(Comment, foreign_key = parent_id))]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Comment {
    pub id: i32,
    pub body: String,
    pub post_id: i32,
    pub author_id: i32,
    /// UTC (the column default is UTC whatever the writer's time zone);
    /// JSON renders it as RFC 3339 with `Z`.
    #[serde(serialize_with = "crate::utc_rfc3339")]
    #[diesel(deserialize_as = crate::StoredTimestamp)]
    pub created_at: NaiveDateTime,
    /// The comment this one replies to; `None` for a top-level comment.
    pub parent_id: Option<i32>,
}

/// A comment to insert; `id` and `created_at` come from the database.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Deserialize)]
#[diesel(table_name = comments)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct NewComment {
    pub body: String,
    pub post_id: i32,
    pub author_id: i32,
}

/// Changes to a comment: `None` leaves a column unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = comments)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct CommentChangeset {
    pub body: Option<String>,
}
