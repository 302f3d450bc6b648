//! Which backend a database URL names, and how to show it without secrets.
//!
//! [`DatabaseUrl::parse`] reads every form keel accepts:
//!
//! - a PostgreSQL URL, `postgres://` or `postgresql://`, as libpq documents
//!   it: `postgres://user:password@host:5432,host2:5433/dbname?sslmode=require`,
//!   IPv6 hosts in brackets (`[::1]:5432`), `%XX` escapes anywhere;
//! - a libpq key=value connection string: `host=127.0.0.1 password='a b' dbname=keel`
//!   (whitespace between pairs, optional spaces around `=`, single-quoted
//!   values with `\'` and `\\` escapes). A string without a scheme that starts
//!   like `keyword=` is always one of these, never a SQLite file name;
//! - SQLite: `sqlite://PATH`, `sqlite:PATH`, a plain file path, or `:memory:`
//!   (a file whose name looks like `key=value` is written `sqlite://a=b.db`).
//!
//! The same string reaches libpq (keel's sync mode) and tokio-postgres (its
//! async mode), which do not read every string alike. Where they would differ,
//! or where one would fail quoting the string, the string is refused with a
//! [`DatabaseUrlError`] saying what to change, rather than guessed at: a
//! malformed or `%00` escape, a second `@`, an `@` after the host part (what an
//! unencoded `/`, `?` or `#` in a password gives), a `#`, an unclosed `[`, a
//! port that is not a number, a query pair without exactly one `=`; in
//! key=value form, a keyword without `=`, an unterminated quote, or non-ASCII
//! whitespace outside quotes.
//!
//! Passwords stay hidden: no error quotes the string (they name the problem,
//! the part of the URL, a known keyword and a character position), and
//! `Display` and `Debug` show `user:***@`, `password=***` for every password
//! (`sslpassword` too). [`DatabaseUrl::redact`] hides a password in any other
//! text, such as a driver's error message.
//!
//! This file has no dependency beyond `std`, so `xtask` shares it by path.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// A database URL, parsed to the backend it names.
///
/// - `postgres://…`, `postgresql://…` and libpq `key=value` strings mean
///   PostgreSQL;
/// - `sqlite://PATH`, `sqlite:PATH`, a plain file path, or `:memory:` mean SQLite.
///
/// `Display` and `Debug` hide every password, so a `DatabaseUrl` can go into
/// logs and errors.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL URL or key=value string, validated.
    Postgres(PostgresUrl),
    /// A SQLite database: a file path, or `:memory:`.
    Sqlite(String),
}

/// A PostgreSQL connection string that libpq and tokio-postgres read alike:
/// a `postgres://` URL or a libpq key=value string. Made only by parsing
/// ([`PostgresUrl::parse`], [`DatabaseUrl::parse`]), so where each password
/// sits in it is known exactly.
///
/// `Display` and `Debug` show `***` for every password. The string itself
/// ([`PostgresUrl::as_connection_str`], or `&*url`: it derefs to `str` so a
/// driver's `establish(&str)` takes it) holds them: hand it to a driver,
/// never to a log.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The string given (trimmed), as the drivers get it.
    text: String,
    form: Form,
    /// Byte ranges of `text` that hold a secret as written (escapes and
    /// quotes included).
    secret_spans: Vec<Range<usize>>,
    /// The same secrets as the server receives them (percent-decoded or
    /// unescaped).
    secrets: Vec<String>,
    /// The keywords the string sets (a URL's user, password, hosts and
    /// database name count as `user`, `password`, `host`, `dbname`).
    keywords: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Form {
    Url {
        /// Where the host list ends (a `/`, a `?` or the end).
        hosts_end: usize,
        /// Where the `?` is, if there is one.
        query_start: Option<usize>,
    },
    Conninfo {
        /// Byte ranges of the `dbname=…` pairs.
        dbname_pairs: Vec<Range<usize>>,
    },
}

/// Why a string is not a database URL keel can use. No message quotes the
/// string: each names the problem, at most the part of the URL, a known
/// keyword, and a character position (counted from 1, leading spaces
/// trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrlError {
    /// Nothing was given.
    Empty,
    /// `DATABASE_URL` is set but is not UTF-8.
    NotUnicode,
    /// A NUL character: libpq would read the string only up to it.
    ContainsNul,
    /// A URL with a scheme keel has no backend for.
    UnsupportedScheme {
        /// The scheme as given, e.g. `mysql` (only ever letters, digits,
        /// `+`, `-` and `.`).
        scheme: String,
    },
    /// Text before `://` that is not a scheme at all.
    NotAScheme,
    /// `sqlite://` with nothing after it.
    MissingSqlitePath,
    /// A `postgres://` URL that drivers would read differently, or not at all.
    InvalidPostgresUrl {
        /// What is wrong.
        problem: UrlProblem,
        /// Where it is.
        part: UrlPart,
        /// The character it is at, counted from 1.
        at: usize,
    },
    /// A key=value connection string that drivers would read differently,
    /// or not at all.
    InvalidConninfo {
        /// What is wrong.
        problem: ConninfoProblem,
        /// The keyword whose pair it is in, when that is a known libpq keyword.
        keyword: Option<&'static str>,
        /// The character it is at, counted from 1.
        at: usize,
    },
}

/// What is wrong with a `postgres://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not `postgres://` or `postgresql://` in lowercase.
    Scheme,
    /// `%` without two hex digits after it.
    BadPercentEncoding,
    /// `%00`.
    PercentEncodedNul,
    /// Escapes that decode to bytes that are not UTF-8.
    NotUtf8,
    /// More than one unencoded `@`.
    SecondAt,
    /// An `@` after the first `/`, `?` or `#`.
    AtAfterHosts,
    /// A `#`.
    Fragment,
    /// `[` without `]`.
    UnclosedBracket,
    /// Brackets holding something other than an IPv6 address.
    BadIpv6,
    /// After `]`, something other than `:PORT`, `,`, `/`, `?` or the end.
    AfterBracket,
    /// An empty host in a list, or a port with no host.
    EmptyHost,
    /// A host with a character hosts do not have.
    BadHost,
    /// A port that is not a number from 1 to 65535.
    BadPort,
    /// A query pair without `=`.
    ParamWithoutEquals,
    /// A query pair with more than one `=`.
    ParamExtraEquals,
    /// A query pair with an empty name.
    EmptyParamName,
    /// A query parameter neither libpq nor tokio-postgres knows.
    UnknownParam,
}

