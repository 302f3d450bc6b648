//! One sync connection to whichever backend the configuration names: for
//! operator work (`keel doctor`, `keel explain`) that needs no pool.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};

use crate::{DatabaseConfig, DatabaseUrl, RepoError};

/// A single connection, PostgreSQL or SQLite.
pub enum AnyConnection {
    /// PostgreSQL (libpq).
    Postgres(PgConnection),
    /// SQLite, set up as pooled connections are (busy timeout, WAL, foreign keys).
    Sqlite(SqliteConnection),
}

impl AnyConnection {
    /// The connection as the operations and `explain!` take it.
    pub fn conn(&mut self) -> crate::Conn<'_> {
        match self {
            Self::Postgres(c) => crate::Conn::Postgres(c),
            Self::Sqlite(c) => crate::Conn::Sqlite(c),
        }
    }

    /// Opens a connection to the database `config` names.
    pub fn establish(config: &DatabaseConfig) -> Result<Self, RepoError> {
        // libpq's messages may quote the connection string: through
        // connection_error, which hides the password (`keel explain` printed
        // it whole when it went straight to `format!`).
        let failed = |e: ConnectionError| config.connection_error(e);
        Ok(match &config.url {
            DatabaseUrl::Postgres(url) => {
                Self::Postgres(PgConnection::establish(&config.postgres_url(url)).map_err(failed)?)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn = crate::sqlite_plans::establish(path, config.sqlite_stable_plans)
                    .map_err(failed)?;
                conn.batch_execute(&config.sqlite_setup_sql())?;
                Self::Sqlite(conn)
            }
        })
    }
}
