//! Applying, reverting and listing migrations on whichever backend a URL names.

use std::collections::HashSet;
use std::error::Error as StdError;

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::migration::{MigrationSource, MigrationVersion};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{DatabaseUrl, DatabaseUrlError};

/// The PostgreSQL migrations, from `migrations/postgres`.
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// The SQLite migrations, from `migrations/sqlite`.
pub const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How long a SQLite migration waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong while migrating. Messages name the database (without its
/// password) and read as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The URL names no backend keel supports.
    #[error(transparent)]
    Url(#[from] DatabaseUrlError),
    /// The database could not be reached or opened.
    #[error("cannot connect to {backend} at {url}: {source}")]
    Connect {
        /// `PostgreSQL` or `SQLite`.
        backend: &'static str,
        /// The URL, password hidden.
        url: String,
        /// The driver's reason.
        source: ConnectionError,
    },
    /// A migration failed to apply or revert; the database keeps every
    /// migration that finished before it (each runs in its own transaction).
    #[error("migrating {url} failed: {source}")]
    Migration {
        /// The URL, password hidden.
        url: String,
        /// The harness's reason, naming the migration.
        source: BoxError,
    },
}

/// Whether a migration has been applied to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    /// Recorded in `__diesel_schema_migrations`.
    Applied,
    /// Not yet run.
    Pending,
}

/// One embedded migration and its state in the connected database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The migration's folder name, e.g. `2026-11-26-021800_create_users`.
    pub name: String,
    /// Applied or pending.
    pub state: MigrationState,
}

/// A connection to one database, with the migrations for its backend.
pub struct Migrator {
    url: DatabaseUrl,
    connection: BackendConnection,
}

enum BackendConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$conn` bound to the concrete connection and `$source` to
/// its backend's migrations: the generic helpers below are written once and
/// monomorphised per backend.
macro_rules! per_backend {
    ($self:ident, |$conn:ident, $source:ident| $body:expr) => {{
        let result: Result<_, BoxError> = match &mut $self.connection {
            BackendConnection::Postgres($conn) => {
                let $source = Embedded(&POSTGRES);
                $body
            }
            BackendConnection::Sqlite($conn) => {
                let $source = Embedded(&SQLITE);
                $body
            }
        };
        result.map_err(|source| MigrateError::Migration {
            url: $self.url.to_string(),
            source,
        })
    }};
}

impl Migrator {
    /// Connects to the database `url` names. SQLite files are created if
    /// missing, with foreign keys enforced and a busy timeout set.
    pub fn connect(url: &DatabaseUrl) -> Result<Self, MigrateError> {
        let connect_error = |source| MigrateError::Connect {
            backend: url.backend_name(),
            url: url.to_string(),
            source,
        };
        let connection = match url {
            DatabaseUrl::Postgres(raw) => {
                BackendConnection::Postgres(PgConnection::establish(raw).map_err(connect_error)?)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).map_err(connect_error)?;
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON;"
                ))
                .map_err(|e| connect_error(ConnectionError::CouldntSetupConfiguration(e)))?;
                BackendConnection::Sqlite(conn)
            }
        };
        Ok(Self {
            url: url.clone(),
            connection,
        })
    }

    /// The database this migrator works on.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Applies every pending migration, oldest first; returns their names.
    /// An empty list means the database was already current.
    pub fn run_pending(&mut self) -> Result<Vec<String>, MigrateError> {
        per_backend!(self, |conn, source| run_pending(conn, source))
    }

    /// Reverts up to `steps` migrations, newest first; returns their names.
    /// Stops early, without error, when none are left to revert.
    pub fn revert(&mut self, steps: usize) -> Result<Vec<String>, MigrateError> {
        per_backend!(self, |conn, source| revert(conn, source, steps))
    }

    /// Reverts the newest applied migration and applies it again; returns its
    /// name, or `None` when no migration is applied.
    pub fn redo(&mut self) -> Result<Option<String>, MigrateError> {
        per_backend!(self, |conn, source| redo(conn, source))
    }

    /// Every embedded migration, oldest first, with whether it is applied.
    pub fn status(&mut self) -> Result<Vec<MigrationStatus>, MigrateError> {
        per_backend!(self, |conn, source| status(conn, source))
    }
}

/// A `Copy` handle on one of the embedded sets: the harness takes its source
/// by value, and `EmbeddedMigrations` is neither `Copy` nor `Clone`.
#[derive(Clone, Copy)]
struct Embedded(&'static EmbeddedMigrations);

impl<DB: Backend> MigrationSource<DB> for Embedded {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<DB>>>> {
        MigrationSource::<DB>::migrations(self.0)
    }
}

/// The display name (`version_name`) of each embedded migration, by version.
fn names_by_version<DB: Backend>(
    source: Embedded,
) -> Result<Vec<(MigrationVersion<'static>, String)>, BoxError> {
    Ok(MigrationSource::<DB>::migrations(&source)?
        .iter()
        .map(|m| (m.name().version().as_owned(), m.name().to_string()))
        .collect())
}

fn name_of<DB: Backend>(
    source: Embedded,
    version: &MigrationVersion<'_>,
) -> Result<String, BoxError> {
    Ok(names_by_version::<DB>(source)?
        .into_iter()
        .find(|(v, _)| v == version)
        .map_or_else(|| version.to_string(), |(_, name)| name))
}

fn run_pending<DB: Backend>(
    conn: &mut impl MigrationHarness<DB>,
    source: Embedded,
) -> Result<Vec<String>, BoxError> {
    let applied = conn.run_pending_migrations(source)?;
    applied.iter().map(|v| name_of::<DB>(source, v)).collect()
}

fn revert<DB: Backend>(
    conn: &mut impl MigrationHarness<DB>,
    source: Embedded,
    steps: usize,
) -> Result<Vec<String>, BoxError> {
    let mut reverted = Vec::new();
    for _ in 0..steps {
        if conn.applied_migrations()?.is_empty() {
            break;
        }
        let version = conn.revert_last_migration(source)?;
        reverted.push(name_of::<DB>(source, &version)?);
    }
    Ok(reverted)
}

fn redo<DB: Backend>(
    conn: &mut impl MigrationHarness<DB>,
    source: Embedded,
) -> Result<Option<String>, BoxError> {
    if conn.applied_migrations()?.is_empty() {
        return Ok(None);
    }
    let version = conn.revert_last_migration(source)?;
    conn.run_next_migration(source)?;
    name_of::<DB>(source, &version).map(Some)
}

fn status<DB: Backend>(
    conn: &mut impl MigrationHarness<DB>,
    source: Embedded,
) -> Result<Vec<MigrationStatus>, BoxError> {
    let applied: HashSet<MigrationVersion<'static>> = conn
        .applied_migrations()?
        .into_iter()
        .map(|v| v.as_owned())
        .collect();
    Ok(names_by_version::<DB>(source)?
        .into_iter()
        .map(|(version, name)| MigrationStatus {
            name,
            state: if applied.contains(&version) {
                MigrationState::Applied
            } else {
                MigrationState::Pending
            },
        })
        .collect())
}
