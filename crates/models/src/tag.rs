//! The `tags` table's shapes, and `post_tags`, the link between posts and
//! tags (many-to-many).

use diesel::prelude::*;
use keel_schema::{post_tags, tags};
use serde::{Deserialize, Serialize};

use crate::Post;

/// A tag as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = tags)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Tag {
    pub id: i32,
    pub name: String,
}

/// A tag to insert; `id` comes from the database.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Deserialize)]
#[diesel(table_name = tags)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct NewTag {
    pub name: String,
}

/// One post carrying one tag: a row of the join table. It belongs to both
/// sides, so `belonging_to` works from either.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Queryable,
    Selectable,
    Identifiable,
    Associations,
    Insertable,
    Serialize,
)]
#[diesel(table_name = post_tags)]
#[diesel(primary_key(post_id, tag_id))]
#[diesel(belongs_to(Post))]
#[diesel(belongs_to(Tag))]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct PostTag {
    pub post_id: i32,
    pub tag_id: i32,
}
