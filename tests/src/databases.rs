//! One fresh database per test, on each backend.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use keel_migrations::{DatabaseUrl, Migrator, PostgresUrl};

use keel_repo::catalog::{Catalog, ForeignKey, Index};

/// True when running under CI, where a missing PostgreSQL server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A database a test owns; the same test body runs on either backend.
pub trait TestDatabase {
    /// The backend's sync connection type.
    type Connection: Connection;

    /// The URL keel's own code would be given for this database.
    fn database_url(&self) -> DatabaseUrl;

    /// A new connection to the database (SQLite: with foreign keys on).
    fn connect(&self) -> Self::Connection;

    /// Tables in the database, sorted, without diesel's bookkeeping table.
    fn tables(&self, conn: &mut Self::Connection) -> Vec<String>;

    /// Every index, with its columns in index order, sorted by table and name.
    fn indexes(&self, conn: &mut Self::Connection) -> Vec<Index>;

    /// Every foreign key, sorted by table and column.
    fn foreign_keys(&self, conn: &mut Self::Connection) -> Vec<ForeignKey>;

    /// Applies keel's migrations the way `keel migrate run` does.
    fn migrate(&self) -> Vec<String> {
        Migrator::connect(&self.database_url())
            .and_then(|mut m| m.run_pending())
            .expect("migrations apply")
    }

    /// Applies keel's migrations, then connects.
    fn migrated_connection(&self) -> Self::Connection {
        self.migrate();
        self.connect()
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A PostgreSQL database of the test's own, created empty and dropped (with
/// any connections still open to it) when this value is dropped.
pub struct PgTestDatabase {
    server_url: String,
    name: String,
}

impl PgTestDatabase {
    /// The server tests use: `KEEL_TEST_PG_URL`, or the local one.
    pub fn server_url() -> String {
        std::env::var("KEEL_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    /// Creates a fresh, empty database. Returns `None` after a loud message
    /// when no server answers, unless `CI` is set: then it panics.
    pub fn create() -> Option<Self> {
        let server_url = Self::server_url();
        let mut admin = match PgConnection::establish(&database_on(&server_url, "postgres")) {
            Ok(conn) => conn,
            Err(error) => {
                // KEEL_TEST_PG_URL may hold a password: shown hidden.
                let (server, error) = match PostgresUrl::parse(&server_url) {
                    Ok(url) => (url.to_string(), url.redact(&error.to_string())),
                    Err(invalid) => (format!("KEEL_TEST_PG_URL ({invalid})"), String::new()),
                };
                assert!(
                    !in_ci(),
                    "CI is set and PostgreSQL at {server} is unreachable: {error}"
                );
                eprintln!(
                    "\n!!! SKIPPED: PostgreSQL at {server} is unreachable ({error}).\n!!! Start it or set KEEL_TEST_PG_URL; with CI set this test fails.\n"
                );
                return None;
            }
        };
        let name = format!("keel_test_{}", unique_suffix());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        Some(Self { server_url, name })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        database_on(&self.server_url, &self.name)
    }
}

/// The connection string for database `name` on the server `server` names
/// (a URL or a key=value string; its own database name, if any, replaced).
fn database_on(server: &str, name: &str) -> String {
    PostgresUrl::parse(server)
        .and_then(|server| server.with_dbname(name))
        .map_or_else(
            |_| format!("{server}/{name}"),
            |url| url.as_connection_str().to_owned(),
        )
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        let dropped = PgConnection::establish(&database_on(&self.server_url, "postgres")).and_then(
            |mut admin| {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)
            },
        );
        if let Err(error) = dropped {
            eprintln!(
                "warning: could not drop test database {}: {error}",
                self.name
            );
        }
    }
}

impl TestDatabase for PgTestDatabase {
    type Connection = PgConnection;

    fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url()).expect("the test database URL parses")
    }

    fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url()).expect("connect to the test database")
    }

    fn tables(&self, conn: &mut PgConnection) -> Vec<String> {
        conn.tables().expect("read the catalog")
    }

    fn indexes(&self, conn: &mut PgConnection) -> Vec<Index> {
        conn.indexes().expect("read the catalog")
    }

    fn foreign_keys(&self, conn: &mut PgConnection) -> Vec<ForeignKey> {
        conn.foreign_keys().expect("read the catalog")
    }
}

/// A SQLite database file in a temporary directory of its own, removed with
/// this value.
pub struct SqliteTestDatabase {
    dir: tempfile::TempDir,
}

impl SqliteTestDatabase {
    /// Creates a temporary directory for the database; the file itself is
    /// created by the first connection.
    pub fn create() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// The database file's path.
    pub fn path(&self) -> String {
        self.dir.path().join("keel.db").display().to_string()
    }
}

impl TestDatabase for SqliteTestDatabase {
    type Connection = SqliteConnection;

    fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::Sqlite(self.path())
    }

    fn connect(&self) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(&self.path()).expect("open the test database");
        conn.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .expect("configure the SQLite connection");
        conn
    }

    fn tables(&self, conn: &mut SqliteConnection) -> Vec<String> {
        conn.tables().expect("read the catalog")
    }

    fn indexes(&self, conn: &mut SqliteConnection) -> Vec<Index> {
        conn.indexes().expect("read the catalog")
    }

    fn foreign_keys(&self, conn: &mut SqliteConnection) -> Vec<ForeignKey> {
        conn.foreign_keys().expect("read the catalog")
    }
}
