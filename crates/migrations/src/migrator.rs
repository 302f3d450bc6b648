//! Applying, reverting and listing migrations on whichever backend a URL names.
//!
//! Several migrators may start at once (two deploys, or every replica of a
//! service migrating on boot), so each operation holds a database-wide lock:
//!
//! - **PostgreSQL**: a session-level advisory lock on a fixed key
//!   ([`POSTGRES_LOCK_KEY`]), taken before diesel creates its bookkeeping
//!   table and released after the last migration. A second migrator waits in
//!   `pg_advisory_lock`, then finds nothing pending. If a migrator dies, its
//!   session ends and the server releases the lock.
//! - **SQLite**: the whole run is one `BEGIN IMMEDIATE` transaction, which
//!   takes the database's single write lock before reading what is pending.
//!   Diesel runs each migration in a transaction of its own; inside ours
//!   that becomes a savepoint, so a failing migration still rolls back alone
//!   and the ones before it are committed, as without the lock. A second
//!   migrator waits for the lock (the busy timeout), then reads the list of
//!   applied migrations afresh and finds nothing pending. SQLite releases the
//!   lock if the process dies. (A lock file would also need stale-lock
//!   handling; `BEGIN EXCLUSIVE` would also block readers in rollback-journal
//!   mode, for nothing.)

use std::collections::HashSet;
use std::error::Error as StdError;

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::migration::{MigrationSource, MigrationVersion};
use diesel::pg::PgConnection;
use diesel::sql_types::BigInt;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError, RunQueryDsl, sql_query};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{DatabaseUrl, DatabaseUrlError};

