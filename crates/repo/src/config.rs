//! Pool configuration: which database, how many connections, how long to wait.

use std::fmt;
use std::time::Duration;

pub use keel_migrations::{DatabaseUrl, PostgresUrl};

use crate::RepoError;

/// How to reach the database and size the pool. [`DatabaseConfig::new`] gives
/// the defaults; [`DatabaseConfig::from_env`] reads overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The database, and through it the backend.
    pub url: DatabaseUrl,
    /// Most connections the pool opens (`KEEL_POOL_SIZE`, default 10).
    /// An in-memory SQLite database always gets one connection, since each
    /// connection to `:memory:` would see a database of its own.
    pub pool_size: u32,
    /// Longest wait to open one connection (`KEEL_CONNECT_TIMEOUT_MS`, default 5 s).
    pub connect_timeout: Duration,
    /// Longest wait for a free pooled connection before `PoolTimeout`
    /// (`KEEL_CHECKOUT_TIMEOUT_MS`, default 5 s).
    pub checkout_timeout: Duration,
    /// Idle connections are closed after this (`KEEL_IDLE_TIMEOUT_MS`, default
    /// 10 min; 0 = never).
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this (`KEEL_MAX_LIFETIME_MS`, default
    /// 30 min; 0 = never).
    pub max_lifetime: Option<Duration>,
    /// How long a SQLite statement waits for another writer's lock
    /// (`KEEL_SQLITE_BUSY_TIMEOUT_MS`, default 5 s).
    pub sqlite_busy_timeout: Duration,
    /// Whether SQLite statements keep the plan they were prepared with
    /// (`KEEL_SQLITE_STABLE_PLANS`, default on): without it, a database
    /// with `ANALYZE` statistics prepares a cached statement again whenever
    /// a bound value its plan looked at changes (docs/architecture.md,
    /// "SQLite plans").
    pub sqlite_stable_plans: bool,
    /// Which async pool (`KEEL_POOL`: `deadpool`, the default, or `bb8`,
    /// which needs keel-repo's `bb8` feature). Sync mode always uses r2d2.
    pub pool: PoolKind,
    /// Whether each statement is logged through `tracing`
    /// (`KEEL_LOG_STATEMENTS`: `0`, `1`, or `binds` to log bind values too).
    pub log_statements: StatementLog,
    /// Read replicas of a PostgreSQL primary (`DATABASE_REPLICA_URLS`,
    /// comma-separated; empty by default). Each gets a pool of its own, of
    /// `pool_size` connections; reads outside transactions go to them (see
    /// [`crate::replicas`]).
    pub replica_urls: Vec<PostgresUrl>,
    /// How long a read waits for a replica to replay the scope's last write
    /// before it reads the primary instead (`KEEL_REPLICA_WAIT_MS`, default 5 ms).
    pub replica_wait: Duration,
    /// A replica further behind than this takes no reads until it catches up
    /// (`KEEL_MAX_REPLICA_LAG_MS`, default 1 s).
    pub max_replica_lag: Duration,
    /// How often each replica's role, reachability and lag are checked
    /// (`KEEL_REPLICA_CHECK_MS`, default 250 ms).
    pub replica_check_interval: Duration,
    /// What sits between keel and PostgreSQL (`KEEL_PGBOUNCER`: `off`, the
    /// default, `session` or `transaction`).
    pub pgbouncer: PgBouncerMode,
    /// Where migrations and their advisory lock go when `url` is a pooler
    /// (`KEEL_MIGRATION_URL`; default: `url`).
    pub migration_url: Option<DatabaseUrl>,
}

/// PgBouncer's pooling mode in front of PostgreSQL, as keel must know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgBouncerMode {
    /// A direct connection (or a pooler keel need not know about).
    #[default]
    Off,
    /// PgBouncer in session pooling: a server connection per client
    /// connection, so everything works as on a direct one.
    Session,
    /// PgBouncer in transaction pooling: consecutive statements of one
    /// connection may reach different server connections.
    Transaction,
}

/// The async pool implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PoolKind {
    /// deadpool (always built with the `async` feature).
    #[default]
    Deadpool,
    /// bb8 (built with the `bb8` feature).
    Bb8,
}

