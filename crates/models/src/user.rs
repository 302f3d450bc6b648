//! The `users` table's shapes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use keel_schema::users;
use serde::{Deserialize, Serialize};

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct User {
    pub id: i32,
    pub email: String,
    pub full_name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_active: bool,
    /// UTC (the column default is UTC whatever the writer's time zone);
    /// JSON renders it as RFC 3339 with `Z`.
    #[serde(serialize_with = "crate::utc_rfc3339")]
    #[diesel(deserialize_as = crate::StoredTimestamp)]
    pub created_at: NaiveDateTime,
}

/// A user to insert; `id` and `created_at` come from the database.
///
/// `treat_none_as_default_value = false` writes `None` as `NULL`, which lets a
/// batch of these go out as one multi-row `INSERT` on SQLite too (with the
/// default, diesel falls back to one statement per row there).
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Deserialize)]
#[serde(deny_unknown_fields)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct NewUser {
    pub email: String,
    pub full_name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Absent in JSON means `true`.
    #[serde(default = "crate::active_by_default")]
    pub is_active: bool,
}

impl NewUser {
    /// An active user with only the required fields.
    pub fn new(email: impl Into<String>, full_name: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            full_name: full_name.into(),
            first_name: None,
            last_name: None,
            is_active: crate::active_by_default(),
        }
    }
}

/// Changes to a user: `None` leaves a column unchanged; for the nullable
/// columns, `Some(None)` sets `NULL`. In JSON, an absent field leaves the
/// column alone and `null` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq, AsChangeset, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct UserChangeset {
    pub email: Option<String>,
    pub full_name: Option<String>,
    #[serde(deserialize_with = "crate::present")]
    pub first_name: Option<Option<String>>,
    #[serde(deserialize_with = "crate::present")]
    pub last_name: Option<Option<String>>,
    pub is_active: Option<bool>,
}
