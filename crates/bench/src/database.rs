//! The databases the bench owns (a fresh SQLite file, a uniquely named
//! PostgreSQL database dropped at the end) and the untimed chores around the
//! steps: fresh tables, ANALYZE, and the load check.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use keel_migrations::{DatabaseUrl, Migrator, PostgresUrl};
use keel_workload::{LoadChecksum, Workload};

use crate::baseline::sqlite;
use crate::steps::Backend;

/// A database of the bench's own, removed when dropped.
pub enum BenchDatabase {
    /// A SQLite file in a directory that is deleted with it.
    Sqlite {
        /// Holds the file; removed with it when this value drops.
        _dir: tempfile::TempDir,
        /// The file.
        path: String,
    },
    /// A PostgreSQL database, dropped (with its connections) at the end.
    Postgres {
        /// The server's `postgres` database, to create and drop this one from.
        admin: Box<PostgresUrl>,
        /// This database (see [`BenchDatabase::url`]).
        url: Box<PostgresUrl>,
        /// The database's name.
        name: String,
    },
}

impl BenchDatabase {
    /// A new, empty database. SQLite's file goes in a fresh directory under
    /// `work_dir` (on disk, where a real database would be).
    pub fn create(backend: Backend, pg_server: &str, work_dir: &Path) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                std::fs::create_dir_all(work_dir)
                    .with_context(|| format!("creating {}", work_dir.display()))?;
                let dir = tempfile::Builder::new()
                    .prefix("sqlite-")
                    .tempdir_in(work_dir)?;
                let path = dir.path().join("bench.db").display().to_string();
                Ok(Self::Sqlite { _dir: dir, path })
            }
            Backend::Postgres => {
                // The server's URL or key=value string; its database, if it
                // names one, is replaced. Errors never quote it.
                let server =
                    PostgresUrl::parse(pg_server).map_err(|e| anyhow::anyhow!("--pg-url: {e}"))?;
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let name = format!("keel_bench_{}_{nanos}", std::process::id());
                let admin = server.with_dbname("postgres")?;
                let url = PostgresUrl::parse(
                    &server
                        .with_dbname(&name)?
                        .connection_str_with_default("sslmode", "disable"),
                )?;
                let mut client =
                    postgres::Client::connect(admin.as_connection_str(), postgres::NoTls)
                        .with_context(|| format!("connecting to PostgreSQL at {admin}"))?;
                client.batch_execute(&format!("CREATE DATABASE {name}"))?;
                Ok(Self::Postgres {
                    admin: Box::new(admin),
                    url: Box::new(url),
                    name,
                })
            }
        }
    }

    /// The URL keel and the baselines are given. On PostgreSQL it asks for
    /// no TLS (`sslmode=disable`, unless `--pg-url` sets `sslmode`): the
    /// hand-written side connects without
    /// TLS (`NoTls`), and libpq, under keel's sync mode, would otherwise
    /// encrypt every statement whenever the server offers TLS (libpq's
    /// default `sslmode=prefer`), so keel's ratio would time encryption
    /// instead of keel.
    pub fn url(&self) -> DatabaseUrl {
        match self {
            Self::Sqlite { path, .. } => DatabaseUrl::Sqlite(path.clone()),
            Self::Postgres { url, .. } => DatabaseUrl::Postgres(PostgresUrl::clone(url)),
        }
    }

    /// Where the database is, for the report (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => path.clone(),
            Self::Postgres { url, .. } => url.to_string(),
        }
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        match self {
            // The TempDir removes the directory and the file when it drops.
            Self::Sqlite { .. } => {}
            Self::Postgres { admin, name, .. } => {
                let dropped = postgres::Client::connect(admin.as_connection_str(), postgres::NoTls)
                    .and_then(|mut admin| {
                        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    });
                if let Err(error) = dropped {
                    eprintln!("keel-bench: could not drop database {name}: {error}");
                }
            }
        }
    }
}

/// A plain connection for the chores between steps (never timed).
pub enum Admin {
    /// rusqlite.
    Sqlite {
        /// The connection.
        conn: rusqlite::Connection,
        /// For the migrations.
        url: DatabaseUrl,
    },
    /// postgres.
    Postgres {
        /// The connection.
        client: postgres::Client,
        /// For the migrations.
        url: DatabaseUrl,
    },
}