/// What statement logging shows (the reference ORM's `echo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatementLog {
    /// Nothing (the default).
    #[default]
    Off,
    /// Each statement's SQL, its duration and the scope's name, at `INFO`
    /// on the `keel_repo::statements` target. No bind values.
    Sql,
    /// The SQL with its bind values. They may hold secrets (password
    /// hashes, personal data): only turn this on where the log is as private
    /// as the database.
    SqlAndBinds,
}

/// A configuration variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `DATABASE_URL` names no supported backend.
    #[error("DATABASE_URL: {0}")]
    Url(#[from] keel_migrations::DatabaseUrlError),
    /// One of `DATABASE_REPLICA_URLS` is not a PostgreSQL URL.
    #[error("DATABASE_REPLICA_URLS: {0}")]
    ReplicaUrl(keel_migrations::DatabaseUrlError),
    /// `KEEL_MIGRATION_URL` names no supported backend.
    #[error("KEEL_MIGRATION_URL: {0}")]
    MigrationUrl(keel_migrations::DatabaseUrlError),
    /// Settings that do not fit together.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A number was expected.
    #[error("{variable}={value:?} is not valid: {reason}")]
    Invalid {
        /// The environment variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

impl DatabaseConfig {
    /// The defaults for `url`.
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_stable_plans: true,
            pool: PoolKind::Deadpool,
            log_statements: StatementLog::Off,
            replica_urls: Vec::new(),
            replica_wait: Duration::from_millis(5),
            max_replica_lag: Duration::from_secs(1),
            replica_check_interval: Duration::from_millis(250),
            pgbouncer: PgBouncerMode::Off,
            migration_url: None,
        }
    }

    /// Reads `DATABASE_URL` (default: the SQLite file `keel.db`) and the
    /// `KEEL_*` variables above, after loading a `.env` file if there is one.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is the normal case; its variables never override the process's.
        let _ = dotenvy::dotenv();
        Self::from_vars(|name| std::env::var(name))
    }

    /// [`DatabaseConfig::from_env`]'s reading, with each variable looked up
    /// by `var` (as `std::env::var` does) instead of in the process's
    /// environment.
    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, ConfigError> {
        let env = Env(var);
        let mut config = Self::new(DatabaseUrl::from_var((env.0)("DATABASE_URL"))?);
        if let Some(size) = env.number("KEEL_POOL_SIZE")? {
            config.pool_size = u32::try_from(size)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid("KEEL_POOL_SIZE", size, "expected 1 to 4294967295"))?;
        }
        if let Some(ms) = env.number("KEEL_CONNECT_TIMEOUT_MS")? {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = env.number("KEEL_CHECKOUT_TIMEOUT_MS")? {
            config.checkout_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = env.number("KEEL_IDLE_TIMEOUT_MS")? {
            config.idle_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(ms) = env.number("KEEL_MAX_LIFETIME_MS")? {
            config.max_lifetime = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(ms) = env.number("KEEL_SQLITE_BUSY_TIMEOUT_MS")? {
            config.sqlite_busy_timeout = Duration::from_millis(ms);
        }
        if let Some(stable) = env.text("KEEL_SQLITE_STABLE_PLANS")? {
            config.sqlite_stable_plans = match stable.as_str() {
                "1" | "true" | "on" => true,
                "0" | "false" | "off" => false,
                _ => {
                    return Err(invalid(
                        "KEEL_SQLITE_STABLE_PLANS",
                        stable,
                        "expected 0 or 1",
                    ));
                }
            };
        }
        if let Some(pool) = env.text("KEEL_POOL")? {
            config.pool = match pool.as_str() {
                "deadpool" => PoolKind::Deadpool,
                "bb8" => PoolKind::Bb8,
                _ => return Err(invalid("KEEL_POOL", pool, "expected deadpool or bb8")),
            };
        }
        if let Some(log) = env.text("KEEL_LOG_STATEMENTS")? {
            config.log_statements = match log.as_str() {
                "" | "0" | "false" | "off" => StatementLog::Off,
                "1" | "true" | "on" => StatementLog::Sql,
                "binds" => StatementLog::SqlAndBinds,
                _ => {
                    return Err(invalid(
                        "KEEL_LOG_STATEMENTS",
                        log,
                        "expected 0, 1 or binds",
                    ));
                }
            };
        }
        if let Some(urls) = env.text("DATABASE_REPLICA_URLS")? {
            config.replica_urls = urls
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(PostgresUrl::parse)
                .collect::<Result<_, _>>()
                .map_err(ConfigError::ReplicaUrl)?;
        }
        if let Some(ms) = env.number("KEEL_REPLICA_WAIT_MS")? {
            config.replica_wait = Duration::from_millis(ms);
        }
        if let Some(ms) = env.number("KEEL_MAX_REPLICA_LAG_MS")? {
            config.max_replica_lag = Duration::from_millis(ms);
        }
        if let Some(ms) = env.number("KEEL_REPLICA_CHECK_MS")? {
            config.replica_check_interval = Duration::from_millis(ms);
        }
        if let Some(mode) = env.text("KEEL_PGBOUNCER")? {
            config.pgbouncer = match mode.as_str() {
                "" | "0" | "off" => PgBouncerMode::Off,
                "session" => PgBouncerMode::Session,
                "transaction" => PgBouncerMode::Transaction,
                _ => {
                    return Err(invalid(
                        "KEEL_PGBOUNCER",
                        mode,
                        "expected off, session or transaction",
                    ));
                }
            };
        }
        if let Some(url) = env
            .text("KEEL_MIGRATION_URL")?
            .filter(|url| !url.is_empty())
        {
            config.migration_url =
                Some(DatabaseUrl::parse(&url).map_err(ConfigError::MigrationUrl)?);
        }
        config.check()?;
        Ok(config)
    }

    /// Checks that the settings fit together: replicas and PgBouncer need
    /// a PostgreSQL primary.
    pub fn check(&self) -> Result<(), ConfigError> {
        let postgres = matches!(self.url, DatabaseUrl::Postgres(_));
        if !postgres && !self.replica_urls.is_empty() {
            return Err(ConfigError::Unsupported(
                "DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL",
            ));
        }
        if !self.replica_urls.is_empty() && self.replica_check_interval.is_zero() {
            return Err(ConfigError::Unsupported(
                "the replica check interval (KEEL_REPLICA_CHECK_MS) must be above 0",
            ));
        }
        if !postgres && self.pgbouncer != PgBouncerMode::Off {
            return Err(ConfigError::Unsupported(
                "KEEL_PGBOUNCER needs a PostgreSQL DATABASE_URL",
            ));
        }
        Ok(())
    }

    /// The URL migrations run on: `migration_url`, else `url`.
    pub fn migration_url(&self) -> &DatabaseUrl {
        self.migration_url.as_ref().unwrap_or(&self.url)
    }

    /// The pool size the backend can use (see [`DatabaseConfig::pool_size`]).
    pub(crate) fn effective_pool_size(&self) -> u32 {
        match &self.url {
            DatabaseUrl::Sqlite(path) if is_in_memory(path) => 1,
            _ => self.pool_size,
        }
    }

    /// The PostgreSQL connection string with `connect_timeout` added unless
    /// it sets one. It holds any password: for the driver only.
    pub(crate) fn postgres_url(&self, url: &PostgresUrl) -> String {
        let seconds = self.connect_timeout.as_secs().max(1);
        url.connection_str_with_default("connect_timeout", &seconds.to_string())
    }

    /// Whether the URL names an in-memory SQLite database.
    pub(crate) fn is_in_memory(&self) -> bool {
        matches!(&self.url, DatabaseUrl::Sqlite(path) if is_in_memory(path))
    }

    /// A [`RepoError::Connection`] for `error`, naming the backend and the
    /// database, on one line, with any password of the URL hidden: drivers'
    /// messages may quote parts of the URL (libpq quotes a malformed
    /// password whole).
    pub(crate) fn connection_error(&self, error: impl fmt::Display) -> RepoError {
        let message = format!("{} at {}: {error}", self.url.backend_name(), self.url);
        RepoError::Connection(self.url.redact(&one_line(&message)))
    }

    /// The statements every new SQLite connection runs first: the busy
    /// timeout before anything that could wait on a lock; case-sensitive
    /// `LIKE`, as on PostgreSQL (and so SQLite can serve a prefix from an index).
    pub(crate) fn sqlite_setup_sql(&self) -> String {
        format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
             PRAGMA case_sensitive_like = ON;",
            self.sqlite_busy_timeout.as_millis()
        )
    }
}

/// `text` with every run of whitespace (libpq's messages span lines) as one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn is_in_memory(path: &str) -> bool {
    path == ":memory:" || path.contains("mode=memory")
}

