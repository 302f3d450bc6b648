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