/// Which part of a `postgres://` URL a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPart {
    /// `postgres://`.
    Scheme,
    /// The user name.
    User,
    /// The password.
    Password,
    /// The host list (hosts and ports).
    Hosts,
    /// The database name (the path).
    DatabaseName,
    /// The query string.
    Query,
    /// The value of a known query parameter.
    Param(&'static str),
}

/// What is wrong with a key=value connection string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConninfoProblem {
    /// A keyword not followed by `=`.
    MissingEquals,
    /// An `=` with no keyword before it.
    EmptyKeyword,
    /// A keyword with characters keywords do not have.
    BadKeyword,
    /// A keyword neither libpq nor tokio-postgres knows.
    UnknownKeyword,
    /// `keyword=` at the end with no value, or an unquoted value that is
    /// empty once unescaped (a lone `\\`).
    MissingValue,
    /// A `'` that opens a value and is never closed.
    UnterminatedQuote,
    /// A closing `'` followed by something other than whitespace.
    TextAfterQuote,
    /// Whitespace other than ASCII's outside quotes.
    UnicodeWhitespace,
}

impl fmt::Display for DatabaseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the database URL is empty"),
            Self::NotUnicode => f.write_str("the database URL is not valid UTF-8"),
            Self::ContainsNul => f.write_str("the database URL contains a NUL character"),
            Self::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported database URL scheme `{scheme}://`: use postgres://, postgresql://, \
                 a key=value connection string, sqlite://PATH, a file path or :memory:"
            ),
            Self::NotAScheme => f.write_str(
                "the database URL has `://` after something that is not a scheme: use \
                 postgres://, postgresql://, a key=value connection string, sqlite://PATH, \
                 a file path or :memory:",
            ),
            Self::MissingSqlitePath => {
                f.write_str("the SQLite URL names no file: use sqlite://PATH or :memory:")
            }
            Self::InvalidPostgresUrl { problem, part, at } => write!(
                f,
                "invalid PostgreSQL URL ({part}, character {at}): {problem}"
            ),
            Self::InvalidConninfo {
                problem,
                keyword,
                at,
            } => {
                f.write_str("invalid PostgreSQL key=value connection string (")?;
                if let Some(keyword) = keyword {
                    write!(f, "the `{keyword}` pair, ")?;
                }
                write!(f, "character {at}): {problem}")
            }
        }
    }
}

impl std::error::Error for DatabaseUrlError {}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheme => {
                "a PostgreSQL URL starts with postgres:// or postgresql://, in lowercase"
            }
            Self::BadPercentEncoding => {
                "`%` must be followed by two hex digits (write a literal % as %25)"
            }
            Self::PercentEncodedNul => "%00 is not allowed",
            Self::NotUtf8 => "its %-escapes do not decode to UTF-8",
            Self::SecondAt => {
                "more than one `@`: percent-encode an @ in the user name or password as %40"
            }
            Self::AtAfterHosts => {
                "an `@` comes after a `/`, `?` or `#`, which libpq and tokio-postgres read \
                 differently: percent-encode / ? # in the password (%2F %3F %23), and any @ \
                 after the host as %40"
            }
            Self::Fragment => "a `#` is not allowed: percent-encode it as %23",
            Self::UnclosedBracket => "an IPv6 address opened with `[` has no closing `]`",
            Self::BadIpv6 => {
                "brackets hold an IPv6 address: hex digits, `:`, `.` and a %25-escaped zone"
            }
            Self::AfterBracket => "`]` must be followed by `:PORT`, `,`, `/`, `?` or the end",
            Self::EmptyHost => "a host is empty: write host[:port],host[:port]",
            Self::BadHost => "a host holds only letters, digits, `-`, `.`, `_`, `~` and %-escapes",
            Self::BadPort => "a port must be a number from 1 to 65535",
            Self::ParamWithoutEquals => {
                "a query parameter has no `=`: write name=value pairs separated by &"
            }
            Self::ParamExtraEquals => {
                "a query parameter has more than one `=`: percent-encode an = in a value as %3D"
            }
            Self::EmptyParamName => "a query parameter has no name",
            Self::UnknownParam => {
                "a query parameter libpq does not know: check its spelling, and percent-encode \
                 an & or = in a password (%26, %3D)"
            }
        })
    }
}

impl fmt::Display for UrlPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme => f.write_str("the scheme"),
            Self::User => f.write_str("the user name"),
            Self::Password => f.write_str("the password"),
            Self::Hosts => f.write_str("the host list"),
            Self::DatabaseName => f.write_str("the database name"),
            Self::Query => f.write_str("the query"),
            Self::Param(name) => write!(f, "the `{name}` parameter"),
        }
    }
}

impl fmt::Display for ConninfoProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingEquals => {
                "a keyword is not followed by `=`: write keyword=value pairs separated by spaces"
            }
            Self::EmptyKeyword => "an `=` has no keyword before it",
            Self::BadKeyword => "a keyword holds only ASCII letters, digits and `_`",
            Self::UnknownKeyword => {
                "a keyword libpq does not know: check its spelling, and quote a value that \
                 holds spaces (password='a b')"
            }
            Self::MissingValue => "a keyword has no value: write keyword='' for an empty one",
            Self::UnterminatedQuote => {
                "a value opened with `'` is not closed: write a ' inside a quoted value as \\'"
            }
            Self::TextAfterQuote => "a closing `'` must be followed by a space or the end",
            Self::UnicodeWhitespace => {
                "non-ASCII whitespace outside quotes, which libpq and tokio-postgres read \
                 differently: quote the value"
            }
        })
    }
}

/// The keywords whose values are secrets.
const SECRET_KEYWORDS: &[&str] = &[
    "password",
    "sslpassword",
    "oauth_client_secret",
    "scram_client_key",
    "scram_server_key",
];

/// The connection keywords libpq (up to PostgreSQL 18) and tokio-postgres
/// know. Any other is refused: both drivers would fail on it anyway, with a
/// message quoting it, and an unknown keyword is often a piece of a password
/// that held an unquoted space (`password=a b=c`) or an unencoded `&`
/// (`?password=a&b=c`).
const KNOWN_KEYWORDS: &[&str] = &[
    "application_name",
    "channel_binding",
    "client_encoding",
    "connect_timeout",
    "dbname",
    "fallback_application_name",
    "gssdelegation",
    "gssencmode",
    "gsslib",
    "host",
    "hostaddr",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "krbsrvname",
    "load_balance_hosts",
    "max_protocol_version",
    "min_protocol_version",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_issuer",
    "oauth_scope",
    "options",
    "passfile",
    "password",
    "port",
    "replication",
    "require_auth",
    "requirepeer",
    "scram_client_key",
    "scram_server_key",
    "service",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcert",
    "sslcertmode",
    "sslcompression",
    "sslcrl",
    "sslcrldir",
    "sslkey",
    "sslkeylogfile",
    "sslmode",
    "sslnegotiation",
    "sslpassword",
    "sslrootcert",
    "sslsni",
    "target_session_attrs",
    "tcp_user_timeout",
    "user",
];

