//! `keel doctor`: connects and reports what is wrong with the schema:
//! pending migrations, unindexed foreign keys, foreign keys without an
//! ON DELETE action, tables without a primary key, drift from the compiled
//! schema. Exit 0 when healthy, 1 with the list otherwise.

use keel_migrations::{MigrationState, Migrator};
use keel_repo::doctor::{self, Finding};
use keel_repo::{AnyConnection, DatabaseConfig};
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
    let report = Report {
        database: config.url.to_string(),
        backend: config.url.backend_name(),
        healthy: findings.is_empty(),
        findings,
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
    Ok(report.healthy)
}
