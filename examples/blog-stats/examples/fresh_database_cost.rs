//! What one throwaway database costs: `Database::in_memory()` and
//! `AsyncDatabase::in_memory()` (open, migrate, first call), each made
//! `ROUNDS` times. Run with
//! `cargo run --release -p keel-example-blog-stats --example fresh_database_cost`.

use std::time::Instant;

use keel_repo::RepoError;
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::prelude::*;
use keel_repo::sync::Database;

const ROUNDS: u32 = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let db = Database::in_memory()?;
        db.users().page(None, 1)?;
    }
    let sync = started.elapsed() / ROUNDS;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            let db = AsyncDatabase::in_memory().await?;
            db.users().page(None, 1).await?;
        }
        Ok::<_, RepoError>(())
    })?;
    let async_mode = started.elapsed() / ROUNDS;

    println!(
        "fresh migrated in-memory database, mean of {ROUNDS}: sync {sync:?}, async {async_mode:?}"
    );
    Ok(())
}