/// The PostgreSQL migrations, from `migrations/postgres`.
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// The SQLite migrations, from `migrations/sqlite`.
pub const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How long a SQLite migrator waits for the write lock (held by another
/// migrator, or any writer) before giving up with "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// The PostgreSQL advisory lock key every keel migrator takes: the ASCII
/// bytes of `keelmigr`. Another tool using the same key would wait on keel.
pub const POSTGRES_LOCK_KEY: i64 = 0x6b65_656c_6d69_6772;

type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong while migrating. Messages name the database (without its
/// password) and read as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The URL names no backend keel supports.
    #[error(transparent)]
    Url(#[from] DatabaseUrlError),
    /// The database could not be reached or opened.
    #[error("cannot connect to {backend} at {url}: {reason}")]
    Connect {
        /// `PostgreSQL` or `SQLite`.
        backend: &'static str,
        /// The URL, password hidden.
        url: String,
        /// The driver's reason, with any password of the URL hidden. (The
        /// driver's error itself is not kept: libpq quotes malformed URL
        /// parts in it, password included.)
        reason: String,
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

/// How an operation locks out other migrators.
#[derive(Clone, Copy)]
enum Lock {
    /// Applies what is pending: the PostgreSQL advisory lock, or one SQLite
    /// write transaction around the whole operation.
    Apply,
    /// Reverts (and maybe reapplies): locked as [`Lock::Apply`].
    Revert,
    /// Only reads (though diesel may create its bookkeeping table, which on
    /// PostgreSQL races with another migrator doing the same): the advisory
    /// lock on PostgreSQL, nothing on SQLite.
    Read,
}

/// Runs `$body` with `$conn` bound to the concrete connection and `$source` to
/// its backend's migrations, holding the migration lock (see the module
/// docs): the generic helpers below are written once and monomorphised per
/// backend.
macro_rules! per_backend {
    ($self:ident, $lock:expr, |$conn:ident, $source:ident| $body:expr) => {{
        let result: Result<_, BoxError> = match &mut $self.connection {
            BackendConnection::Postgres(conn) => {
                let $source = Embedded(&POSTGRES);
                with_advisory_lock(conn, |$conn| $body)
            }
            BackendConnection::Sqlite(conn) => {
                let $source = Embedded(&SQLITE);
                match $lock {
                    Lock::Apply => in_write_transaction(
                        conn,
                        |conn| MigrationHarness::has_pending_migration(conn, $source),
                        |$conn| $body,
                    ),
                    Lock::Revert => in_write_transaction(conn, |_| Ok(true), |$conn| $body),
                    Lock::Read => {
                        let $conn = conn;
                        $body
                    }
                }
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
        let connect_error = |source: ConnectionError| MigrateError::Connect {
            backend: url.backend_name(),
            url: url.to_string(),
            reason: url.redact(source.to_string().trim_end()),
        };
        let connection = match url {
            DatabaseUrl::Postgres(raw) => BackendConnection::Postgres(
                PgConnection::establish(raw.as_connection_str()).map_err(connect_error)?,
            ),
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
        per_backend!(self, Lock::Apply, |conn, source| run_pending(conn, source))
    }

    /// Reverts up to `steps` migrations, newest first; returns their names.
    /// Stops early, without error, when none are left to revert.
    pub fn revert(&mut self, steps: usize) -> Result<Vec<String>, MigrateError> {
        per_backend!(self, Lock::Revert, |conn, source| revert(
            conn, source, steps
        ))
    }

    /// Reverts the newest applied migration and applies it again; returns its
    /// name, or `None` when no migration is applied.
    pub fn redo(&mut self) -> Result<Option<String>, MigrateError> {
        per_backend!(self, Lock::Revert, |conn, source| redo(conn, source))
    }

    /// Every embedded migration, oldest first, with whether it is applied.
    pub fn status(&mut self) -> Result<Vec<MigrationStatus>, MigrateError> {
        per_backend!(self, Lock::Read, |conn, source| status(conn, source))
    }
}

/// Applies every pending SQLite migration on a connection the caller
/// already has, under the same write lock as [`Migrator::run_pending`];
/// returns their names. This is how an in-memory database gets its schema:
/// a second connection to `:memory:` would open an empty database of its own.
pub fn run_pending_on_sqlite(conn: &mut SqliteConnection) -> Result<Vec<String>, MigrateError> {
    let source = Embedded(&SQLITE);
    in_write_transaction(
        conn,
        |conn| MigrationHarness::has_pending_migration(conn, source),
        |conn| run_pending(conn, source),
    )
    .map_err(|source| MigrateError::Migration {
        url: "the SQLite connection".to_owned(),
        source,
    })
}

/// Runs `f` holding the session-level advisory lock [`POSTGRES_LOCK_KEY`],
/// waiting for it as long as another migrator holds it.
fn with_advisory_lock<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(POSTGRES_LOCK_KEY)
        .execute(conn)?;
    let result = f(conn);
    // Should the unlock fail, the connection is gone, and the server has
    // released the session's lock with it: `f`'s outcome is what matters.
    let _ = sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(POSTGRES_LOCK_KEY)
        .execute(conn);
    result
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction, so it holds SQLite's write
/// lock from before it reads what is pending. What `f` did before failing
/// is committed: each migration is a savepoint inside, rolled back alone
/// when it fails.
///
/// Foreign keys are off meanwhile, and checked all at once before the
/// commit. Changing a column in SQLite means rebuilding its table (create,
/// copy, drop, rename), and with foreign keys on, dropping the old table
/// would cascade into its children's rows. SQLite ignores the pragma inside
/// a transaction, so it is set around it, and set back whatever happens.
///
/// The check runs only when `will_change` says the run has work, and fails
/// only on rows the run left dangling: a run with nothing to do scans no
/// table under the write lock, and a database that already has dangling
/// rows (written by a tool with foreign keys off) still migrates.
fn in_write_transaction<T>(
    conn: &mut SqliteConnection,
    will_change: impl FnOnce(&mut SqliteConnection) -> Result<bool, BoxError>,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    conn.batch_execute("PRAGMA foreign_keys = OFF")?;
    let outcome = conn.immediate_transaction::<_, BoxError, _>(|conn| {
        if !will_change(conn)? {
            return Ok(f(conn));
        }
        let before = dangling_rows(conn)?;
        let outcome = f(conn);
        let after = dangling_rows(conn)?;
        if after > before {
            return Err(format!(
                "{} row(s) would point at rows that do not exist \
                 (PRAGMA foreign_key_check lists them); nothing was changed",
                after - before
            )
            .into());
        }
        Ok(outcome)
    });
    let restored = conn.batch_execute("PRAGMA foreign_keys = ON");
    let outcome = outcome??;
    restored?;
    Ok(outcome)
}

/// Rows whose foreign key points at no row, in the whole database.
fn dangling_rows(conn: &mut SqliteConnection) -> Result<i64, BoxError> {
    Ok(diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM pragma_foreign_key_check)",
    ))
    .get_result(conn)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory database with a parent and a child table, and a dangling
    /// child row written with foreign keys off.
    fn with_one_dangling_row() -> SqliteConnection {
        let mut conn = SqliteConnection::establish(":memory:").expect("open");
        conn.batch_execute(
            "PRAGMA foreign_keys = OFF;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id));
             INSERT INTO child (parent_id) VALUES (7);
             PRAGMA foreign_keys = ON;",
        )
        .expect("schema");
        conn
    }

    fn children(conn: &mut SqliteConnection) -> i64 {
        diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM child)"))
            .get_result(conn)
            .expect("count")
    }

    #[test]
    fn a_run_that_leaves_a_row_dangling_changes_nothing() {
        let mut conn = with_one_dangling_row();
        let refused = in_write_transaction(
            &mut conn,
            |_| Ok(true),
            |conn| Ok(conn.batch_execute("INSERT INTO child (parent_id) VALUES (8)")?),
        )
        .expect_err("a new dangling row is refused");
        assert!(refused.to_string().contains("1 row(s)"), "{refused}");
        assert_eq!(children(&mut conn), 1, "rolled back");
    }

    #[test]
    fn rows_dangling_before_the_run_do_not_stop_it() {
        let mut conn = with_one_dangling_row();
        in_write_transaction(
            &mut conn,
            |_| Ok(true),
            |conn| {
                // A rebuild, as a migration that changes a column does: with
                // foreign keys on, dropping the parent would fail or cascade.
                conn.batch_execute(
                    "INSERT INTO parent (id) VALUES (1);
                     INSERT INTO child (parent_id) VALUES (1);
                     CREATE TABLE parent_rebuilt (id INTEGER PRIMARY KEY AUTOINCREMENT);
                     INSERT INTO parent_rebuilt (id) SELECT id FROM parent;
                     DROP TABLE parent;
                     ALTER TABLE parent_rebuilt RENAME TO parent;",
                )?;
                Ok(())
            },
        )
        .expect("the run's own rows all have parents");
        assert_eq!(children(&mut conn), 2);
        // Foreign keys are on again afterwards.
        assert!(
            conn.batch_execute("INSERT INTO child (parent_id) VALUES (9)")
                .is_err()
        );
    }
}
