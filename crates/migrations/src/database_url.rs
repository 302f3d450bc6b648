//! Which backend a database URL names, and how to show it without secrets.

use std::fmt;

/// A database URL, parsed to the backend it names.
///
/// - `postgres://…` and `postgresql://…` mean PostgreSQL;
/// - `sqlite://PATH`, `sqlite:PATH`, a plain file path, or `:memory:` mean SQLite.
///
/// `Display` hides any password, so a `DatabaseUrl` can go into logs and errors.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL connection URL, kept whole for libpq / tokio-postgres.
    Postgres(String),
    /// A SQLite database: a file path, or `:memory:`.
    Sqlite(String),
}

/// Why a string is not a database URL keel can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    /// Nothing was given.
    #[error("the database URL is empty")]
    Empty,
    /// A URL with a scheme keel has no backend for.
    #[error(
        "unsupported database URL scheme `{scheme}://`: use postgres://, postgresql://, sqlite://PATH, a file path or :memory:"
    )]
    UnsupportedScheme {
        /// The scheme as given, e.g. `mysql`.
        scheme: String,
    },
    /// `sqlite://` with nothing after it.
    #[error("the SQLite URL `{url}` names no file: use sqlite://PATH or :memory:")]
    MissingSqlitePath {
        /// The URL as given.
        url: String,
    },
}

impl DatabaseUrl {
    /// The SQLite file keel uses when no URL is configured.
    pub const DEFAULT_SQLITE_PATH: &'static str = "keel.db";

    /// Parses `url` into the backend it names.
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(DatabaseUrlError::MissingSqlitePath {
                    url: url.to_owned(),
                });
            }
            return Ok(Self::Sqlite(rest.to_owned()));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(DatabaseUrlError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
        Ok(Self::Sqlite(url.to_owned()))
    }

    /// The URL from `DATABASE_URL` (a `.env` file counts, if the caller loaded
    /// it with dotenvy), or the default SQLite file when it is unset.
    pub fn from_env() -> Result<Self, DatabaseUrlError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) => Self::parse(&url),
            Err(_) => Ok(Self::Sqlite(Self::DEFAULT_SQLITE_PATH.to_owned())),
        }
    }

    /// The backend's name, for messages.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    /// The string to hand to the driver. It may hold a password: never log it.
    pub fn as_connection_str(&self) -> &str {
        match self {
            Self::Postgres(url) | Self::Sqlite(url) => url,
        }
    }

    /// `text` with every password of this URL replaced by `***`, as given
    /// and percent-decoded. Drivers' messages may quote parts of the URL
    /// (libpq: `invalid percent-encoded token: "s3cr%zz"`), so anything
    /// built from a driver's error passes through here before it is shown.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let Self::Postgres(url) = self else {
            return text;
        };
        let mut secrets: Vec<String> = passwords(url)
            .into_iter()
            .flat_map(|raw| {
                let decoded = percent_decode(raw);
                [raw.to_owned(), decoded]
            })
            .filter(|secret| !secret.is_empty())
            .collect();
        // Longest first, so a password containing another is hidden whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        for secret in secrets {
            text = text.replace(&secret, "***");
        }
        text
    }
}

/// The passwords a PostgreSQL URL carries: the userinfo's, and any
/// `password=` query parameter's, as written (possibly percent-encoded).
fn passwords(url: &str) -> Vec<&str> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut found = Vec::new();
    if let Some((userinfo, _host)) = authority.rsplit_once('@')
        && let Some((_user, password)) = userinfo.split_once(':')
    {
        found.push(password);
    }
    if let Some((_, query)) = tail.split_once('?') {
        found.extend(query.split('&').filter_map(|pair| {
            pair.split_once('=')
                .filter(|(key, _)| key.eq_ignore_ascii_case("password"))
                .map(|(_, value)| value)
        }));
    }
    found
}

/// `%XX` sequences decoded; malformed ones kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => f.write_str(&redact_password(url)),
            Self::Sqlite(path) => write!(f, "sqlite://{path}"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// `postgres://user:secret@host/db?password=x` -> `postgres://user:***@host/db?password=***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_schemes_mean_postgres() {
        for url in ["postgres://u@h/db", "postgresql://u@h/db"] {
            assert_eq!(
                DatabaseUrl::parse(url),
                Ok(DatabaseUrl::Postgres(url.into()))
            );
        }
    }

    #[test]
    fn sqlite_forms_mean_sqlite() {
        for (url, path) in [
            ("sqlite://data/keel.db", "data/keel.db"),
            ("sqlite:keel.db", "keel.db"),
            ("keel.db", "keel.db"),
            ("/tmp/x.sqlite", "/tmp/x.sqlite"),
            (":memory:", ":memory:"),
            ("sqlite://:memory:", ":memory:"),
        ] {
            assert_eq!(
                DatabaseUrl::parse(url),
                Ok(DatabaseUrl::Sqlite(path.into())),
                "{url}"
            );
        }
    }

    #[test]
    fn other_schemes_and_empty_urls_are_rejected() {
        assert_eq!(
            DatabaseUrl::parse("mysql://root@localhost/test"),
            Err(DatabaseUrlError::UnsupportedScheme {
                scheme: "mysql".into()
            })
        );
        assert_eq!(DatabaseUrl::parse("  "), Err(DatabaseUrlError::Empty));
        assert!(matches!(
            DatabaseUrl::parse("sqlite://"),
            Err(DatabaseUrlError::MissingSqlitePath { .. })
        ));
    }

    #[test]
    fn redact_hides_passwords_in_any_text() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cr%40t%zz@db/keel?sslmode=disable&password=other%20one",
        )
        .expect("valid url");
        let message =
            "invalid percent-encoded token: \"s3cr%40t%zz\"; s3cr@t%zz; other one; other%20one";
        assert_eq!(
            url.redact(message),
            "invalid percent-encoded token: \"***\"; ***; ***; ***"
        );
        let no_password = DatabaseUrl::parse("postgres://app@db/keel").expect("valid url");
        assert_eq!(no_password.redact("app at db"), "app at db");
        assert_eq!(
            DatabaseUrl::Sqlite("x.db".into()).redact("x.db is locked"),
            "x.db is locked"
        );
    }

    #[test]
    fn display_hides_passwords() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cret@db:5432/keel?password=s3cret&sslmode=disable",
        )
        .expect("valid url");
        let shown = url.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            shown,
            "postgres://app:***@db:5432/keel?password=***&sslmode=disable"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            DatabaseUrl::parse("postgres://postgres@127.0.0.1/test")
                .expect("valid url")
                .to_string(),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
