//! keel's SQL migrations, embedded in the binary for each backend, and the
//! operations `keel migrate` runs on them.
//!
//! The SQL lives in `migrations/postgres` and `migrations/sqlite` at the
//! workspace root (one folder per migration, made with `diesel migration
//! generate`); both folders hold the same versions, so a database's status
//! reads the same on either backend. [`DatabaseUrl`] picks the backend from a
//! URL, and [`Migrator`] applies, reverts and lists migrations on it.

mod database_url;
mod migrator;

pub use database_url::{
    ConninfoProblem, DatabaseUrl, DatabaseUrlError, PostgresUrl, UrlPart, UrlProblem,
};
pub use migrator::{
    MigrateError, MigrationState, MigrationStatus, Migrator, POSTGRES, POSTGRES_LOCK_KEY, SQLITE,
    run_pending_on_sqlite,
};