/// `keyword` as one of [`KNOWN_KEYWORDS`] (exactly: libpq's keywords are
/// case-sensitive).
fn known_keyword(keyword: &str) -> Option<&'static str> {
    KNOWN_KEYWORDS
        .iter()
        .copied()
        .find(|known| *known == keyword)
}

fn is_secret_keyword(keyword: &str) -> bool {
    SECRET_KEYWORDS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(keyword))
}

/// The character number (from 1) of byte `byte` of `text`.
fn char_position(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(0, |head| head.chars().count()) + 1
}

/// Whitespace as libpq's `isspace` sees it.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

impl DatabaseUrl {
    /// The SQLite file keel uses when no URL is configured.
    pub const DEFAULT_SQLITE_PATH: &'static str = "keel.db";

    /// Parses `url` into the backend it names (see the module's rules).
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        if url.contains('\0') {
            return Err(DatabaseUrlError::ContainsNul);
        }
        if starts_with_ignore_case(url, "postgres:") || starts_with_ignore_case(url, "postgresql:")
        {
            return parse_url(url).map(Self::Postgres);
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(DatabaseUrlError::MissingSqlitePath);
            }
            return Ok(Self::Sqlite(rest.to_owned()));
        }
        if looks_like_conninfo(url) {
            return parse_conninfo(url).map(Self::Postgres);
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(if is_scheme(scheme) {
                DatabaseUrlError::UnsupportedScheme {
                    scheme: scheme.to_owned(),
                }
            } else {
                DatabaseUrlError::NotAScheme
            });
        }
        Ok(Self::Sqlite(url.to_owned()))
    }

    /// The URL from `DATABASE_URL` (a `.env` file counts, if the caller loaded
    /// it with dotenvy), or the default SQLite file when it is unset.
    pub fn from_env() -> Result<Self, DatabaseUrlError> {
        Self::from_var(std::env::var("DATABASE_URL"))
    }

    /// [`DatabaseUrl::from_env`] for a value read elsewhere, as
    /// `std::env::var` returns it.
    pub fn from_var(value: Result<String, std::env::VarError>) -> Result<Self, DatabaseUrlError> {
        match value {
            Ok(url) => Self::parse(&url),
            Err(std::env::VarError::NotUnicode(_)) => Err(DatabaseUrlError::NotUnicode),
            Err(std::env::VarError::NotPresent) => {
                Ok(Self::Sqlite(Self::DEFAULT_SQLITE_PATH.to_owned()))
            }
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
            Self::Postgres(url) => url.as_connection_str(),
            Self::Sqlite(path) => path,
        }
    }

    /// `text` with every password of this URL replaced by `***` (see
    /// [`PostgresUrl::redact`]). Drivers' messages may quote parts of the
    /// URL, so anything built from a driver's error passes through here
    /// before it is shown.
    pub fn redact(&self, text: &str) -> String {
        match self {
            Self::Postgres(url) => url.redact(text),
            Self::Sqlite(_) => text.to_owned(),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

impl PostgresUrl {
    /// Parses a `postgres://` / `postgresql://` URL or a libpq key=value
    /// string (see the module's rules).
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        if url.contains('\0') {
            return Err(DatabaseUrlError::ContainsNul);
        }
        if starts_with_ignore_case(url, "postgres:") || starts_with_ignore_case(url, "postgresql:")
        {
            parse_url(url)
        } else {
            parse_conninfo(url)
        }
    }

    /// The string to hand to the driver. It holds any password: never log it.
    pub fn as_connection_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a key=value string rather than a URL.
    pub fn is_conninfo(&self) -> bool {
        matches!(self.form, Form::Conninfo { .. })
    }

    /// Whether the string carries a password (or an `sslpassword`).
    pub fn has_password(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Whether the string sets `keyword` (as libpq spells it: `connect_timeout`).
    pub fn sets(&self, keyword: &str) -> bool {
        self.keywords.iter().any(|set| set == keyword)
    }

    /// The connection string with `keyword=value` added, unless it sets
    /// `keyword` already. Like [`PostgresUrl::as_connection_str`], it holds
    /// any password: hand it to a driver only.
    pub fn connection_str_with_default(&self, keyword: &str, value: &str) -> String {
        if self.sets(keyword) {
            return self.text.clone();
        }
        match &self.form {
            Form::Url { query_start, .. } => {
                let separator = match query_start {
                    None => "?",
                    Some(start) if *start + 1 == self.text.len() => "",
                    Some(_) => "&",
                };
                format!(
                    "{}{separator}{}={}",
                    self.text,
                    percent_encode(keyword),
                    percent_encode(value)
                )
            }
            Form::Conninfo { .. } => {
                format!("{} {keyword}={}", self.text, conninfo_quote(value))
            }
        }
    }

    /// The same server and settings with database `dbname`: a URL's path is
    /// replaced (its query kept), a key=value string's `dbname` pairs are.
    pub fn with_dbname(&self, dbname: &str) -> Result<Self, DatabaseUrlError> {
        let text = match &self.form {
            Form::Url {
                hosts_end,
                query_start,
            } => {
                let query = query_start.map_or("", |start| &self.text[start..]);
                format!(
                    "{}/{}{query}",
                    &self.text[..*hosts_end],
                    percent_encode(dbname)
                )
            }
            Form::Conninfo { dbname_pairs } => {
                let mut text = String::new();
                let mut from = 0;
                for pair in dbname_pairs {
                    text.push_str(&self.text[from..pair.start]);
                    from = pair.end;
                }
                text.push_str(&self.text[from..]);
                format!("{} dbname={}", text.trim_end(), conninfo_quote(dbname))
            }
        };
        Self::parse(&text)
    }

    /// `text` with every password of this string replaced by `***`: as
    /// written (percent-encoded, quoted or escaped), as the server gets it,
    /// fully percent-encoded, and as `{:?}` escapes it.
    pub fn redact(&self, text: &str) -> String {
        let mut forms: Vec<String> = Vec::new();
        for (span, secret) in self.secret_spans.iter().zip(&self.secrets) {
            let written = &self.text[span.clone()];
            forms.push(written.to_owned());
            if let Some(inner) = written
                .strip_prefix('\'')
                .and_then(|rest| rest.strip_suffix('\''))
            {
                forms.push(inner.to_owned());
            }
            forms.push(secret.clone());
            forms.push(percent_encode(secret));
            forms.push(secret.escape_debug().to_string());
        }
        forms.retain(|form| !form.is_empty());
        // Longest first, so a form containing another is hidden whole.
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        let mut text = text.to_owned();
        for form in forms {
            text = text.replace(&form, "***");
        }
        text
    }
}

impl FromStr for PostgresUrl {
    type Err = DatabaseUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut from = 0;
        for span in &self.secret_spans {
            f.write_str(&self.text[from..span.start])?;
            f.write_str("***")?;
            from = span.end;
        }
        f.write_str(&self.text[from..])
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => fmt::Display::fmt(url, f),
            Self::Sqlite(path) => write!(f, "sqlite://{path}"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// RFC 3986's scheme: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && text.len() <= 32
}

/// Whether `text` starts like a key=value string: optional whitespace, a
/// keyword (a letter or `_`, then letters, digits or `_`), optional
/// whitespace, `=`.
fn looks_like_conninfo(text: &str) -> bool {
    let rest = text.trim_start();
    let keyword_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let starts_with_letter = rest
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_with_letter && rest[keyword_len..].trim_start().starts_with('=')
}

/// Every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `value` single-quoted for a key=value string.
fn conninfo_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Parses a `postgres://` URL (`text` is trimmed, non-empty, without NUL).
fn parse_url(text: &str) -> Result<PostgresUrl, DatabaseUrlError> {
    let fail = |problem, part, byte| DatabaseUrlError::InvalidPostgresUrl {
        problem,
        part,
        at: char_position(text, byte),
    };
    let start = if text.starts_with("postgresql://") {
        "postgresql://".len()
    } else if text.starts_with("postgres://") {
        "postgres://".len()
    } else {
        return Err(fail(UrlProblem::Scheme, UrlPart::Scheme, 0));
    };
    let mut url = PostgresUrl {
        text: text.to_owned(),
        form: Form::Url {
            hosts_end: text.len(),
            query_start: None,
        },
        secret_spans: Vec::new(),
        secrets: Vec::new(),
        keywords: Vec::new(),
    };

    // The user information: up to the one `@`, before any `/`, `?` or `#`.
    // libpq looks for the `@` up to the first `/`, tokio-postgres anywhere:
    // only a string where both find the same one is taken.
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    let ats: Vec<usize> = text[start..]
        .match_indices('@')
        .map(|(i, _)| start + i)
        .collect();
    let hosts_start = match ats.as_slice() {
        [] => start,
        [first, _, ..] => {
            let part = if text[start..*first].contains(':') {
                UrlPart::Password
            } else {
                UrlPart::User
            };
            return Err(fail(UrlProblem::SecondAt, part, *first));
        }
        [at] if *at > authority_end => {
            // `user:pass/word@host`: the `/` ends what looks like a password
            // (not a port: that would be digits only).
            let password_like = text[start..authority_end]
                .split_once(':')
                .is_some_and(|(_, after)| !after.bytes().all(|b| b.is_ascii_digit()));
            return Err(if password_like {
                fail(UrlProblem::AtAfterHosts, UrlPart::Password, authority_end)
            } else {
                fail(UrlProblem::AtAfterHosts, part_at(text, start, *at), *at)
            });
        }
        [at] => {
            let (user, password) = match text[start..*at].find(':') {
                Some(colon) => (start..start + colon, Some(start + colon + 1..*at)),
                None => (start..*at, None),
            };
            let user_name = decode(text, user, UrlPart::User)?;
            if !user_name.is_empty() {
                url.keywords.push("user".to_owned());
            }
            if let Some(span) = password {
                let secret = decode(text, span.clone(), UrlPart::Password)?;
                if !span.is_empty() {
                    url.secret_spans.push(span);
                    url.secrets.push(secret);
                    url.keywords.push("password".to_owned());
                }
            }
            at + 1
        }
    };
    if let Some(hash) = text.find('#') {
        return Err(fail(
            UrlProblem::Fragment,
            part_at(text, hosts_start, hash),
            hash,
        ));
    }

    // The hosts: up to the first `/` or `?`.
    let hosts_end = text[hosts_start..]
        .find(['/', '?'])
        .map_or(text.len(), |i| hosts_start + i);
    if hosts_end > hosts_start {
        let mut chunk_start = hosts_start;
        for chunk in text[hosts_start..hosts_end].split(',') {
            check_host(text, chunk_start, chunk)?;
            chunk_start += chunk.len() + 1;
        }
        url.keywords.push("host".to_owned());
    }

    // The database name: after `/`, up to `?`.
    let query_start = text[hosts_end..].find('?').map(|i| hosts_end + i);
    if text[hosts_end..].starts_with('/') {
        let path = hosts_end + 1..query_start.unwrap_or(text.len());
        if !decode(text, path, UrlPart::DatabaseName)?.is_empty() {
            url.keywords.push("dbname".to_owned());
        }
    }

    // The query: name=value pairs separated by `&`.
    if let Some(query_start) = query_start {
        let mut pair_start = query_start + 1;
        for pair in text[query_start + 1..].split('&') {
            if query_start + 1 < text.len() {
                parse_query_pair(text, pair_start, pair, &mut url)?;
            }
            pair_start += pair.len() + 1;
        }
    }
    url.form = Form::Url {
        hosts_end,
        query_start,
    };
    Ok(url)
}

/// The part of a URL byte `byte` is in, past the user information.
fn part_at(text: &str, hosts_start: usize, byte: usize) -> UrlPart {
    let hosts_end = text[hosts_start..]
        .find(['/', '?'])
        .map_or(text.len(), |i| hosts_start + i);
    match text[hosts_end..].find('?').map(|i| hosts_end + i) {
        _ if byte < hosts_end => UrlPart::Hosts,
        Some(query) if byte > query => UrlPart::Query,
        _ => UrlPart::DatabaseName,
    }
}

/// Checks one `host[:port]` of a URL's host list, at byte `offset`.
fn check_host(text: &str, offset: usize, chunk: &str) -> Result<(), DatabaseUrlError> {
    let fail = |problem, byte| DatabaseUrlError::InvalidPostgresUrl {
        problem,
        part: UrlPart::Hosts,
        at: char_position(text, byte),
    };
    let port = if let Some(inner) = chunk.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| fail(UrlProblem::UnclosedBracket, offset))?;
        let address = &inner[..close];
        // An address, then maybe a zone (`%25eth0`).
        let (address, zone) = address.split_once("%25").unwrap_or((address, ""));
        let ipv6_char = |c: char| c.is_ascii_hexdigit() || matches!(c, ':' | '.');
        let zone_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if address.is_empty() || !address.chars().all(ipv6_char) || !zone.chars().all(zone_char) {
            return Err(fail(UrlProblem::BadIpv6, offset + 1));
        }
        decode(text, offset + 1..offset + 1 + close, UrlPart::Hosts)?;
        let after = &inner[close + 1..];
        let after_offset = offset + 1 + close + 1;
        match after.strip_prefix(':') {
            Some(port) => Some((after_offset + 1, port)),
            None if after.is_empty() => None,
            None => return Err(fail(UrlProblem::AfterBracket, after_offset)),
        }
    } else {
        let (host, port) = match chunk.split_once(':') {
            Some((host, port)) => (host, Some((offset + host.len() + 1, port))),
            None => (chunk, None),
        };
        if host.is_empty() {
            return Err(fail(UrlProblem::EmptyHost, offset));
        }
        let host_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%');
        if let Some((i, _)) = host.char_indices().find(|&(_, c)| !host_char(c)) {
            return Err(fail(UrlProblem::BadHost, offset + i));
        }
        decode(text, offset..offset + host.len(), UrlPart::Hosts)?;
        port
    };
    if let Some((port_offset, port)) = port {
        let valid = port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|port| port > 0);
        if !valid {
            return Err(fail(UrlProblem::BadPort, port_offset));
        }
    }
    Ok(())
}

