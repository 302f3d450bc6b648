//! `RepoError`: every way a repository call can fail, as data a caller can
//! match and a message a person can read.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong in a repository call. Validation errors are raised before
/// any SQL runs; constraint errors leave the database as it was (the failing
/// statement, or the whole transaction, is rolled back).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No row has this key.
    #[error("{entity} {key} was not found")]
    NotFound {
        /// `user`, `post` or `comment`.
        entity: &'static str,
        /// The key looked up, e.g. `id 42` or `email a@b.c`.
        key: String,
    },
    /// A unique constraint holds this value already (e.g. a duplicate email).
    #[error("{}", conflict_message(constraint))]
    Conflict {
        /// The constraint's name, e.g. `ix_users_email`.
        constraint: String,
    },
    /// A foreign key points at a row that does not exist.
    #[error("the row that {field} refers to does not exist")]
    RelatedMissing {
        /// The referencing column(s), e.g. `author_id`.
        field: String,
    },
    /// The input was rejected before any SQL ran.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The offending field.
        field: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// No pooled connection became free in time.
    #[error("no database connection became free within {waited:?}; the pool is exhausted")]
    PoolTimeout {
        /// The configured checkout timeout.
        waited: Duration,
    },
    /// The database could not be reached or the pool could not be built.
    #[error("cannot connect to the database: {0}")]
    Connection(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] DieselError),
}

/// Unique constraints by name, with what they mean to a person. SQLite names
/// the columns instead (`users.email`), so both spellings map here.
const UNIQUE_CONSTRAINTS: &[(&str, &str, &str)] = &[(
    "ix_users_email",
    "users.email",
    "a user with this email already exists",
)];

fn conflict_message(constraint: &str) -> String {
    UNIQUE_CONSTRAINTS
        .iter()
        .find(|(name, _, _)| *name == constraint)
        .map_or_else(
            || format!("a row with this value already exists (constraint {constraint})"),
            |(_, _, message)| (*message).to_owned(),
        )
}

impl RepoError {
    /// A validation error.
    pub fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation {
            field,
            reason: reason.into(),
        }
    }

    /// Maps a diesel error, naming the foreign-key columns a failed write of
    /// this entity may have violated (SQLite does not say which one did).
    pub(crate) fn from_write(error: DieselError, foreign_keys: &str) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                let field = info
                    .constraint_name()
                    .and_then(|name| name.strip_suffix("_fkey"))
                    .and_then(|name| {
                        info.table_name()
                            .and_then(|table| name.strip_prefix(table))
                            .map(|c| c.trim_start_matches('_').to_owned())
                    })
                    .unwrap_or_else(|| foreign_keys.to_owned());
                Self::RelatedMissing { field }
            }
            other => other.into(),
        }
    }
}

impl From<DieselError> for RepoError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                let constraint = match info.constraint_name() {
                    Some(name) => name.to_owned(),
                    // SQLite: "UNIQUE constraint failed: users.email"
                    None => {
                        let columns = info.message().rsplit(": ").next().unwrap_or_default();
                        UNIQUE_CONSTRAINTS
                            .iter()
                            .find(|(_, cols, _)| *cols == columns)
                            .map_or_else(|| columns.to_owned(), |(name, _, _)| (*name).to_owned())
                    }
                };
                Self::Conflict { constraint }
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                Self::from_write(error, "a foreign key")
            }
            DieselError::NotFound => Self::NotFound {
                entity: "row",
                key: "requested".to_owned(),
            },
            other => Self::Database(other),
        }
    }
}