fn invalid(variable: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        variable,
        value: value.to_string(),
        reason,
    }
}

/// The environment as [`DatabaseConfig::from_vars`] reads it.
struct Env<V>(V);

impl<V> Env<V>
where
    V: Fn(&str) -> Result<String, std::env::VarError>,
{
    fn number(&self, variable: &'static str) -> Result<Option<u64>, ConfigError> {
        self.text(variable)?
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| invalid(variable, value, "expected a whole number"))
            })
            .transpose()
    }

    /// The variable's value, trimmed; `None` when unset.
    fn text(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        match (self.0)(variable) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(value)) => Err(invalid(
                variable,
                value.to_string_lossy(),
                "expected UTF-8 text",
            )),
            Ok(value) => Ok(Some(value.trim().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    //! `from_env`'s reading of every variable, from a table instead of the
    //! process's environment (which tests running in parallel share).

    use std::collections::HashMap;
    use std::env::VarError;
    use std::time::Duration;

    use super::*;

    const PG: &str = "postgres://app@db.internal:5432/app";

    fn read(vars: &[(&str, &str)]) -> Result<DatabaseConfig, ConfigError> {
        let table: HashMap<&str, &str> = vars.iter().copied().collect();
        DatabaseConfig::from_vars(|name| {
            table
                .get(name)
                .map(|value| (*value).to_owned())
                .ok_or(VarError::NotPresent)
        })
    }

    #[test]
    fn nothing_set_is_the_defaults_on_the_sqlite_file() {
        let config = read(&[]).expect("defaults");
        assert_eq!(
            config,
            DatabaseConfig::new(DatabaseUrl::Sqlite("keel.db".to_owned()))
        );
    }

    /// Each variable, set alone (with a PostgreSQL URL where it needs one),
    /// changes its field as documented and nothing else.
    #[test]
    fn each_variable_sets_its_field() {
        type Expect = fn(&mut DatabaseConfig);
        let cases: &[(&[(&str, &str)], Expect)] = &[
            (&[("KEEL_POOL_SIZE", " 3 ")], |c| c.pool_size = 3),
            (&[("KEEL_CONNECT_TIMEOUT_MS", "250")], |c| {
                c.connect_timeout = Duration::from_millis(250);
            }),
            (&[("KEEL_CHECKOUT_TIMEOUT_MS", "1500")], |c| {
                c.checkout_timeout = Duration::from_millis(1500);
            }),
            (&[("KEEL_IDLE_TIMEOUT_MS", "0")], |c| c.idle_timeout = None),
            (&[("KEEL_IDLE_TIMEOUT_MS", "60000")], |c| {
                c.idle_timeout = Some(Duration::from_secs(60));
            }),
            (&[("KEEL_MAX_LIFETIME_MS", "0")], |c| c.max_lifetime = None),
            (&[("KEEL_SQLITE_BUSY_TIMEOUT_MS", "9")], |c| {
                c.sqlite_busy_timeout = Duration::from_millis(9);
            }),
            (&[("KEEL_SQLITE_STABLE_PLANS", "off")], |c| {
                c.sqlite_stable_plans = false;
            }),
            (&[("KEEL_SQLITE_STABLE_PLANS", "1")], |c| {
                c.sqlite_stable_plans = true;
            }),
            (&[("KEEL_POOL", "bb8")], |c| c.pool = PoolKind::Bb8),
            (&[("KEEL_POOL", "deadpool")], |c| {
                c.pool = PoolKind::Deadpool
            }),
            (&[("KEEL_LOG_STATEMENTS", "1")], |c| {
                c.log_statements = StatementLog::Sql;
            }),
            (&[("KEEL_LOG_STATEMENTS", "binds")], |c| {
                c.log_statements = StatementLog::SqlAndBinds;
            }),
            (&[("KEEL_LOG_STATEMENTS", "")], |c| {
                c.log_statements = StatementLog::Off;
            }),
            (&[("KEEL_REPLICA_WAIT_MS", "20")], |c| {
                c.replica_wait = Duration::from_millis(20);
            }),
            (&[("KEEL_MAX_REPLICA_LAG_MS", "3000")], |c| {
                c.max_replica_lag = Duration::from_secs(3);
            }),
            (&[("KEEL_REPLICA_CHECK_MS", "100")], |c| {
                c.replica_check_interval = Duration::from_millis(100);
            }),
            (
                &[("DATABASE_URL", PG), ("KEEL_PGBOUNCER", "transaction")],
                |c| {
                    c.pgbouncer = PgBouncerMode::Transaction;
                },
            ),
            (
                &[
                    ("DATABASE_URL", PG),
                    (
                        "DATABASE_REPLICA_URLS",
                        "postgres://app@r1:5432/app, ,postgres://app@r2:5432/app",
                    ),
                ],
                |c| {
                    c.replica_urls = ["postgres://app@r1:5432/app", "postgres://app@r2:5432/app"]
                        .iter()
                        .map(|url| PostgresUrl::parse(url).expect("a PostgreSQL URL"))
                        .collect();
                },
            ),
            (&[("KEEL_MIGRATION_URL", "migrate.db")], |c| {
                c.migration_url = Some(DatabaseUrl::Sqlite("migrate.db".to_owned()));
            }),
            (&[("KEEL_MIGRATION_URL", "")], |_| {}),
        ];
        for (vars, expect) in cases {
            let url = vars
                .iter()
                .find(|(name, _)| *name == "DATABASE_URL")
                .map_or("keel.db", |(_, url)| url);
            let mut expected =
                DatabaseConfig::new(DatabaseUrl::parse(url).expect("the case's URL"));
            expect(&mut expected);
            let config = read(vars).unwrap_or_else(|e| panic!("{vars:?}: {e}"));
            assert_eq!(config, expected, "{vars:?}");
        }
    }

    /// A value that is set but unusable is an error naming the variable and
    /// the value, never a silent default.
    #[test]
    fn an_unusable_value_is_an_error_that_names_it() {
        let invalid: &[(&str, &str)] = &[
            ("KEEL_POOL_SIZE", "0"),
            ("KEEL_POOL_SIZE", "-1"),
            ("KEEL_POOL_SIZE", "4294967296"),
            ("KEEL_CHECKOUT_TIMEOUT_MS", "5s"),
            ("KEEL_SQLITE_STABLE_PLANS", "2"),
            ("KEEL_POOL", "r2d2"),
            ("KEEL_LOG_STATEMENTS", "yes"),
            ("KEEL_PGBOUNCER", "on"),
        ];
        for &(name, value) in invalid {
            match read(&[("DATABASE_URL", PG), (name, value)]) {
                Err(ConfigError::Invalid {
                    variable,
                    value: reported,
                    ..
                }) => assert_eq!((variable, reported.as_str()), (name, value.trim())),
                other => panic!("{name}={value:?}: {other:?}"),
            }
        }
        let unsupported: &[&[(&str, &str)]] = &[
            &[("DATABASE_REPLICA_URLS", PG)],
            &[("KEEL_PGBOUNCER", "session")],
            &[
                ("DATABASE_URL", PG),
                ("DATABASE_REPLICA_URLS", PG),
                ("KEEL_REPLICA_CHECK_MS", "0"),
            ],
        ];
        for vars in unsupported {
            assert!(
                matches!(read(vars), Err(ConfigError::Unsupported(_))),
                "{vars:?}"
            );
        }
        assert!(matches!(
            read(&[("DATABASE_URL", "mysql://root@localhost/test")]),
            Err(ConfigError::Url(_))
        ));
        assert!(matches!(
            read(&[
                ("DATABASE_URL", PG),
                ("DATABASE_REPLICA_URLS", "replica.db")
            ]),
            Err(ConfigError::ReplicaUrl(_))
        ));
    }
}
