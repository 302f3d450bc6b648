//! `keel explain [NAME]`: the database's plan for each named repository
//! query, flagging a full scan where an index should serve.

use keel_repo::explain::Plan;
use keel_repo::{AnyConnection, DatabaseConfig};

/// Options of `keel explain`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// One query to explain (default: all). Names: user_by_email,
    /// active_users, posts_of_authors, comments_of_posts,
    /// posts_by_author_email, users_page, users_by_name.
    name: Option<String>,
}

/// Prints the plans; `Ok(false)` when a query that needs an index scans.
pub(crate) fn run(
    config: &DatabaseConfig,
    args: &ExplainArgs,
) -> Result<bool, Box<dyn std::error::Error>> {
    let queries = keel_repo::tables::explained_queries();
    let selected: Vec<_> = queries
        .iter()
        .filter(|q| args.name.as_deref().is_none_or(|name| name == q.name))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = queries.iter().map(|q| q.name).collect();
        return Err(format!(
            "no query named `{}`; known: {}",
            args.name.as_deref().unwrap_or_default(),
            names.join(", ")
        )
        .into());
    }
    let mut connection = AnyConnection::establish(config)?;
    let mut healthy = true;
    for query in selected {
        let plan: Plan = (query.explain)(&mut connection.conn())?;
        let flagged = query.needs_index && !plan.full_scans.is_empty();
        healthy &= !flagged;
        println!("{} - {}", query.name, query.description);
        for line in &plan.lines {
            println!("    {line}");
        }
        if flagged {
            println!(
                "  FULL SCAN of {} where an index should serve",
                plan.full_scans.join(", ")
            );
        }
    }
    Ok(healthy)
}
