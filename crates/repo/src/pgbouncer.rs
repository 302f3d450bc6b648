//! PgBouncer in transaction pooling: whether async mode can run behind it.
//!
//! In transaction pooling, consecutive transactions of one client connection
//! may run on different server connections, and a server connection keeps
//! what earlier clients prepared on it. A statement prepared under a name on
//! one server connection is then missing (`prepared statement "s3" does not
//! exist`) or, worse, another client's statement of the same name runs in
//! its place. Sync mode avoids names altogether: with `KEEL_PGBOUNCER=transaction`
//! its pool turns diesel's statement cache off, and diesel then sends each
//! query as an unnamed statement (`sync::database`). diesel-async has no such
//! path: it prepares every statement under a name, its own connection setup
//! included. Async mode is therefore correct only when PgBouncer itself
//! tracks prepared statements per client, which PgBouncer does from 1.21 on
//! when `max_prepared_statements` is above 0 (the default from 1.24).
//!
//! So [`check_async_support`] asks PgBouncer before the async pool opens, and
//! refuses older or unknown ones rather than fail at random later. The
//! question goes to PgBouncer's admin console, the virtual database
//! `pgbouncer` on the same host and port, which speaks only the simple query
//! protocol: diesel-async cannot send that, so this module uses
//! tokio-postgres (diesel-async's own driver) directly. The user must be in
//! PgBouncer's `admin_users` or `stats_users` to read it.

use std::time::Duration;

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::{DatabaseConfig, DatabaseUrl, PgBouncerMode, RepoError};

/// The first PgBouncer that tracks prepared statements in transaction pooling.
pub(crate) const MIN_ASYNC_VERSION: Version = Version(1, 21, 0);

/// What to do instead, for every refusal.
const ALTERNATIVES: &str = "use session pooling (pool_mode = session, KEEL_PGBOUNCER=session), \
     keel's sync mode (which sends unnamed statements behind a transaction pooler), \
     or PgBouncer 1.21 or newer with max_prepared_statements > 0";

/// A PgBouncer version: major, minor, patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What the admin console told: the version line, and `max_prepared_statements`
/// when `SHOW CONFIG` lists it (`None` when it does not, or could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Console {
    version: String,
    max_prepared_statements: Option<String>,
}

/// Refuses to start async mode behind PgBouncer in transaction pooling when
/// PgBouncer is older than 1.21, when its version cannot be read, or when
/// `max_prepared_statements` is 0. Anything else (no PgBouncer, session
/// pooling, SQLite) passes without a round trip.
pub(crate) async fn check_async_support(config: &DatabaseConfig) -> Result<(), RepoError> {
    if config.pgbouncer != PgBouncerMode::Transaction {
        return Ok(());
    }
    let DatabaseUrl::Postgres(url) = &config.url else {
        return Ok(());
    };
    // connection_error names the URL with any password hidden, and hides it
    // in the driver's message too.
    let console = read_console(&config.postgres_url(url), config.connect_timeout).await;
    match verdict(console) {
        Ok(Verdict::Supported(version, max)) => {
            tracing::info!(%version, max_prepared_statements = %max, "PgBouncer tracks prepared statements: async mode in transaction pooling");
            Ok(())
        }
        Ok(Verdict::Unconfirmed(version)) => {
            tracing::warn!(%version, "PgBouncer's max_prepared_statements could not be read; it must be above 0 for async mode in transaction pooling");
            Ok(())
        }
        Err(refusal) => Err(config.connection_error(refusal)),
    }
}

/// What the check concluded when it lets async mode start.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A new enough version, `max_prepared_statements` above 0.
    Supported(Version, u64),
    /// A new enough version; `max_prepared_statements` unread.
    Unconfirmed(Version),
}

/// The decision, from what the console answered (or why it did not).
fn verdict(console: Result<Console, String>) -> Result<Verdict, String> {
    let console = console.map_err(|reason| {
        format!(
            "KEEL_PGBOUNCER=transaction: async mode needs PgBouncer {MIN_ASYNC_VERSION} or newer \
             with max_prepared_statements > 0, and PgBouncer's version could not be determined \
             (SHOW VERSION on its admin console, database `pgbouncer`, as this user: {reason}). \
             Put the user in PgBouncer's admin_users or stats_users, or {ALTERNATIVES}"
        )
    })?;
    let Some(version) = parse_version(&console.version) else {
        return Err(format!(
            "KEEL_PGBOUNCER=transaction: async mode needs PgBouncer {MIN_ASYNC_VERSION} or newer \
             with max_prepared_statements > 0, and the version PgBouncer reported \
             ({:?}) could not be read; {ALTERNATIVES}",
            console.version
        ));
    };
    if version < MIN_ASYNC_VERSION {
        return Err(format!(
            "KEEL_PGBOUNCER=transaction: found PgBouncer {version}, but async mode needs PgBouncer \
             {MIN_ASYNC_VERSION} or newer with max_prepared_statements > 0 (diesel-async prepares \
             every statement under a name, which an older PgBouncer sends to whichever server \
             connection is free); {ALTERNATIVES}"
        ));
    }
    let Some(max) = console.max_prepared_statements else {
        return Ok(Verdict::Unconfirmed(version));
    };
    match max.trim().parse::<u64>() {
        Ok(0) => Err(format!(
            "KEEL_PGBOUNCER=transaction: found PgBouncer {version} with max_prepared_statements = 0, \
             so it does not track prepared statements, which async mode needs; set \
             max_prepared_statements above 0 (200 is PgBouncer's default from 1.24), or \
             {ALTERNATIVES}"
        )),
        Ok(max) => Ok(Verdict::Supported(version, max)),
        Err(_) => Ok(Verdict::Unconfirmed(version)),
    }
}

