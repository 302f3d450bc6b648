//! `RepoError`: every way a repository call can fail, as data a caller can
//! match and a message a person can read.

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::catalog;
use crate::conn::Conn;

/// What a foreign-key violation names when the database does not say which
/// key failed.
const UNNAMED_FOREIGN_KEY: &str = "a foreign key";

/// What went wrong in a repository call. Validation errors are raised before
/// any SQL runs; constraint errors leave the database as it was (the failing
/// statement, or the whole transaction, is rolled back).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No row has this key.
    #[error("{entity} {key} was not found")]
    NotFound {
        /// What was looked up: `user`, `post`, …
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
    /// Passwords in the database URL never appear in the message.
    #[error("cannot connect to the database: {0}")]
    Connection(String),
    /// The connection was lost during the call: the server restarted or shut
    /// down, or the network failed. The pool discards that connection and
    /// opens a new one for a later call. A write that was not in an explicit
    /// transaction may or may not have been applied; a transaction that
    /// had not committed was not.
    #[error("the database connection was lost: {0}")]
    Unavailable(String),
    /// SQLite: another connection held the write lock for longer than the
    /// busy timeout (`KEEL_SQLITE_BUSY_TIMEOUT_MS`). Nothing was written.
    #[error("the database is locked by another writer (waited the busy timeout): {0}")]
    Busy(String),
    /// PostgreSQL: a concurrent transaction conflicted with this one (a
    /// serialization failure, SQLSTATE 40001, or a deadlock, 40P01), and this
    /// one was rolled back. Running the whole transaction again may succeed:
    /// see `transaction_with_retry`.
    #[error("the transaction conflicted with a concurrent one and was rolled back: {0}")]
    TransactionConflict(String),
    /// Strict mode: one query shape ran more often than the scope's repeat
    /// threshold, a likely N+1 (see [`crate::scope`]).
    #[error(
        "likely N+1 in {scope}: this query ran {count} times: {statement}; load the relation eagerly"
    )]
    RepeatedStatement {
        /// The scope's name.
        scope: String,
        /// The SQL, without bind values.
        statement: String,
        /// How often it had run.
        count: u32,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] DieselError),
}

/// Messages PostgreSQL sends as it closes a session: `terminating
/// connection due to administrator command` (57P01, a fast shutdown),
/// `… because of crash of another server process` (57P02), `… due to
/// idle-session timeout` (57P05); and those it answers while it cannot
/// serve: `the database system is shutting down` / `is starting up` / `is in
/// recovery mode` / `is not yet accepting connections` (57P03). Diesel
/// reports all of them as `DatabaseErrorKind::Unknown`, and tokio-postgres
/// gives no other handle on them through diesel-async.
const CONNECTION_LOST_PREFIXES: &[&str] = &["terminating connection", "the database system is"];

/// How [`RepoError::Unavailable`] begins when the server refused to write
/// because it is not the primary: nothing was written, so the call is safe
/// to retry ([`crate::RetryableError`]).
pub(crate) const WRONG_NODE: &str = "the connection reached a server that cannot write (a standby, or a primary demoted by a failover)";

/// PostgreSQL's messages when a connection meant for the primary reached a
/// node that cannot write (a standby, or a primary demoted by a failover):
/// SQLSTATE 0A000 at `BEGIN … READ WRITE` or `SERIALIZABLE`, which diesel
/// reports as `Unknown`. (25006, "cannot execute … in a read-only
/// transaction", has its own kind, `ReadOnlyTransaction`.)
const WRONG_NODE_PREFIXES: &[&str] = &[
    "cannot set transaction read-write mode during recovery",
    "cannot use serializable mode in a hot standby",
];

/// PostgreSQL's message for SQLSTATE 40P01, which diesel reports as
/// `DatabaseErrorKind::Unknown` (it maps 40001 alone to `SerializationFailure`).
const DEADLOCK_MESSAGE: &str = "deadlock detected";

/// SQLite's messages for SQLITE_BUSY and SQLITE_LOCKED, which diesel reports
/// as `DatabaseErrorKind::Unknown`.
const SQLITE_BUSY_PREFIXES: &[&str] = &[
    "database is locked",
    "database table is locked",
    "database schema is locked",
];

