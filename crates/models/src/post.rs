//! The `posts` table's shapes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use keel_schema::posts;
use serde::{Deserialize, Serialize};

use crate::User;

/// A post as stored; it belongs to its author.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Associations, Serialize,
)]
#[diesel(table_name = posts)]
#[diesel(belongs_to(User, foreign_key = author_id))]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Post {
    pub id: i32,
    pub title: String,
    pub content: String,
    pub author_id: i32,
    /// UTC (the column default is UTC whatever the writer's time zone);
    /// JSON renders it as RFC 3339 with `Z`.
    #[serde(serialize_with = "crate::utc_rfc3339")]
    #[diesel(deserialize_as = crate::StoredTimestamp)]
    pub created_at: NaiveDateTime,
}

/// A post to insert; `id` and `created_at` come from the database.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Deserialize)]
#[diesel(table_name = posts)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct NewPost {
    pub title: String,
    pub content: String,
    pub author_id: i32,
}

/// Changes to a post: `None` leaves a column unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[diesel(table_name = posts)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct PostChangeset {
    pub title: Option<String>,
    pub content: Option<String>,
}