/// Checks one `name=value` of a URL's query, at byte `offset`, and records
/// its keyword, and its value if it is a secret.
fn parse_query_pair(
    text: &str,
    offset: usize,
    pair: &str,
    url: &mut PostgresUrl,
) -> Result<(), DatabaseUrlError> {
    let fail = |problem, part, byte| DatabaseUrlError::InvalidPostgresUrl {
        problem,
        part,
        at: char_position(text, byte),
    };
    let Some(equals) = pair.find('=') else {
        return Err(fail(UrlProblem::ParamWithoutEquals, UrlPart::Query, offset));
    };
    let name = decode(text, offset..offset + equals, UrlPart::Query)?;
    if name.is_empty() {
        return Err(fail(UrlProblem::EmptyParamName, UrlPart::Query, offset));
    }
    let Some(known) = known_keyword(&name) else {
        return Err(fail(UrlProblem::UnknownParam, UrlPart::Query, offset));
    };
    let part = UrlPart::Param(known);
    if let Some(second) = pair[equals + 1..].find('=') {
        return Err(fail(
            UrlProblem::ParamExtraEquals,
            part,
            offset + equals + 1 + second,
        ));
    }
    let span = offset + equals + 1..offset + pair.len();
    let value = decode(text, span.clone(), part)?;
    if is_secret_keyword(&name) && !span.is_empty() {
        url.secret_spans.push(span);
        url.secrets.push(value);
    }
    url.keywords.push(name);
    Ok(())
}

