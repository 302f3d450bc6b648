//! What a lookup by primary key costs through PgBouncer against a direct
//! connection, in each of keel's modes, side by side in one run:
//!
//! - sync, direct, statement cache on (keel's default);
//! - sync, direct, cache off (what `KEEL_PGBOUNCER=transaction` costs alone);
//! - sync through PgBouncer in transaction pooling, cache off (the correct
//!   setting there);
//! - sync through PgBouncer in session pooling, cache on (the hop alone);
//! - async, direct;
//! - async through PgBouncer in session pooling.
//!
//! One client, one connection, lookups one after another (so the figure is
//! latency: the extra hop and the extra work per statement). The paths take
//! turns in blocks of 200 lookups; a run is LOOKUPS per path, and the median
//! of REPEAT runs is reported.
//! Client, PgBouncer and PostgreSQL share the machine: same-host figures.
//!
//! ```sh
//! cargo run --release -p keel-tests --example pooler_lookups -- [LOOKUPS] [REPEAT]
//! ```
//!
//! Needs the local test server (`KEEL_TEST_PG_URL`) and the `pgbouncer`
//! program, like the tests in `tests/pgbouncer.rs`.

use std::time::{Duration, Instant};

use keel_models::NewUser;
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::prelude::UsersExt as _;
use keel_repo::sync::Database;
use keel_repo::{DatabaseConfig, DatabaseUrl, PgBouncerMode, RepoError};
use keel_tests::{PgBouncer, PgTestDatabase, PoolMode, TestDatabase};

const USERS: usize = 1000;
const BLOCK: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let lookups: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let repeat: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let db = PgTestDatabase::create().ok_or("no PostgreSQL server")?;
    db.migrate();
    let transaction = PgBouncer::start(&db, PoolMode::Transaction).ok_or("no pgbouncer")?;
    let session = PgBouncer::start(&db, PoolMode::Session).ok_or("no pgbouncer")?;

    let config = |url: &str, mode: PgBouncerMode| -> Result<DatabaseConfig, RepoError> {
        let mut config = DatabaseConfig::new(
            DatabaseUrl::parse(url).map_err(|e| RepoError::Connection(e.to_string()))?,
        );
        config.pool_size = 1;
        config.pgbouncer = mode;
        Ok(config)
    };
    let direct = Database::connect(&config(&db.url(), PgBouncerMode::Off)?)?;
    let ids: Vec<i32> = direct
        .users()
        .create_many(&new_users())?
        .iter()
        .map(|u| u.id)
        .collect();

    let sync_paths = [
        ("sync, direct, cache on", direct),
        (
            "sync, direct, cache off",
            Database::connect(&config(&db.url(), PgBouncerMode::Transaction)?)?,
        ),
        (
            "sync, PgBouncer transaction, cache off",
            Database::connect(&config(&transaction.url(), PgBouncerMode::Transaction)?)?,
        ),
        (
            "sync, PgBouncer session, cache on",
            Database::connect(&config(&session.url(), PgBouncerMode::Session)?)?,
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let async_paths = runtime.block_on(async {
        Ok::<_, RepoError>([
            (
                "async, direct",
                AsyncDatabase::connect(&config(&db.url(), PgBouncerMode::Off)?).await?,
            ),
            (
                "async, PgBouncer session",
                AsyncDatabase::connect(&config(&session.url(), PgBouncerMode::Session)?).await?,
            ),
        ])
    })?;

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); sync_paths.len() + async_paths.len()];
    // Each run takes turns in blocks of BLOCK lookups per path, so that
    // whatever else the machine does in a moment weighs on every path alike.
    for _ in 0..repeat {
        let mut run = vec![Duration::ZERO; times.len()];
        for block in 0..lookups.div_ceil(BLOCK) {
            let range = block * BLOCK..lookups.min((block + 1) * BLOCK);
            for (i, (_, pool)) in sync_paths.iter().enumerate() {
                let started = Instant::now();
                for n in range.clone() {
                    pool.users().get_by_id(ids[n % ids.len()])?;
                }
                run[i] += started.elapsed();
            }
            for (i, (_, pool)) in async_paths.iter().enumerate() {
                run[sync_paths.len() + i] += runtime.block_on(async {
                    let started = Instant::now();
                    for n in range.clone() {
                        pool.users().get_by_id(ids[n % ids.len()]).await?;
                    }
                    Ok::<_, RepoError>(started.elapsed())
                })?;
            }
        }
        for (all, this) in times.iter_mut().zip(run) {
            all.push(this);
        }
    }

    let names: Vec<&str> = sync_paths
        .iter()
        .map(|(name, _)| *name)
        .chain(async_paths.iter().map(|(name, _)| *name))
        .collect();
    let rates: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            lookups as f64 / t[t.len() / 2].as_secs_f64()
        })
        .collect();
    println!(
        "{lookups} lookups by id per run, one connection, median of {repeat} interleaved runs; \
         {} (same host)",
        transaction.version()
    );
    println!();
    println!("| path | lookups/s | µs per lookup | against direct, same mode |");
    println!("| --- | ---: | ---: | ---: |");
    for (i, (name, rate)) in names.iter().zip(&rates).enumerate() {
        // The baseline: the first sync path for sync, the first async one for async.
        let base = if i < sync_paths.len() {
            rates[0]
        } else {
            rates[sync_paths.len()]
        };
        println!(
            "| {name} | {rate:.0} | {:.0} | {:.2}× |",
            1e6 / rate,
            rate / base
        );
    }
    Ok(())
}

fn new_users() -> Vec<NewUser> {
    (0..USERS)
        .map(|n| NewUser {
            email: format!("bench{n}@example.com"),
            full_name: format!("Bench {n}"),
            first_name: None,
            last_name: None,
            is_active: true,
        })
        .collect()
}
