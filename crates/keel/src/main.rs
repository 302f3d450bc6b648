//! `keel`: the command line of the keel data layer.
//!
//! - `keel migrate run | revert | redo | status`: the schema migrations;
//!   `keel migrate new NAME`: a new one, for both backends;
//! - `keel serve`: the JSON API on keel-repo's async mode;
//! - `keel seed`: WORKLOAD.md's data, in bulk, resumable;
//! - `keel doctor`: schema health; `keel explain`: query plans.
//!
//! The database is `--database-url`, else `DATABASE_URL` (a `.env` file
//! counts), else the SQLite file `keel.db` in the working directory.

mod doctor;
mod explain;
mod migrate;
mod new_migration;

use keel::{seed, serve};

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_repo::{DatabaseConfig, DatabaseUrl};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "keel: a schema-first data layer on Diesel"
)]
struct Cli {
    /// Database to use: postgres://…, postgresql://…, sqlite://PATH, a file path or :memory:.
    /// Defaults to the SQLite file `keel.db` in the working directory.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply, revert or list the schema migrations embedded in this binary.
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Serve the JSON API (migrates first unless --no-migrate).
    Serve(serve::ServeArgs),
    /// Load WORKLOAD.md's data (resumes an interrupted load).
    Seed(seed::SeedArgs),
    /// Check the live schema: migrations, indexes, foreign keys, drift.
    Doctor(doctor::DoctorArgs),
    /// Print the database's plan for keel's named queries.
    Explain(explain::ExplainArgs),
}

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth a word, though
    // not its line: dotenvy's message quotes it whole, and it may be a
    // DATABASE_URL with a password.
    match dotenvy::dotenv() {
        Err(dotenvy::Error::LineParse(_, at)) => {
            eprintln!(
                "warning: ignoring the rest of .env: a line does not parse (at index {at} of it)"
            );
        }
        Err(error) if !error.not_found() => eprintln!("warning: ignoring .env: {error}"),
        _ => {}
    }
    let cli = Cli::parse();
    let log_writer = init_logging();
    let result =
        match &cli.command {
            Command::Migrate(command) => migrate::run(cli.database_url.as_deref(), command),
            Command::Serve(args) => database_config(cli.database_url.as_deref())
                .and_then(|config| serve::run(config, args)),
            Command::Seed(args) => database_config(cli.database_url.as_deref())
                .and_then(|config| seed::run(config, args)),
            Command::Doctor(args) => database_config(cli.database_url.as_deref())
                .and_then(|config| doctor::run(&config, args))
                .and_then(healthy),
            Command::Explain(args) => database_config(cli.database_url.as_deref())
                .and_then(|config| explain::run(&config, args))
                .and_then(healthy),
        };
    // The log lines still queued are written before the last word.
    drop(log_writer);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Unhealthy>() => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", one_line(&*error));
            ExitCode::FAILURE
        }
    }
}

/// A check found problems and printed them: exit 1, nothing more to say.
#[derive(Debug)]
struct Unhealthy;

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("problems found")
    }
}

impl std::error::Error for Unhealthy {}

fn healthy(ok: bool) -> Result<(), Box<dyn std::error::Error>> {
    if ok { Ok(()) } else { Err(Box::new(Unhealthy)) }
}

/// The pool configuration from the environment, with `--database-url` on top.
fn database_config(
    database_url: Option<&str>,
) -> Result<DatabaseConfig, Box<dyn std::error::Error>> {
    let mut config = DatabaseConfig::from_env()?;
    if let Some(url) = database_url {
        config.url = DatabaseUrl::parse(url)?;
    }
    Ok(config)
}

/// Logs go to stderr; `RUST_LOG` filters them (default: info). They are
/// written by a thread of their own ([`keel::logging::stderr_writer`]);
/// the returned guard writes what is still queued when dropped.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = keel::logging::stderr_writer();
    tracing_subscriber::registry()
        .with(filter)
        .with(keel::logging::layer(writer, ansi))
        .init();
    guard
}

/// Drivers (libpq above all) write multi-line messages; a command line
/// error should be one line.
fn one_line(error: &dyn std::error::Error) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