/// `text[range]` with its `%XX` escapes decoded; refused when an escape is
/// malformed or `%00`, or the result is not UTF-8.
fn decode(text: &str, range: Range<usize>, part: UrlPart) -> Result<String, DatabaseUrlError> {
    let fail = |problem, byte| DatabaseUrlError::InvalidPostgresUrl {
        problem,
        part,
        at: char_position(text, byte),
    };
    let bytes = &text.as_bytes()[range.clone()];
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte != b'%' {
            out.push(byte);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match hex {
            Some(0) => return Err(fail(UrlProblem::PercentEncodedNul, range.start + i)),
            Some(decoded) => out.push(decoded),
            None => return Err(fail(UrlProblem::BadPercentEncoding, range.start + i)),
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| fail(UrlProblem::NotUtf8, range.start))
}

/// Parses a libpq key=value string (`text` is trimmed, non-empty, without
/// NUL), as libpq's `conninfo_parse` and tokio-postgres's `Parser` both
/// read it.
fn parse_conninfo(text: &str) -> Result<PostgresUrl, DatabaseUrlError> {
    let fail = |problem, keyword: Option<&'static str>, byte| DatabaseUrlError::InvalidConninfo {
        problem,
        keyword,
        at: char_position(text, byte),
    };
    let mut url = PostgresUrl {
        text: text.to_owned(),
        form: Form::Conninfo {
            dbname_pairs: Vec::new(),
        },
        secret_spans: Vec::new(),
        secrets: Vec::new(),
        keywords: Vec::new(),
    };
    let mut dbname_pairs = Vec::new();
    let mut chars = text.char_indices().peekable();
    // Whitespace between tokens: ASCII only (tokio-postgres would also split
    // on Unicode whitespace, libpq would not).
    let skip_space = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
                      keyword: Option<&'static str>|
     -> Result<(), DatabaseUrlError> {
        while let Some(&(i, c)) = chars.peek() {
            if is_c_space(c) {
                chars.next();
            } else if c.is_whitespace() {
                return Err(fail(ConninfoProblem::UnicodeWhitespace, keyword, i));
            } else {
                break;
            }
        }
        Ok(())
    };
    loop {
        skip_space(&mut chars, None)?;
        let Some(&(pair_start, _)) = chars.peek() else {
            break;
        };
        let mut keyword_end = pair_start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            if !(c.is_ascii_alphanumeric() || c == '_') {
                return Err(fail(ConninfoProblem::BadKeyword, None, i));
            }
            chars.next();
            keyword_end = i + c.len_utf8();
        }
        if keyword_end == pair_start {
            return Err(fail(ConninfoProblem::EmptyKeyword, None, pair_start));
        }
        let keyword = &text[pair_start..keyword_end];
        let Some(known) = known_keyword(keyword) else {
            return Err(fail(ConninfoProblem::UnknownKeyword, None, pair_start));
        };
        let known = Some(known);
        skip_space(&mut chars, known)?;
        if !matches!(chars.next(), Some((_, '='))) {
            return Err(fail(ConninfoProblem::MissingEquals, known, pair_start));
        }
        skip_space(&mut chars, known)?;
        let Some(&(value_start, first)) = chars.peek() else {
            return Err(fail(ConninfoProblem::MissingValue, known, pair_start));
        };
        let mut value = String::new();
        if first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(fail(ConninfoProblem::UnterminatedQuote, known, value_start));
                    }
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, escaped)) => value.push(escaped),
                        None => {
                            return Err(fail(
                                ConninfoProblem::UnterminatedQuote,
                                known,
                                value_start,
                            ));
                        }
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            match chars.peek() {
                Some(&(_, c)) if is_c_space(c) => {}
                Some(&(i, c)) if c.is_whitespace() => {
                    return Err(fail(ConninfoProblem::UnicodeWhitespace, known, i));
                }
                Some(&(i, _)) => return Err(fail(ConninfoProblem::TextAfterQuote, known, i)),
                None => {}
            }
        } else {
            while let Some(&(i, c)) = chars.peek() {
                if is_c_space(c) {
                    break;
                }
                if c.is_whitespace() {
                    return Err(fail(ConninfoProblem::UnicodeWhitespace, known, i));
                }
                chars.next();
                if c != '\\' {
                    value.push(c);
                    continue;
                }
                // A backslash takes the next character whatever it is (both
                // drivers); at the end it takes nothing.
                if let Some((j, escaped)) = chars.next() {
                    if escaped.is_whitespace() && !is_c_space(escaped) {
                        return Err(fail(ConninfoProblem::UnicodeWhitespace, known, j));
                    }
                    value.push(escaped);
                }
            }
            // tokio-postgres refuses an empty unquoted value (`password=\\`).
            if value.is_empty() {
                return Err(fail(ConninfoProblem::MissingValue, known, pair_start));
            }
        }
        let value_end = chars.peek().map_or(text.len(), |&(i, _)| i);
        if is_secret_keyword(keyword) && value_end > value_start && !value.is_empty() {
            url.secret_spans.push(value_start..value_end);
            url.secrets.push(value);
        }
        if keyword == "dbname" {
            dbname_pairs.push(pair_start..value_end);
        }
        url.keywords.push(keyword.to_owned());
    }
    url.form = Form::Conninfo { dbname_pairs };
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> PostgresUrl {
        match DatabaseUrl::parse(url) {
            Ok(DatabaseUrl::Postgres(url)) => url,
            other => panic!("{url}: expected PostgreSQL, got {other:?}"),
        }
    }

    fn refused(url: &str) -> DatabaseUrlError {
        DatabaseUrl::parse(url).expect_err(url)
    }

    /// What libpq / tokio-postgres would take as the passwords.
    fn secrets(url: &PostgresUrl) -> Vec<&str> {
        url.secrets.iter().map(String::as_str).collect()
    }

    #[test]
    fn postgres_urls_parse_with_their_passwords() {
        for (url, password, shown) in [
            ("postgres://u@h/db", None, "postgres://u@h/db"),
            ("postgresql://u@h/db", None, "postgresql://u@h/db"),
            ("postgres://h", None, "postgres://h"),
            ("postgres://", None, "postgres://"),
            ("postgres:///db", None, "postgres:///db"),
            ("postgres://u:@h/db", None, "postgres://u:@h/db"),
            (
                "postgres://app:s3cret@db:5432/keel",
                Some("s3cret"),
                "postgres://app:***@db:5432/keel",
            ),
            (
                "postgres://app:a%2Fb%3Fc%23d%40e%25@db/keel",
                Some("a/b?c#d@e%"),
                "postgres://app:***@db/keel",
            ),
            (
                "postgres://app:pa:ss w,[]ord!$&'()*+;=é@db/keel",
                Some("pa:ss w,[]ord!$&'()*+;=é"),
                "postgres://app:***@db/keel",
            ),
            (
                "postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write",
                Some("p"),
                "postgres://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write",
            ),
            (
                "postgres://u:pw@[::1]:5432/db",
                Some("pw"),
                "postgres://u:***@[::1]:5432/db",
            ),
            (
                "postgres://u:pw@[::1],[fe80::1%25eth0]:5433/db",
                Some("pw"),
                "postgres://u:***@[::1],[fe80::1%25eth0]:5433/db",
            ),
            (
                "postgres://%2Fvar%2Frun%2Fpostgresql/db",
                None,
                "postgres://%2Fvar%2Frun%2Fpostgresql/db",
            ),
            (
                "postgres://u@h/db?sslmode=disable&password=x%20y&application_name=a",
                Some("x y"),
                "postgres://u@h/db?sslmode=disable&password=***&application_name=a",
            ),
            (
                "postgres://u@h/db?pass%77ord=zz",
                Some("zz"),
                "postgres://u@h/db?pass%77ord=***",
            ),
            ("postgres://u@h/db?", None, "postgres://u@h/db?"),
            (
                "postgres://h?sslmode=disable",
                None,
                "postgres://h?sslmode=disable",
            ),
            (
                "  postgres://u:pw@h/db  ",
                Some("pw"),
                "postgres://u:***@h/db",
            ),
        ] {
            let parsed = pg(url);
            assert_eq!(
                secrets(&parsed),
                password.into_iter().collect::<Vec<_>>(),
                "{url}"
            );
            assert_eq!(parsed.to_string(), shown, "{url}");
            assert_eq!(parsed.as_connection_str(), url.trim(), "{url}");
            assert!(!parsed.is_conninfo());
        }
        let url = pg("postgres://u:p@h/db?sslpassword=k3y");
        assert_eq!(secrets(&url), ["p", "k3y"]);
        assert_eq!(url.to_string(), "postgres://u:***@h/db?sslpassword=***");
    }

    #[test]
    fn conninfo_strings_parse_with_their_passwords() {
        for (url, password, shown) in [
            (
                "host=127.0.0.1 password=s3cret dbname=test",
                Some("s3cret"),
                "host=127.0.0.1 password=*** dbname=test",
            ),
            (
                "host = 127.0.0.1   password = 's3 cr\\'et\\\\' dbname=test",
                Some("s3 cr'et\\"),
                "host = 127.0.0.1   password = *** dbname=test",
            ),
            ("password=a\\ b\\'c", Some("a b'c"), "password=***"),
            (
                "password=ab'cd port=1",
                Some("ab'cd"),
                "password=*** port=1",
            ),
            ("password=''", None, "password=''"),
            (
                "dbname=x\tuser=y\npassword=z",
                Some("z"),
                "dbname=x\tuser=y\npassword=***",
            ),
            ("password='a\u{a0}b'", Some("a\u{a0}b"), "password=***"),
            (
                "host=h sslpassword=k password=p",
                Some("k"),
                "host=h sslpassword=*** password=***",
            ),
            ("  dbname = test", None, "dbname = test"),
        ] {
            let parsed = pg(url);
            assert!(parsed.is_conninfo(), "{url}");
            if let Some(password) = password {
                assert_eq!(secrets(&parsed)[0], password, "{url}");
            } else {
                assert!(!parsed.has_password(), "{url}");
            }
            assert_eq!(parsed.to_string(), shown, "{url}");
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
            ("sqlite://a=b.db", "a=b.db"),
            ("file:x.db?mode=memory", "file:x.db?mode=memory"),
            ("./host=x.db", "./host=x.db"),
            ("my db=1.db", "my db=1.db"),
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
            refused("mysql://root@localhost/test"),
            DatabaseUrlError::UnsupportedScheme {
                scheme: "mysql".into()
            }
        );
        assert_eq!(refused("  "), DatabaseUrlError::Empty);
        assert_eq!(refused("sqlite://"), DatabaseUrlError::MissingSqlitePath);
        assert_eq!(
            refused("u:s3cret@h://x"),
            DatabaseUrlError::NotAScheme,
            "not echoed as a scheme"
        );
        assert_eq!(refused("a\0b"), DatabaseUrlError::ContainsNul);
        for url in [
            "POSTGRES://u:s3cret@h/db",
            "postgres:/h/db",
            "postgresql:u:s3cret@h",
        ] {
            assert!(
                matches!(
                    refused(url),
                    DatabaseUrlError::InvalidPostgresUrl {
                        problem: UrlProblem::Scheme,
                        ..
                    }
                ),
                "{url}"
            );
        }
    }

    /// Each ambiguous or malformed URL is refused with the expected
    /// problem, and no message holds any of the password `s3cretPW`.
    #[test]
    fn ambiguous_urls_are_refused_without_quoting_them() {
        use UrlProblem::*;
        for (url, problem, part) in [
            (
                "postgres://postgres:s3cret%zzPW@127.0.0.1/test",
                BadPercentEncoding,
                UrlPart::Password,
            ),
            (
                "postgres://postgres:s3cretPW%@127.0.0.1/test",
                BadPercentEncoding,
                UrlPart::Password,
            ),
            (
                "postgres://postgres:s3cret%00PW@127.0.0.1/test",
                PercentEncodedNul,
                UrlPart::Password,
            ),
            (
                "postgres://postgres:s3cret%FFPW@127.0.0.1/test",
                NotUtf8,
                UrlPart::Password,
            ),
            (
                "postgres://u%zz:s3cretPW@h/test",
                BadPercentEncoding,
                UrlPart::User,
            ),
            (
                "postgres://postgres:s3cretPW@[::1:5433/test",
                UnclosedBracket,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@[::1]x/test",
                AfterBracket,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@[g::1]/test",
                BadIpv6,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@[]/test",
                BadIpv6,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cret/PW@127.0.0.1/test",
                AtAfterHosts,
                UrlPart::Password,
            ),
            (
                "postgres://postgres:s3cret?PW@127.0.0.1/test",
                AtAfterHosts,
                UrlPart::Password,
            ),
            (
                "postgres://postgres:s3cret#PW@127.0.0.1/test",
                AtAfterHosts,
                UrlPart::Password,
            ),
            (
                "postgres://us/er@127.0.0.1/test?password=s3cretPW",
                AtAfterHosts,
                UrlPart::DatabaseName,
            ),
            (
                "postgres://postgres:s3cret@PW@127.0.0.1/test",
                SecondAt,
                UrlPart::Password,
            ),
            (
                "postgres://h/test?password=s3cretPW&x=a@b",
                AtAfterHosts,
                UrlPart::Query,
            ),
            ("postgres://h:5432/test?x=a@b", AtAfterHosts, UrlPart::Query),
            (
                "postgres://postgres:s3cretPW@h/test#frag",
                Fragment,
                UrlPart::DatabaseName,
            ),
            (
                "postgres://h/test?password=s3cret#PW",
                Fragment,
                UrlPart::Query,
            ),
            (
                "postgres://postgres:s3cretPW@h:54x2/test",
                BadPort,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h:/test",
                BadPort,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h:0/test",
                BadPort,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h:65536/test",
                BadPort,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h:1:2/test",
                BadPort,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h1,,h2/test",
                EmptyHost,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h1,/test",
                EmptyHost,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@:5432/test",
                EmptyHost,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@h st/test",
                BadHost,
                UrlPart::Hosts,
            ),
            (
                "postgres://postgres:s3cretPW@hé/test",
                BadHost,
                UrlPart::Hosts,
            ),
            (
                "postgres://h/test?password",
                ParamWithoutEquals,
                UrlPart::Query,
            ),
            (
                "postgres://h/test?sslmode=disable&&x=1",
                ParamWithoutEquals,
                UrlPart::Query,
            ),
            (
                "postgres://h/test?sslmode=disable&",
                ParamWithoutEquals,
                UrlPart::Query,
            ),
            (
                "postgres://h/test?password=s3cret=PW",
                ParamExtraEquals,
                UrlPart::Param("password"),
            ),
            (
                "postgres://h/test?=s3cretPW",
                EmptyParamName,
                UrlPart::Query,
            ),
            (
                "postgres://h/test?password=s3cret&PW=x",
                UnknownParam,
                UrlPart::Query,
            ),
            (
                "postgres://h/test?password=s3cretPW&bogus_option=1",
                UnknownParam,
                UrlPart::Query,
            ),
            (
                "postgres://h/test?password=s3cret%zzPW",
                BadPercentEncoding,
                UrlPart::Param("password"),
            ),
            (
                "postgres://h/te%zzst?password=s3cretPW",
                BadPercentEncoding,
                UrlPart::DatabaseName,
            ),
        ] {
            let error = refused(url);
            let DatabaseUrlError::InvalidPostgresUrl {
                problem: got,
                part: got_part,
                ..
            } = error
            else {
                panic!("{url}: {error:?}");
            };
            assert_eq!((got, got_part), (problem, part), "{url}");
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(
                    !shown.contains("s3cret") && !shown.contains("PW"),
                    "{url}: {shown}"
                );
            }
        }
    }

    #[test]
    fn errors_name_a_position_and_what_to_do() {
        assert_eq!(
            refused("postgres://postgres:s3cret%zzPW@127.0.0.1/test").to_string(),
            "invalid PostgreSQL URL (the password, character 27): `%` must be followed by two \
             hex digits (write a literal % as %25)"
        );
        let slash = refused("postgres://postgres:s3cret/PW@127.0.0.1/test").to_string();
        assert!(
            slash.contains("percent-encode / ? # in the password"),
            "{slash}"
        );
        assert_eq!(
            refused("host=h password='s3cretPW").to_string(),
            "invalid PostgreSQL key=value connection string (the `password` pair, character \
             17): a value opened with `'` is not closed: write a ' inside a quoted value as \\'"
        );
    }

    #[test]
    fn malformed_conninfo_is_refused_without_quoting_it() {
        use ConninfoProblem::*;
        for (url, problem, keyword) in [
            (
                "host=h password='s3cretPW",
                UnterminatedQuote,
                Some("password"),
            ),
            (
                "host=h password='s3cretPW\\'",
                UnterminatedQuote,
                Some("password"),
            ),
            ("host=h password s3cretPW", MissingEquals, Some("password")),
            ("host=h s3cretPW", UnknownKeyword, None),
            ("host=h password=s3cret PW=x", UnknownKeyword, None),
            ("host=h PASSWORD=s3cretPW", UnknownKeyword, None),
            ("host=h password=\\", MissingValue, Some("password")),
            ("host=h password=", MissingValue, Some("password")),
            ("host=h =s3cretPW", EmptyKeyword, None),
            ("host=h pass'word=s3cretPW", BadKeyword, None),
            (
                "host=h password='s3cret'PW",
                TextAfterQuote,
                Some("password"),
            ),
            (
                "host=h password=s3cret\u{a0}PW",
                UnicodeWhitespace,
                Some("password"),
            ),
            (
                "host=h password=s3cret\\\u{2003}PW",
                UnicodeWhitespace,
                Some("password"),
            ),
            (
                "host=h\u{2003}password=s3cretPW",
                UnicodeWhitespace,
                Some("host"),
            ),
            ("host=h \u{2003}password=s3cretPW", UnicodeWhitespace, None),
        ] {
            let error = refused(url);
            let DatabaseUrlError::InvalidConninfo {
                problem: got,
                keyword: got_keyword,
                ..
            } = error
            else {
                panic!("{url}: {error:?}");
            };
            assert_eq!((got, got_keyword), (problem, keyword), "{url}");
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(
                    !shown.contains("s3cret") && !shown.contains("PW"),
                    "{url}: {shown}"
                );
            }
        }
    }

    #[test]
    fn a_key_value_string_is_never_a_sqlite_file() {
        for url in [
            "host=127.0.0.1 password=s3cret dbname=test",
            "  dbname = test",
            "password='s3cret",
        ] {
            assert!(
                !matches!(DatabaseUrl::parse(url), Ok(DatabaseUrl::Sqlite(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn redact_hides_passwords_in_any_text() {
        let url = pg("postgres://app:s3cr%40t@db/keel?sslmode=disable&password=other%20one");
        let message = "token: \"s3cr%40t\"; s3cr@t; other one; other%20one";
        assert_eq!(url.redact(message), "token: \"***\"; ***; ***; ***");
        let raw = pg("postgres://app:a\"b%2Fc%2f@db/keel");
        assert_eq!(
            raw.redact("a\"b%2Fc%2f; a\"b/c/; a%22b%2Fc%2F; a\\\"b/c/"),
            "***; ***; ***; ***"
        );
        let no_password = pg("postgres://app@db/keel");
        assert_eq!(no_password.redact("app at db"), "app at db");
        assert_eq!(
            DatabaseUrl::Sqlite("x.db".into()).redact("x.db is locked"),
            "x.db is locked"
        );
        let conninfo = pg("host=h password='s3 \\'cr' dbname=x");
        assert_eq!(
            conninfo.redact("'s3 \\'cr' | s3 \\'cr | s3 'cr | s3%20%27cr"),
            "*** | *** | *** | ***"
        );
    }

    #[test]
    fn display_and_debug_hide_passwords() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cret@db:5432/keel?password=s3cret&sslmode=disable",
        )
        .expect("valid url");
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/keel?password=***&sslmode=disable"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let conninfo = DatabaseUrl::parse("password=s3cret host=h").expect("valid");
        assert_eq!(format!("{conninfo:?}"), "DatabaseUrl(password=*** host=h)");
        let DatabaseUrl::Postgres(inner) = conninfo else {
            panic!("PostgreSQL")
        };
        assert_eq!(format!("{inner:?}"), "PostgresUrl(password=*** host=h)");
    }

    #[test]
    fn a_default_is_added_unless_set() {
        for (url, expected) in [
            ("postgres://h/db", "postgres://h/db?connect_timeout=5"),
            ("postgres://h/db?", "postgres://h/db?connect_timeout=5"),
            (
                "postgres://h/db?sslmode=disable",
                "postgres://h/db?sslmode=disable&connect_timeout=5",
            ),
            (
                "postgres://h/db?connect_timeout=9",
                "postgres://h/db?connect_timeout=9",
            ),
            (
                "postgres://u:connect_timeout=1@h/db",
                "postgres://u:connect_timeout=1@h/db?connect_timeout=5",
            ),
            ("host=h dbname=db", "host=h dbname=db connect_timeout='5'"),
            ("host=h connect_timeout = 9", "host=h connect_timeout = 9"),
            (
                "host=h password=connect_timeout=1",
                "host=h password=connect_timeout=1 connect_timeout='5'",
            ),
        ] {
            let with = pg(url).connection_str_with_default("connect_timeout", "5");
            assert_eq!(with, expected, "{url}");
            PostgresUrl::parse(&with).expect("still valid");
        }
    }

    #[test]
    fn with_dbname_replaces_the_database() {
        for (url, expected) in [
            ("postgres://u:p@h:5432", "postgres://u:***@h:5432/other"),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:***@h/other?sslmode=disable",
            ),
            (
                "postgres://h?sslmode=disable",
                "postgres://h/other?sslmode=disable",
            ),
            (
                "host=h dbname=db password=p",
                "host=h  password=*** dbname='other'",
            ),
            ("host=h", "host=h dbname='other'"),
        ] {
            let renamed = pg(url).with_dbname("other").expect("valid");
            assert_eq!(renamed.to_string(), expected, "{url}");
        }
        let odd = pg("postgres://h/db").with_dbname("a b/c").expect("valid");
        assert_eq!(odd.as_connection_str(), "postgres://h/a%20b%2Fc");
    }
}