impl Admin {
    /// Connects to the bench's database.
    pub fn connect(database: &BenchDatabase) -> anyhow::Result<Self> {
        let url = database.url();
        Ok(match &url {
            DatabaseUrl::Sqlite(path) => Self::Sqlite {
                conn: sqlite::open(path)?,
                url,
            },
            DatabaseUrl::Postgres(raw) => Self::Postgres {
                client: postgres::Client::connect(raw.as_connection_str(), postgres::NoTls)?,
                url,
            },
        })
    }

    /// Fresh, empty tables: every migration reverted (their `down.sql` drop
    /// the tables, so ids start at 1 again), then applied again. The bench
    /// names no table here, so a new migration needs no change.
    pub fn reset_tables(&mut self) -> anyhow::Result<()> {
        let url = match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url.clone(),
        };
        let mut migrator = Migrator::connect(&url).context("connecting to migrate")?;
        migrator
            .revert(usize::MAX)
            .context("reverting keel's migrations")?;
        if let Self::Sqlite { conn, .. } = self {
            // Dropped tables leave their pages on SQLite's freelist, and
            // the WAL keeps its size: the next load would reuse both,
            // while the first load of a run grows the file. Shrinking
            // both lets every load, keel's or hand-written, start from
            // the same empty file.
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        }
        migrator
            .run_pending()
            .context("applying keel's migrations")?;
        Ok(())
    }

    /// The PostgreSQL server's version (`SHOW server_version`); SQLite's library version.
    pub fn server_version(&mut self) -> anyhow::Result<String> {
        Ok(match self {
            Self::Sqlite { .. } => rusqlite::version().to_owned(),
            Self::Postgres { client, .. } => {
                client.query_one("SHOW server_version", &[])?.try_get(0)?
            }
        })
    }

    /// Planner statistics after a load: `VACUUM ANALYZE` on PostgreSQL,
    /// `ANALYZE` on SQLite, where the WAL is also checkpointed into the
    /// file, so every read step starts from the same settled file whatever
    /// the load left in the WAL.
    pub fn analyze(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { conn, .. } => {
                conn.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?
            }
            Self::Postgres { client, .. } => client.batch_execute("VACUUM ANALYZE")?,
        }
        Ok(())
    }

    /// What the tables hold: row counts and `mismatched_rows`.
    pub fn load_checksum(&mut self, workload: &Workload) -> anyhow::Result<LoadChecksum> {
        let counts = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts), \
                      (SELECT count(*) FROM comments)";
        let check = workload.mismatched_rows_sql();
        let (users, posts, comments, mismatched): (i64, i64, i64, i64) = match self {
            Self::Sqlite { conn, .. } => {
                let (users, posts, comments) =
                    conn.query_row(counts, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                let mismatched = conn.query_row(&check, [], |r| r.get(0))?;
                (users, posts, comments, mismatched)
            }
            Self::Postgres { client, .. } => {
                let row = client.query_one(counts, &[])?;
                let mismatched = client.query_one(&check, &[])?.try_get(0)?;
                (
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    mismatched,
                )
            }
        };
        Ok(LoadChecksum {
            users: u64::try_from(users)?,
            posts: u64::try_from(posts)?,
            comments: u64::try_from(comments)?,
            mismatched_rows: u64::try_from(mismatched)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_database_replaces_the_servers_and_hides_its_password() {
        let server =
            PostgresUrl::parse("postgres://u:s3cret@h:5432/keel?sslmode=require").expect("valid");
        let url = server.with_dbname("keel_bench_1").expect("valid");
        let url = url.connection_str_with_default("sslmode", "disable");
        assert_eq!(
            url,
            "postgres://u:s3cret@h:5432/keel_bench_1?sslmode=require"
        );
        let shown = PostgresUrl::parse(&url).expect("valid").to_string();
        assert_eq!(
            shown,
            "postgres://u:***@h:5432/keel_bench_1?sslmode=require"
        );
    }
}
