//! `keel migrate`: apply, revert, redo and list the embedded migrations,
//! and make a new one for both backends.

use clap::Subcommand;
use keel_migrations::{DatabaseUrl, MigrateError, MigrationState, Migrator};

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Apply every pending migration.
    Run,
    /// Revert the newest applied migrations.
    Revert {
        /// How many to revert; more than are applied reverts them all.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        steps: u32,
    },
    /// Revert the newest applied migration and apply it again.
    Redo,
    /// List every migration and whether it is applied.
    Status,
    /// Create a migration for both backends: migrations/postgres/<version>_NAME
    /// and migrations/sqlite/<version>_NAME, each with up.sql and down.sql.
    New {
        /// What the migration does, in lowercase words joined by underscores
        /// (`create_tags`, `add_parent_to_comments`).
        name: String,
        /// The folder holding postgres/ and sqlite/.
        #[arg(long, default_value = "migrations")]
        dir: std::path::PathBuf,
    },
}

pub(crate) fn run(
    database_url: Option<&str>,
    command: &MigrateCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    if let MigrateCommand::New { name, dir } = command {
        // Files only: no database is involved.
        let made = crate::new_migration::create(dir, name, chrono::Utc::now())?;
        println!("{made}");
        return Ok(());
    }
    // KEEL_MIGRATION_URL when set (past a pooler, straight to the primary),
    // else the database (clap fills `database_url` from DATABASE_URL too).
    let config = crate::database_config(database_url)?;
    on_database(config.migration_url(), command).map_err(Into::into)
}

fn on_database(url: &DatabaseUrl, command: &MigrateCommand) -> Result<(), MigrateError> {
    let mut migrator = Migrator::connect(url)?;
    match command {
        MigrateCommand::Run => {
            let applied = migrator.run_pending()?;
            if applied.is_empty() {
                println!("{url}: nothing pending, the schema is up to date");
            } else {
                println!("{url}: applied {}", count(applied.len()));
                print_names(&applied);
            }
        }
        MigrateCommand::Revert { steps } => {
            let reverted = migrator.revert(*steps as usize)?;
            if reverted.is_empty() {
                println!("{url}: nothing to revert, no migration is applied");
            } else {
                println!("{url}: reverted {}", count(reverted.len()));
                print_names(&reverted);
            }
        }
        MigrateCommand::Redo => match migrator.redo()? {
            Some(name) => println!("{url}: reverted and applied again {name}"),
            None => println!("{url}: nothing to redo, no migration is applied"),
        },
        MigrateCommand::Status => {
            let status = migrator.status()?;
            let pending = status
                .iter()
                .filter(|m| m.state == MigrationState::Pending)
                .count();
            println!(
                "{url}: {} applied, {pending} pending",
                status.len() - pending
            );
            for migration in status {
                let state = match migration.state {
                    MigrationState::Applied => "applied",
                    MigrationState::Pending => "pending",
                };
                println!("  {state:<8} {}", migration.name);
            }
        }
        MigrateCommand::New { .. } => {}
    }
    Ok(())
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 migration".to_owned()
    } else {
        format!("{n} migrations")
    }
}

fn print_names(names: &[String]) {
    for name in names {
        println!("  {name}");
    }
}
