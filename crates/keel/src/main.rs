//! `keel`: the command line of the keel data layer.
//!
//! Today it manages the schema (`keel migrate run | revert | redo | status`)
//! on the database `DATABASE_URL` names; without one, on the SQLite file
//! `keel.db` in the working directory.

mod migrate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth a word.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("warning: ignoring .env: {error}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Migrate(command) => migrate::run(cli.database_url.as_deref(), command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
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