/// How a diesel error should be treated beyond its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The connection is gone: discard it.
    ConnectionLost,
    /// The connection reached a node that cannot write (a standby, or a
    /// demoted primary): discard it, so that a new one finds the primary.
    WrongNode,
    /// A serialization failure or deadlock: the transaction may be retried.
    TransactionConflict,
    /// SQLite's lock wait ran out.
    Busy,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Classifies `error` by kind, and by message where diesel leaves the
    /// kind `Unknown`.
    pub(crate) fn of(error: &DieselError) -> Self {
        match error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Self::ConnectionLost,
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Self::TransactionConflict
            }
            DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => {
                Self::WrongNode
            }
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
                let message = info.message();
                if message.starts_with(DEADLOCK_MESSAGE) {
                    Self::TransactionConflict
                } else if WRONG_NODE_PREFIXES.iter().any(|p| message.starts_with(p)) {
                    Self::WrongNode
                } else if SQLITE_BUSY_PREFIXES.iter().any(|p| message.starts_with(p)) {
                    Self::Busy
                } else if CONNECTION_LOST_PREFIXES
                    .iter()
                    .any(|p| message.starts_with(p))
                {
                    Self::ConnectionLost
                } else {
                    Self::Other
                }
            }
            DieselError::RollbackErrorOnCommit { commit_error, .. } => Self::of(commit_error),
            _ => Self::Other,
        }
    }
}

fn conflict_message(constraint: &str) -> String {
    format!("a row with this value already exists (unique constraint {constraint})")
}

/// A diesel error from `conn`, as a [`RepoError`]. SQLite names the columns
/// of a violated unique constraint (`UNIQUE constraint failed: users.email`),
/// not the constraint: the index with those columns is read from the
/// catalog, on the same connection, so `Conflict` names it on both backends.
///
/// A connection that reached a node that cannot write is discarded: a
/// multi-host URL's next connection finds the new primary.
pub(crate) fn from_diesel(conn: &mut Conn<'_>, error: DieselError) -> RepoError {
    if ErrorClass::of(&error) == ErrorClass::WrongNode {
        conn.discard();
    }
    if let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &error
        && info.constraint_name().is_none()
        && let Conn::Sqlite(sqlite) = conn
        && let Some(index) = catalog::sqlite_unique_index_for(sqlite, info.message())
    {
        return RepoError::Conflict { constraint: index };
    }
    RepoError::from(error)
}

impl RepoError {
    /// Whether the same call may succeed later without any change to its
    /// input: the pool, the connection or a lock was the problem, not the
    /// request. (A lost connection's write may have been applied: retry
    /// writes only when they are idempotent.)
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::PoolTimeout { .. }
                | Self::Connection(_)
                | Self::Unavailable(_)
                | Self::Busy(_)
                | Self::TransactionConflict(_)
        )
    }

    /// The same error, with a foreign-key violation that names no column
    /// (SQLite does not say which key failed) naming `fields`: the
    /// foreign keys of the row that was written.
    #[must_use]
    pub fn naming_related(self, fields: &str) -> Self {
        match self {
            Self::RelatedMissing { field } if field == UNNAMED_FOREIGN_KEY => {
                Self::RelatedMissing {
                    field: fields.to_owned(),
                }
            }
            other => other,
        }
    }

    /// A validation error.
    pub fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation {
            field,
            reason: reason.into(),
        }
    }
}

impl From<DieselError> for RepoError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                let constraint = match info.constraint_name() {
                    Some(name) => name.to_owned(),
                    // SQLite, with no connection to ask: "UNIQUE constraint
                    // failed: users.email" gives the columns.
                    None => info
                        .message()
                        .rsplit(": ")
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                Self::Conflict { constraint }
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                // PostgreSQL names the constraint (`posts_author_id_fkey`),
                // and so the column; SQLite does not (see `naming_related`).
                let field = info
                    .constraint_name()
                    .and_then(|name| name.strip_suffix("_fkey"))
                    .and_then(|name| {
                        info.table_name()
                            .and_then(|table| name.strip_prefix(table))
                            .map(|c| c.trim_start_matches('_').to_owned())
                    })
                    .unwrap_or_else(|| UNNAMED_FOREIGN_KEY.to_owned());
                Self::RelatedMissing { field }
            }
            DieselError::NotFound => Self::NotFound {
                entity: "row",
                key: "requested".to_owned(),
            },
            other => match ErrorClass::of(&other) {
                ErrorClass::ConnectionLost => Self::Unavailable(database_message(&other)),
                ErrorClass::WrongNode => Self::Unavailable(format!(
                    "{WRONG_NODE}; it was closed, retry on a new one: {}",
                    database_message(&other)
                )),
                ErrorClass::TransactionConflict => {
                    Self::TransactionConflict(database_message(&other))
                }
                ErrorClass::Busy => Self::Busy(database_message(&other)),
                ErrorClass::Other => Self::Database(other),
            },
        }
    }
}

/// The database's own message for `error`, on one line.
fn database_message(error: &DieselError) -> String {
    let message = match error {
        DieselError::DatabaseError(_, info) => info.message().to_owned(),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => {
            return database_message(commit_error);
        }
        other => other.to_string(),
    };
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
