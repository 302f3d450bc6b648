//! Fixtures for keel's integration tests: a fresh database per test, on a real
//! PostgreSQL server or in a temporary SQLite file, dropped when the test ends,
//! and read-outs of the live schema from each backend's catalog.
//!
//! PostgreSQL tests need a server at `KEEL_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432`). Without one they skip loudly, except
//! when `CI` is set: then they fail, so CI never passes on skipped tests.

mod cluster;
mod databases;

pub use cluster::PgCluster;
pub use databases::{PgTestDatabase, SqliteTestDatabase, TestDatabase, in_ci};
pub use keel_repo::catalog::{ForeignKey, Index};

/// keel-repo's configuration for a test database: the defaults, with the
/// async pool that `KEEL_POOL` names (CI runs the suite once on deadpool and
/// once with `KEEL_POOL=bb8`; bb8 needs this crate's `bb8` feature).
pub fn config(url: keel_repo::DatabaseUrl) -> keel_repo::DatabaseConfig {
    let mut config = keel_repo::DatabaseConfig::new(url);
    if std::env::var("KEEL_POOL").is_ok_and(|pool| pool == "bb8") {
        config.pool = keel_repo::PoolKind::Bb8;
    }
    config
}

/// Writes each test twice, once per backend, in modules `postgres` and
/// `sqlite`. Each body receives `$db`, a fresh, empty [`TestDatabase`] of its
/// own, dropped when the test returns.
///
/// ```ignore
/// keel_tests::backend_tests! {
///     fn migrations_apply(db) {
///         let mut conn = db.migrated_connection();
///         // ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* fn $name:ident($db:ident) $body:block )*) => {
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let Some($db) = $crate::PgTestDatabase::create() else { return };
                    #[allow(unused_variables)]
                    let $db = &$db;
                    $body
                }
            )*
        }
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let $db = $crate::SqliteTestDatabase::create();
                    #[allow(unused_variables)]
                    let $db = &$db;
                    $body
                }
            )*
        }
    };
}
