//! `keel doctor`: connects and reports what is wrong with the schema:
//! pending migrations, unindexed foreign keys, foreign keys without an
//! ON DELETE action, tables without a primary key, drift from the compiled
//! schema; and each read replica's role and lag. Exit 0 when healthy, 1
//! with the list otherwise.

use keel_migrations::{MigrationState, Migrator};
use keel_repo::doctor::{self, Finding};
use keel_repo::{AnyConnection, DatabaseConfig, ReplicaRole, ReplicaStatus};
use serde::Serialize;

/// Options of `keel doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    database: String,
    backend: &'static str,
    healthy: bool,
    findings: Vec<Finding>,
    replicas: Vec<ReplicaStatus>,
}

/// Runs the checks; `Ok(false)` when there are findings.
pub(crate) fn run(
    config: &DatabaseConfig,
    args: &DoctorArgs,
) -> Result<bool, Box<dyn std::error::Error>> {
    let mut findings: Vec<Finding> = Migrator::connect(config.migration_url())?
        .status()?
        .into_iter()
        .filter(|m| m.state == MigrationState::Pending)
        .map(|m| Finding {
            check: "pending_migration",
            message: format!(
                "migration {} is not applied: run `keel migrate run`",
                m.name
            ),
            table: None,
            column: None,
        })
        .collect();
    let compiled = keel_repo::tables::compiled_columns();
    findings.extend(match AnyConnection::establish(config)? {
        AnyConnection::Postgres(mut conn) => doctor::diagnose(&mut conn, &compiled)?,
        AnyConnection::Sqlite(mut conn) => doctor::diagnose(&mut conn, &compiled)?,
    });
    let replicas = keel_repo::replicas::inspect(config)?;
    findings.extend(replicas.iter().filter(|r| !r.in_rotation).map(|replica| {
        let why = replica.last_error.as_deref().unwrap_or("out of rotation");
        Finding {
            check: if replica.role == ReplicaRole::Primary {
                "replica_promoted"
            } else {
                "replica_out_of_rotation"
            },
            message: format!("replica {} takes no reads: {why}", replica.url),
            table: None,
            column: None,
        }
    }));
    let report = Report {
        database: config.url.to_string(),
        backend: config.url.backend_name(),
        healthy: findings.is_empty(),
        findings,
        replicas,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.healthy {
        println!("{} ({}): healthy", report.database, report.backend);
    } else {
        println!(
            "{} ({}): {} problem(s)",
            report.database,
            report.backend,
            report.findings.len()
        );
        for finding in &report.findings {
            println!("  [{}] {}", finding.check, finding.message);
        }
    }
    if !args.json {
        for replica in &report.replicas {
            let lag = replica
                .lag_ms
                .map_or_else(|| "unknown".to_owned(), |ms| format!("{ms} ms"));
            println!(
                "  replica {}: {}, lag {lag}, {}",
                replica.url,
                replica.role.as_str(),
                if replica.in_rotation {
                    "in rotation"
                } else {
                    "out of rotation"
                }
            );
        }
    }
    Ok(report.healthy)
}
