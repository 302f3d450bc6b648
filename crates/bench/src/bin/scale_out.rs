//! keel-scale-out: reads on PostgreSQL replicas, measured side by side on
//! one machine. It starts a private primary and two hot standbys (initdb,
//! `pg_basebackup`; the server programs must be installed), loads the
//! workload's users (docs/workload.md) on the primary, and then, in one run:
//!
//! - B4 and B6 reads through keel-repo's async pool with 0, 1 and 2
//!   replicas: B4's lookups by email one after another, B6's lookups by id
//!   from 64 tasks. Unlike the workload's B4, each lookup is a pool call (a
//!   session would pin the step to the primary).
//! - A write-then-read mix (64 tasks, each creating a user and reading it
//!   back) on 1 replica, with read-your-writes on (a scope per cycle: the
//!   read waits for the replica, or reads the primary) and off (no scope:
//!   the read may miss the write).
//!
//! Primary, standbys and the load share the same cores: the figures say what
//! routing costs and how the load spreads, not what separate servers would
//! give. Prints a Markdown table; `--out` also writes it as JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use keel_models::NewUser;
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::prelude::*;
use keel_repo::{DatabaseConfig, DatabaseUrl, PostgresUrl, QueryScope};
use keel_tests::PgCluster;
use keel_workload::Workload;
use serde::Serialize;

