//! Fixtures for keel's integration tests: a fresh database per test, on a real
//! PostgreSQL server or in a temporary SQLite file, dropped when the test ends,
//! and read-outs of the live schema from each backend's catalog.
//!
//! PostgreSQL tests need a server at `KEEL_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432`). Without one they skip loudly, except
//! when `CI` is set: then they fail, so CI never passes on skipped tests. The
//! same holds for the programs the private fixtures run: [`PgCluster`]
//! (`initdb`, `pg_ctl`) and [`PgBouncer`] (`pgbouncer`).

mod cluster;
mod databases;
mod pgbouncer;

pub use cluster::PgCluster;
pub use databases::{PgTestDatabase, SqliteTestDatabase, TestDatabase, in_ci};
pub use keel_repo::catalog::{ForeignKey, Index};
pub use pgbouncer::{PgBouncer, PoolMode};

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

/// The configuration repository tests connect with: [`config`] on the
/// fixture's database, migrated, with a pool of 4.
pub fn repo_config<D: TestDatabase>(fixture: &D) -> keel_repo::DatabaseConfig {
    fixture.migrate();
    let mut config = config(fixture.database_url());
    config.pool_size = 4;
    config
}

/// keel's own tests run strict: a likely N+1 fails the test.
pub fn strict_scope(name: &str) -> keel_repo::QueryScope {
    keel_repo::QueryScope::named(name.to_owned()).strict(true)
}

/// Writes each repository test four times: sync and async mode, on
/// PostgreSQL and SQLite (modules `sync_postgres`, `sync_sqlite`,
/// `async_postgres`, `async_sqlite`). Each body gets `$db`, a pool on a
/// fresh migrated database, and `$fixture`, that database; it runs in a
/// strict scope. Inside, `run!(call)` awaits in async mode and not in sync
/// mode, `in_scope!(scope, call)` runs a call in a scope, and
/// `within_budget!(n, call)` asserts at most `n` statements.
#[macro_export]
macro_rules! repo_tests {
    ($( fn $name:ident($db:ident, $fixture:ident) $body:block )*) => {
        mod sync_postgres {
            use super::*;
            $( #[test] fn $name() {
                let Some($fixture) = $crate::PgTestDatabase::create() else { return };
                let $db = keel_repo::sync::Database::connect(&$crate::repo_config(&$fixture)).expect("pool");
                #[allow(unused_macros)]
                macro_rules! run { ($e:expr) => { $e }; }
                #[allow(unused_macros)]
                macro_rules! in_scope { ($scope:expr, $e:expr) => { $scope.run(|| $e) }; }
                #[allow(unused_macros)]
                macro_rules! within_budget { ($n:expr, $e:expr) => { keel_repo::assert_statements!(<= $n, { $e }) }; }
                $crate::strict_scope(stringify!($name)).run(|| $body)
            } )*
        }
        mod sync_sqlite {
            use super::*;
            $( #[test] fn $name() {
                let $fixture = $crate::SqliteTestDatabase::create();
                let $db = keel_repo::sync::Database::connect(&$crate::repo_config(&$fixture)).expect("pool");
                #[allow(unused_macros)]
                macro_rules! run { ($e:expr) => { $e }; }
                #[allow(unused_macros)]
                macro_rules! in_scope { ($scope:expr, $e:expr) => { $scope.run(|| $e) }; }
                #[allow(unused_macros)]
                macro_rules! within_budget { ($n:expr, $e:expr) => { keel_repo::assert_statements!(<= $n, { $e }) }; }
                $crate::strict_scope(stringify!($name)).run(|| $body)
            } )*
        }
        mod async_postgres {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let Some($fixture) = $crate::PgTestDatabase::create() else { return };
                let $db = keel_repo::asynchronous::AsyncDatabase::connect(&$crate::repo_config(&$fixture)).await.expect("pool");
                #[allow(unused_macros)]
                macro_rules! run { ($e:expr) => { $e.await }; }
                #[allow(unused_macros)]
                macro_rules! in_scope { ($scope:expr, $e:expr) => { $scope.run_async(async { $e }).await }; }
                #[allow(unused_macros)]
                macro_rules! within_budget { ($n:expr, $e:expr) => { keel_repo::assert_statements_async!(<= $n, async { $e }) }; }
                $crate::strict_scope(stringify!($name)).run_async(async { $body }).await
            } )*
        }
        mod async_sqlite {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let $fixture = $crate::SqliteTestDatabase::create();
                let $db = keel_repo::asynchronous::AsyncDatabase::connect(&$crate::repo_config(&$fixture)).await.expect("pool");
                #[allow(unused_macros)]
                macro_rules! run { ($e:expr) => { $e.await }; }
                #[allow(unused_macros)]
                macro_rules! in_scope { ($scope:expr, $e:expr) => { $scope.run_async(async { $e }).await }; }
                #[allow(unused_macros)]
                macro_rules! within_budget { ($n:expr, $e:expr) => { keel_repo::assert_statements_async!(<= $n, async { $e }) }; }
                $crate::strict_scope(stringify!($name)).run_async(async { $body }).await
            } )*
        }
    };
}