/// `1.18.0` out of `PgBouncer 1.18.0` (the console's answer; a build may add
/// text after the number, as in `1.21.0-rc1`).
fn parse_version(line: &str) -> Option<Version> {
    let number = line
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = number.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some(Version(major, minor, patch))
}

/// Asks the admin console for `SHOW VERSION` and `SHOW CONFIG`, within
/// `timeout`. The error is the reason, for the refusal's message.
async fn read_console(connection_str: &str, timeout: Duration) -> Result<Console, String> {
    let mut admin: tokio_postgres::Config = connection_str
        .parse()
        .map_err(|e: tokio_postgres::Error| e.to_string())?;
    // The console rejects `SHOW transaction_read_only`, which a multi-host
    // URL's target_session_attrs=read-write would send first.
    admin
        .dbname("pgbouncer")
        .target_session_attrs(TargetSessionAttrs::Any);
    let asked = tokio::time::timeout(timeout.max(Duration::from_secs(1)), async {
        let (client, connection) = admin.connect(NoTls).await?;
        // The connection does the I/O; it ends when the client is dropped.
        let driver = tokio::spawn(connection);
        let version = client.simple_query("SHOW VERSION").await?;
        // Only read when the version is new enough to have the setting; an
        // error here leaves it unknown rather than refusing.
        let config = client.simple_query("SHOW CONFIG").await.ok();
        drop(client);
        let _ = driver.await;
        Ok::<_, tokio_postgres::Error>((version, config))
    })
    .await
    .map_err(|_| format!("no answer within {timeout:?}"))?
    .map_err(|e| one_error_line(&e))?;
    let (version, config) = asked;
    let version = rows(&version)
        .find_map(|row| row.get(0).map(str::to_owned))
        .ok_or("SHOW VERSION returned no row")?;
    let max_prepared_statements = config.and_then(|config| {
        rows(&config)
            .find(|row| row.get(0) == Some("max_prepared_statements"))
            .and_then(|row| row.get(1).map(str::to_owned))
    });
    Ok(Console {
        version,
        max_prepared_statements,
    })
}

fn rows(messages: &[SimpleQueryMessage]) -> impl Iterator<Item = &tokio_postgres::SimpleQueryRow> {
    messages.iter().filter_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

/// tokio-postgres's error with its cause (its `Display` alone may say only
/// "db error").
fn one_error_line(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(version: &str, max: Option<&str>) -> Result<Console, String> {
        Ok(Console {
            version: version.to_owned(),
            max_prepared_statements: max.map(str::to_owned),
        })
    }

    #[test]
    fn versions_parse_from_the_console_line() {
        assert_eq!(parse_version("PgBouncer 1.18.0"), Some(Version(1, 18, 0)));
        assert_eq!(
            parse_version("PgBouncer 1.21.0-rc1"),
            Some(Version(1, 21, 0))
        );
        assert_eq!(parse_version("PgBouncer 1.25"), Some(Version(1, 25, 0)));
        assert_eq!(parse_version("PgBouncer"), None);
    }

    #[test]
    fn old_versions_are_refused_naming_both_versions_and_the_alternatives() {
        let refusal = verdict(console("PgBouncer 1.18.0", None)).unwrap_err();
        assert!(refusal.contains("found PgBouncer 1.18.0"), "{refusal}");
        assert!(refusal.contains("1.21.0 or newer"), "{refusal}");
        assert!(refusal.contains("session pooling"), "{refusal}");
        assert!(refusal.contains("sync mode"), "{refusal}");
        assert!(verdict(console("PgBouncer 1.20.1", Some("0"))).is_err());
    }

    #[test]
    fn new_versions_pass_unless_prepared_statements_are_off() {
        assert_eq!(
            verdict(console("PgBouncer 1.21.0", Some("200"))),
            Ok(Verdict::Supported(Version(1, 21, 0), 200))
        );
        assert_eq!(
            verdict(console("PgBouncer 1.25.2", None)),
            Ok(Verdict::Unconfirmed(Version(1, 25, 2)))
        );
        let off = verdict(console("PgBouncer 1.22.1", Some("0"))).unwrap_err();
        assert!(off.contains("max_prepared_statements = 0"), "{off}");
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let refusal = verdict(Err("permission denied".to_owned())).unwrap_err();
        assert!(refusal.contains("could not be determined"), "{refusal}");
        assert!(refusal.contains("permission denied"), "{refusal}");
        assert!(refusal.contains("stats_users"), "{refusal}");
        assert!(verdict(console("something else", None)).is_err());
    }
}