/// Options.
#[derive(Debug, Parser)]
#[command(
    name = "keel-scale-out",
    about = "Reads on 0, 1 and 2 PostgreSQL replicas, side by side"
)]
struct Args {
    /// Users loaded (U).
    #[arg(long, default_value_t = 10_000)]
    users: i64,
    /// Lookups per B4 and B6 run.
    #[arg(long, default_value_t = 10_000)]
    lookups: usize,
    /// Write-then-read cycles per mix run.
    #[arg(long, default_value_t = 2_000)]
    cycles: u64,
    /// Runs of each measurement (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Also write the results here, as JSON.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

const TASKS: usize = 64;
const POOL_SIZE: u32 = 16;

#[derive(Debug, Serialize)]
struct ReadRow {
    step: &'static str,
    replicas: usize,
    /// Median lookups per second.
    per_second: f64,
    /// Share of the lookups the replicas answered.
    on_replicas: f64,
}

#[derive(Debug, Serialize)]
struct MixRow {
    read_your_writes: bool,
    /// Median write-then-read cycles per second.
    per_second: f64,
    /// Reads that missed their own write, over all runs.
    stale: u64,
    cycles: u64,
    /// Share of the reads the replica answered.
    on_replica: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    host: &'static str,
    users: i64,
    lookups: usize,
    repeat: u32,
    reads: Vec<ReadRow>,
    mix: Vec<MixRow>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workload = Workload::new(args.users, 1, 1).context("workload size")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let Some(primary) = PgCluster::start_primary() else {
        bail!("PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup) are needed");
    };
    let primary_url = DatabaseUrl::parse(&primary.url("postgres"))?;
    runtime.block_on(async {
        let mut config = DatabaseConfig::new(primary_url.clone());
        config.pool_size = POOL_SIZE;
        let db = AsyncDatabase::connect(&config).await?;
        db.run_migrations().await?;
        keel::seed::seed(&db, &workload).await?;
        anyhow::Ok(())
    })?;
    // Copied after the load: each standby starts with the data.
    let standbys = [primary.start_standby(), primary.start_standby()];
    let replica_urls = standbys
        .iter()
        .map(|standby| PostgresUrl::parse(&standby.url("postgres")))
        .collect::<Result<Vec<_>, _>>()?;
    let report = runtime.block_on(measure(&args, &workload, primary_url, &replica_urls))?;
    print_report(&report);
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let missed: u64 = report
        .mix
        .iter()
        .filter(|row| row.read_your_writes)
        .map(|row| row.stale)
        .sum();
    anyhow::ensure!(
        missed == 0,
        "{missed} reads missed their own write with read-your-writes on"
    );
    Ok(())
}

async fn measure(
    args: &Args,
    workload: &Workload,
    primary: DatabaseUrl,
    replicas: &[PostgresUrl],
) -> anyhow::Result<Report> {
    let mut pools = Vec::new();
    for count in 0..=replicas.len() {
        let mut config = DatabaseConfig::new(primary.clone());
        config.pool_size = POOL_SIZE;
        config.replica_urls = replicas[..count].to_vec();
        let db = AsyncDatabase::connect(&config).await?;
        db.warm_up(POOL_SIZE).await?;
        wait_in_rotation(&db).await?;
        pools.push(Arc::new(db));
    }
    let ids = workload.lookup_ids(args.lookups);
    // One untimed pass per setup: every pooled connection, the replicas'
    // included, has its statements prepared and its pages cached.
    for db in &pools {
        sequential_lookups(db, &ids).await?;
        concurrent_lookups(db, &ids).await?;
    }
    let mut b4: Vec<Vec<Sample>> = vec![Vec::new(); pools.len()];
    let mut b6: Vec<Vec<Sample>> = vec![Vec::new(); pools.len()];
    for run in 0..args.repeat {
        // The order turns each run, so no setup always goes first.
        for offset in 0..pools.len() {
            let index = (offset + run as usize) % pools.len();
            let db = &pools[index];
            b4[index].push(sequential_lookups(db, &ids).await?);
            b6[index].push(concurrent_lookups(db, &ids).await?);
        }
    }
    let mut reads = Vec::new();
    for (step, samples) in [("B4", &b4), ("B6", &b6)] {
        for (count, runs) in samples.iter().enumerate() {
            reads.push(ReadRow {
                step,
                replicas: count,
                per_second: median(runs.iter().map(|s| s.per_second)),
                on_replicas: median(runs.iter().map(|s| s.on_replicas)),
            });
        }
    }
    let mut mix = Vec::new();
    let one_replica = &pools[1];
    let mut on = Vec::new();
    let mut off = Vec::new();
    for run in 0..args.repeat {
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for scoped in order {
            let sample = write_then_read(one_replica, args.cycles, scoped, run).await?;
            if scoped {
                on.push(sample)
            } else {
                off.push(sample)
            }
        }
    }
    for (read_your_writes, samples) in [(true, &on), (false, &off)] {
        mix.push(MixRow {
            read_your_writes,
            per_second: median(samples.iter().map(|s| s.per_second)),
            stale: samples.iter().map(|s| s.stale).sum(),
            cycles: args.cycles * u64::from(args.repeat),
            on_replica: median(samples.iter().map(|s| s.on_replicas)),
        });
    }
    Ok(Report {
        host: "same host: primary, standbys and load on one 2-core machine",
        users: args.users,
        lookups: args.lookups,
        repeat: args.repeat,
        reads,
        mix,
    })
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    per_second: f64,
    on_replicas: f64,
    stale: u64,
}

/// Replica reads so far, summed over the pool's replicas.
fn replica_reads(db: &AsyncDatabase) -> u64 {
    db.replica_status().iter().map(|r| r.reads).sum()
}

async fn wait_in_rotation(db: &AsyncDatabase) -> anyhow::Result<()> {
    let started = Instant::now();
    while !db.replica_status().iter().all(|r| r.in_rotation) {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("replicas not in rotation: {:?}", db.replica_status());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn sample(started: Instant, operations: usize, on_replicas: u64, stale: u64) -> Sample {
    let seconds = started.elapsed().as_secs_f64();
    let operations = operations as f64;
    Sample {
        per_second: operations / seconds,
        on_replicas: on_replicas as f64 / operations,
        stale,
    }
}

/// B4 on the pool: lookups by email, one after another.
async fn sequential_lookups(db: &AsyncDatabase, ids: &[i32]) -> anyhow::Result<Sample> {
    let before = replica_reads(db);
    let started = Instant::now();
    for &id in ids {
        let user = db.users().get_by_email(&Workload::email(id)).await?;
        anyhow::ensure!(user.id == id, "B4 found user {} for id {id}", user.id);
    }
    Ok(sample(started, ids.len(), replica_reads(db) - before, 0))
}

/// B6: lookups by id from 64 tasks; task t takes positions t, t + 64, …
async fn concurrent_lookups(db: &Arc<AsyncDatabase>, ids: &[i32]) -> anyhow::Result<Sample> {
    let before = replica_reads(db);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let db = db.clone();
        let mine: Vec<i32> = ids.iter().skip(task).step_by(TASKS).copied().collect();
        tasks.spawn(async move {
            for id in mine {
                let user = db.users().get_by_id(id).await?;
                anyhow::ensure!(user.id == id, "B6 found user {} for id {id}", user.id);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(sample(started, ids.len(), replica_reads(db) - before, 0))
}

/// 64 tasks, each creating users and reading each back at once; in a scope
/// per cycle (`read_your_writes`) or with none.
async fn write_then_read(
    db: &Arc<AsyncDatabase>,
    cycles: u64,
    read_your_writes: bool,
    run: u32,
) -> anyhow::Result<Sample> {
    let before = replica_reads(db);
    let stale = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = cycles.div_ceil(TASKS as u64);
    for task in 0..TASKS as u64 {
        let (db, stale) = (db.clone(), stale.clone());
        tasks.spawn(async move {
            for n in 0..per_task {
                let user = NewUser {
                    email: format!("mix-{read_your_writes}-{run}-{task}-{n}@example.com"),
                    full_name: "Mix".to_owned(),
                    first_name: None,
                    last_name: None,
                    is_active: true,
                };
                let cycle = async {
                    let created = db.users().create(&user).await?;
                    db.users().get_by_id(created.id).await
                };
                let read = if read_your_writes {
                    QueryScope::new().run_async(cycle).await
                } else {
                    cycle.await
                };
                match read {
                    Ok(_) => {}
                    Err(RepoError::NotFound { .. }) => {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let done = usize::try_from(per_task * TASKS as u64)?;
    Ok(sample(
        started,
        done,
        replica_reads(db) - before,
        stale.load(Ordering::Relaxed),
    ))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn print_report(report: &Report) {
    println!(
        "# Reads on replicas ({}), U={}, {} lookups, median of {}\n",
        report.host, report.users, report.lookups, report.repeat
    );
    println!("| step | replicas | lookups/s | vs 0 replicas | answered by replicas |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for row in &report.reads {
        let base = report
            .reads
            .iter()
            .find(|r| r.step == row.step && r.replicas == 0)
            .map_or(1.0, |r| r.per_second);
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.0}% |",
            row.step,
            row.replicas,
            row.per_second,
            row.per_second / base,
            row.on_replicas * 100.0
        );
    }
    println!(
        "\n| write-then-read, 1 replica | cycles/s | stale reads | reads answered by the replica |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for row in &report.mix {
        println!(
            "| read-your-writes {} | {:.0} | {} of {} | {:.0}% |",
            if row.read_your_writes { "on" } else { "off" },
            row.per_second,
            row.stale,
            row.cycles,
            row.on_replica * 100.0
        );
    }
}
