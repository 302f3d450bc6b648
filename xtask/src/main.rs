//! Maintenance tasks for the keel workspace, run as `cargo xtask <task>`.
//!
//! * `schema-check`: fails if `crates/schema/src/schema.rs` is not exactly what
//!   `diesel print-schema` gives for a fresh PostgreSQL database migrated with
//!   `migrations/postgres`, or if `migrations/sqlite` builds a different schema
//!   (same tables, columns, order, nullability, primary keys and joins, SQL
//!   types compared up to Diesel's aliases).
//! * `schema-update`: regenerates `crates/schema/src/schema.rs` from a fresh
//!   PostgreSQL database migrated with `migrations/postgres`.
//!
//! * `guard-cost`: the N+1 guard's share of keel-bench's B2 and B4, counted
//!   in instructions under callgrind (see [`guard_cost`]).
//!
//! The schema tasks drive the diesel CLI. The PostgreSQL server comes from `KEEL_PG_URL`
//! (default `postgres://postgres@127.0.0.1:5432`); every run uses its own
//! scratch database, dropped afterwards with `diesel database drop`.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

/// keel-migrations' URL parser, shared by path: it needs nothing beyond
/// `std`, so xtask keeps building without dependencies.
#[allow(dead_code)]
#[path = "../../crates/migrations/src/database_url.rs"]
mod database_url;

use database_url::{DatabaseUrl, PostgresUrl};

mod guard_cost;

type Result<T, E = String> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  schema-check   check crates/schema/src/schema.rs against migrations/postgres
                 (exact print-schema output) and migrations/sqlite (same tables,
                 columns, nullability, keys and joins up to Diesel type aliases)
  schema-update  regenerate crates/schema/src/schema.rs from migrations/postgres
  guard-cost     the N+1 guard's share of keel-bench's B2 and B4 on both
                 backends, in instructions under valgrind's callgrind (fails
                 over 5%)

environment:
  KEEL_PG_URL    PostgreSQL server to create scratch databases on
                 (default postgres://postgres@127.0.0.1:5432)";

const INSTALL_HINT: &str =
    "cargo install diesel_cli --locked --no-default-features --features postgres,sqlite";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432";
const SCRATCH_PREFIX: &str = "keel_schema_check";

/// Workspace-relative paths (diesel.toml and diesel.sqlite.toml name the same ones).
const SCHEMA_RS: &str = "crates/schema/src/schema.rs";
const PG_MIGRATIONS: &str = "migrations/postgres";
const SQLITE_MIGRATIONS: &str = "migrations/sqlite";
const SQLITE_SCHEMA_RS: &str = "target/schema.sqlite.rs";
const PG_CONFIG: &str = "diesel.toml";
const SQLITE_CONFIG: &str = "diesel.sqlite.toml";

/// At most this many diff lines are printed for PostgreSQL drift.
const MAX_DIFF_LINES: usize = 60;

const PG_LABEL: &str = "PostgreSQL schema.rs";
const SQLITE_LABEL: &str = "SQLite migrations";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = match args.as_slice() {
        [task] => task.as_str(),
        _ => return usage_error(),
    };
    let result = match task {
        "schema-check" => schema_check(),
        "schema-update" => schema_update().map(|()| true),
        "guard-cost" => guard_cost::guard_cost(),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => return usage_error(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

/// Returns Ok(true) when both backends match, Ok(false) on drift.
fn schema_check() -> Result<bool> {
    let root = workspace_root()?;
    let diesel = Diesel::locate(&root)?;
    let schema_path = root.join(SCHEMA_RS);
    let checked_in = fs::read_to_string(&schema_path)
        .map_err(|e| format!("cannot read {}: {e}", schema_path.display()))?;

    let pg_generated = generate_pg_schema(&root, &diesel)?;
    let sqlite_generated = generate_sqlite_schema(&root, &diesel)?;

    // PostgreSQL: the checked-in file must be exactly what print-schema gives.
    let pg_ok = pg_generated == checked_in;
    if pg_ok {
        println!("PostgreSQL: {SCHEMA_RS} matches `diesel print-schema` for {PG_MIGRATIONS}");
    } else {
        eprintln!(
            "PostgreSQL: {SCHEMA_RS} differs from `diesel print-schema` for a fresh database \
             migrated with {PG_MIGRATIONS}:"
        );
        let labels = (format!("{SCHEMA_RS} (checked in)"), generated_label());
        for line in render_diff(&checked_in, &pg_generated, &labels) {
            eprintln!("  {line}");
        }
    }

    // SQLite: structural comparison against the checked-in schema of record.
    let pg_schema =
        parse_schema(&checked_in).map_err(|e| format!("cannot parse {SCHEMA_RS}: {e}"))?;
    let sqlite_schema = parse_schema(&sqlite_generated)
        .map_err(|e| format!("cannot parse SQLite print-schema output: {e}"))?;
    let differences = compare_schemas(&pg_schema, &sqlite_schema);
    // Keep SQLite's output for inspection where diesel.sqlite.toml puts it
    // (under target/, so never part of the repository).
    let sqlite_saved = fs::create_dir_all(root.join("target")).is_ok()
        && fs::write(root.join(SQLITE_SCHEMA_RS), &sqlite_generated).is_ok();
    let sqlite_ok = differences.is_empty();
    if sqlite_ok {
        println!(
            "SQLite: {SQLITE_MIGRATIONS} matches {SCHEMA_RS} ({} tables, up to Diesel type aliases)",
            pg_schema.tables.len()
        );
    } else {
        eprintln!(
            "SQLite: {SQLITE_MIGRATIONS} does not match {SCHEMA_RS} ({} difference{}):",
            differences.len(),
            if differences.len() == 1 { "" } else { "s" }
        );
        for difference in &differences {
            eprintln!("  {difference}");
        }
        if sqlite_saved {
            eprintln!("  (SQLite print-schema output: {SQLITE_SCHEMA_RS})");
        }
    }

    if !pg_ok {
        eprintln!();
        eprintln!(
            "error: {SCHEMA_RS} is out of date with {PG_MIGRATIONS}; regenerate it: \
             cargo xtask schema-update"
        );
        eprintln!(
            "       (`diesel migration run` against a fresh database also rewrites it, \
             since diesel.toml sets print_schema.file)"
        );
    }
    if !sqlite_ok {
        eprintln!();
        eprintln!(
            "error: the SQLite schema has drifted from the schema of record; fix {SQLITE_MIGRATIONS} \
             so it matches {PG_MIGRATIONS}"
        );
    }
    if !pg_ok && sqlite_ok {
        eprintln!(
            "note: SQLite was compared with the checked-in {SCHEMA_RS}; run the check again \
             after regenerating it"
        );
    }
    Ok(pg_ok && sqlite_ok)
}

fn schema_update() -> Result<()> {
    let root = workspace_root()?;
    let diesel = Diesel::locate(&root)?;
    let schema_path = root.join(SCHEMA_RS);
    let generated = generate_pg_schema(&root, &diesel)?;
    let tables = parse_schema(&generated)
        .map(|schema| schema.tables.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "?".to_owned());
    let summary = format!(
        "{} lines, {} bytes; tables: {tables}",
        generated.lines().count(),
        generated.len()
    );

    let previous = match fs::read_to_string(&schema_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", schema_path.display())),
    };
    if previous.as_deref() == Some(generated.as_str()) {
        println!(
            "{SCHEMA_RS} is already up to date with {PG_MIGRATIONS} ({summary}); not rewritten"
        );
        return Ok(());
    }
    fs::write(&schema_path, &generated)
        .map_err(|e| format!("cannot write {}: {e}", schema_path.display()))?;
    println!(
        "wrote {SCHEMA_RS} from `diesel print-schema` of a fresh database migrated with \
         {PG_MIGRATIONS} ({summary})"
    );
    if let Some(previous) = previous {
        println!("changes:");
        let labels = (
            format!("{SCHEMA_RS} (before)"),
            format!("{SCHEMA_RS} (now)"),
        );
        for line in render_diff(&previous, &generated, &labels) {
            println!("  {line}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// diesel CLI
// ---------------------------------------------------------------------------

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?;
    if !root.join(PG_CONFIG).is_file() {
        return Err(format!(
            "{} has no {PG_CONFIG}; is this the keel workspace?",
            root.display()
        ));
    }
    Ok(root.to_path_buf())
}

struct Diesel {
    root: PathBuf,
    /// KEEL_PG_URL, whose passwords are hidden in every message.
    server: Option<PostgresUrl>,
}

impl Diesel {
    /// Fails with installation instructions when `diesel` is not on PATH.
    fn locate(root: &Path) -> Result<Self> {
        match Command::new("diesel").arg("--version").output() {
            Ok(output) if output.status.success() => Ok(Self {
                root: root.to_path_buf(),
                server: PostgresUrl::parse(&pg_server_url()).ok(),
            }),
            Ok(output) => Err(format!(
                "`diesel --version` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "the diesel CLI (`diesel`) is not on PATH; install it with:\n    {INSTALL_HINT}"
            )),
            Err(e) => Err(format!("cannot run `diesel`: {e}")),
        }
    }

    /// Runs diesel from the workspace root with the given arguments and returns
    /// its stdout. Environment overrides that would bypass our explicit
    /// arguments (config file, migration dir, database URL) are removed.
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new("diesel");
        command
            .args(args)
            .current_dir(&self.root)
            .env_remove("DATABASE_URL")
            .env_remove("DIESEL_CONFIG_FILE")
            .env_remove("MIGRATION_DIRECTORY")
            .env("NO_COLOR", "1");
        if env::var_os("DIESEL_LOG").is_none() {
            // diesel logs a failing migration's whole SQL at ERROR level; its
            // "Failed to run migrations: ..." message already names the error.
            command.env("DIESEL_LOG", "off");
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run `diesel`: {e}"))?;
        let stdout = String::from_utf8(output.stdout)
            .map_err(|e| format!("`diesel` printed invalid UTF-8: {e}"))?;
        if output.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let mut message = format!("`diesel {}` failed ({})", args.join(" "), output.status);
            for line in stdout.lines().chain(stderr.lines()) {
                let _ = write!(message, "\n    {line}");
            }
            Err(self.redact(&message))
        }
    }

    fn redact(&self, text: &str) -> String {
        match &self.server {
            Some(server) => server.redact(text),
            None => text.to_owned(),
        }
    }
}

/// Applies migrations/postgres to a scratch database and returns
/// `diesel print-schema` for it, run with the repository's diesel.toml.
fn generate_pg_schema(root: &Path, diesel: &Diesel) -> Result<String> {
    let name = unique_name();
    let url = pg_database_url(&pg_server_url(), &name)?;
    let config = TempFile::create(
        env::temp_dir().join(format!("{name}.postgres.toml")),
        &migrations_only_config(&root.join(PG_MIGRATIONS))?,
    )?;
    // Pre-flight: dropping a database that does not exist yet only connects to
    // the server (its `postgres` database), so an unreachable server fails
    // here, before there is a scratch database to clean up.
    diesel
        .run(&["database", "drop", "--database-url", &url])
        .map_err(|e| {
            format!("cannot reach PostgreSQL (set KEEL_PG_URL, default {DEFAULT_PG_URL}): {e}")
        })?;
    let mut scratch = ScratchPgDatabase {
        diesel,
        name: name.clone(),
        url: url.clone(),
        dropped: false,
    };

    // `database setup` also regenerates print_schema.file when the config sets
    // one: the temporary config sets only the migrations directory.
    // `--no-default-migration` stops it from adding 00000000000000_diesel_initial_setup
    // to the migrations directory.
    diesel
        .run(&[
            "--config-file",
            path_str(config.path())?,
            "database",
            "setup",
            "--no-default-migration",
            "--database-url",
            &url,
        ])
        .map_err(|e| {
            format!("could not create scratch database {name} and apply {PG_MIGRATIONS}: {e}")
        })?;
    let schema = diesel.run(&[
        "--config-file",
        path_str(&root.join(PG_CONFIG))?,
        "print-schema",
        "--database-url",
        &url,
    ])?;
    scratch.drop_now()?;
    Ok(schema)
}

/// Applies migrations/sqlite to a scratch file database and returns
/// `diesel print-schema` for it, run with the repository's diesel.sqlite.toml.
fn generate_sqlite_schema(root: &Path, diesel: &Diesel) -> Result<String> {
    let name = unique_name();
    let config = TempFile::create(
        env::temp_dir().join(format!("{name}.sqlite.toml")),
        &migrations_only_config(&root.join(SQLITE_MIGRATIONS))?,
    )?;
    let database = ScratchSqliteDatabase(env::temp_dir().join(format!("{name}.sqlite3")));
    let database_url = path_str(&database.0)?;
    diesel
        .run(&[
            "--config-file",
            path_str(config.path())?,
            "database",
            "setup",
            "--no-default-migration",
            "--database-url",
            database_url,
        ])
        .map_err(|e| format!("could not apply {SQLITE_MIGRATIONS} to {database_url}: {e}"))?;
    let print_config = root.join(SQLITE_CONFIG);
    let print_config = if print_config.is_file() {
        print_config
    } else {
        config.path().to_path_buf()
    };
    diesel.run(&[
        "--config-file",
        path_str(&print_config)?,
        "print-schema",
        "--database-url",
        database_url,
    ])
}

/// A diesel.toml that names only an absolute migrations directory.
fn migrations_only_config(migrations: &Path) -> Result<String> {
    if !migrations.is_dir() {
        return Err(format!("{} is not a directory", migrations.display()));
    }
    Ok(format!(
        "# Written by `cargo xtask`: no print_schema.file, so nothing is regenerated.\n\
         [migrations_directory]\n\
         dir = {}\n",
        toml_string(path_str(migrations)?)
    ))
}

fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| format!("path is not valid UTF-8: {}", path.display()))
}

fn pg_server_url() -> String {
    env::var("KEEL_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{SCRATCH_PREFIX}_{}_{nanos}", std::process::id())
}

/// The URL of database `database` on the server `server` names. `server` may
/// carry a database path already (it is replaced) and a query string (kept).
/// Errors never quote `server`: it may hold a password.
fn pg_database_url(server: &str, database: &str) -> Result<String> {
    let server = match DatabaseUrl::parse(server) {
        Ok(DatabaseUrl::Postgres(server)) => server,
        Ok(DatabaseUrl::Sqlite(_)) => {
            return Err(format!(
                "KEEL_PG_URL must be a postgres:// URL like {DEFAULT_PG_URL}"
            ));
        }
        Err(e) => return Err(format!("KEEL_PG_URL: {e}")),
    };
    if server.is_conninfo() {
        return Err(format!(
            "KEEL_PG_URL must be a postgres:// URL like {DEFAULT_PG_URL} (the diesel CLI takes \
             no key=value string)"
        ));
    }
    if !server.sets("host") {
        return Err(format!("KEEL_PG_URL names no host: `{server}`"));
    }
    server
        .with_dbname(database)
        .map(|url| url.as_connection_str().to_owned())
        .map_err(|e| format!("KEEL_PG_URL: {e}"))
}

/// A scratch PostgreSQL database, dropped with `diesel database drop` (a
/// hidden subcommand of diesel CLI 2.x) when done or when dropped on failure.
struct ScratchPgDatabase<'a> {
    diesel: &'a Diesel,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchPgDatabase<'_> {
    fn drop_now(&mut self) -> Result<()> {
        self.dropped = true;
        self.diesel
            .run(&["database", "drop", "--database-url", &self.url])
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "could not drop scratch database {}; drop it by hand (DROP DATABASE {}): {e}",
                    self.name, self.name
                )
            })
    }
}

impl Drop for ScratchPgDatabase<'_> {
    fn drop(&mut self) {
        if !self.dropped
            && let Err(e) = self.drop_now()
        {
            eprintln!("warning: {e}");
        }
    }
}

/// A SQLite database file in the temp directory, removed with its side files.
struct ScratchSqliteDatabase(PathBuf);

impl Drop for ScratchSqliteDatabase {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            remove_if_present(Path::new(&path));
        }
    }
}

/// A file that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn create(path: PathBuf, contents: &str) -> Result<Self> {
        fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        remove_if_present(&self.0);
    }
}

fn remove_if_present(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        eprintln!("warning: cannot remove {}: {e}", path.display());
    }
}

// ---------------------------------------------------------------------------
// Parsing diesel's schema.rs
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    /// The SQL type without an outer `Nullable<...>`, as written.
    sql_type: String,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    primary_key: Vec<String>,
    columns: Vec<Column>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Schema {
    tables: BTreeMap<String, Table>,
    /// `child -> parent (fk)`, whitespace-normalised.
    joinables: BTreeSet<String>,
}

enum ParseState {
    Outside,
    /// Inside `table! {`, before the `name (pk) {` header.
    TableHeader,
    /// Inside a table's column list.
    Columns {
        name: String,
        table: Table,
    },
    /// After a table's column list, before the macro's closing brace.
    TableEnd,
}

/// Parses the output of `diesel print-schema` into tables and joins.
/// Attributes (`#[max_length = N]`, `#[sql_name = ...]`), doc comments and
/// `use` lines are ignored.
fn parse_schema(source: &str) -> Result<Schema> {
    let mut schema = Schema::default();
    let mut state = ParseState::Outside;
    for (index, raw_line) in source.lines().enumerate() {
        let line_no = index + 1;
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with("//") || line.starts_with("#[") {
            continue;
        }
        state = match state {
            ParseState::Outside => {
                if is_macro_start(line, "table!") {
                    if !line.ends_with('{') {
                        return Err(format!("line {line_no}: expected `table! {{`"));
                    }
                    ParseState::TableHeader
                } else if is_macro_start(line, "joinable!") {
                    schema.joinables.insert(parse_joinable(line, line_no)?);
                    ParseState::Outside
                } else {
                    ParseState::Outside
                }
            }
            ParseState::TableHeader => {
                if line.starts_with("use ") {
                    ParseState::TableHeader
                } else {
                    let (name, primary_key) = parse_table_header(line, line_no)?;
                    if schema.tables.contains_key(&name) {
                        return Err(format!("line {line_no}: table `{name}` defined twice"));
                    }
                    ParseState::Columns {
                        name,
                        table: Table {
                            primary_key,
                            columns: Vec::new(),
                        },
                    }
                }
            }
            ParseState::Columns { name, mut table } => {
                if line == "}" {
                    schema.tables.insert(name, table);
                    ParseState::TableEnd
                } else {
                    let column = parse_column(line, line_no)?;
                    if table.columns.iter().any(|c| c.name == column.name) {
                        return Err(format!(
                            "line {line_no}: column `{name}.{}` defined twice",
                            column.name
                        ));
                    }
                    table.columns.push(column);
                    ParseState::Columns { name, table }
                }
            }
            ParseState::TableEnd => {
                if line == "}" {
                    ParseState::Outside
                } else {
                    return Err(format!(
                        "line {line_no}: expected `}}` closing table!, found `{line}`"
                    ));
                }
            }
        };
    }
    match state {
        ParseState::Outside => Ok(schema),
        _ => Err("unexpected end of input inside table!".to_owned()),
    }
}

/// `diesel::table! {`, `table! {`, `diesel::joinable!(...)`, ...
fn is_macro_start(line: &str, macro_name: &str) -> bool {
    let line = line.strip_prefix("diesel::").unwrap_or(line);
    line.starts_with(macro_name)
}

/// `comments (id) {` gives ("comments", ["id"]).
fn parse_table_header(line: &str, line_no: usize) -> Result<(String, Vec<String>)> {
    let malformed =
        || format!("line {line_no}: expected `table_name (primary key) {{`, found `{line}`");
    let body = line.strip_suffix('{').ok_or_else(malformed)?.trim_end();
    let (name, rest) = body.split_once('(').ok_or_else(malformed)?;
    let keys = rest.strip_suffix(')').ok_or_else(malformed)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(malformed());
    }
    let primary_key = keys
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((name.to_owned(), primary_key))
}

/// `first_name -> Nullable<Varchar>,`
fn parse_column(line: &str, line_no: usize) -> Result<Column> {
    let malformed = || format!("line {line_no}: expected `column -> Type,`, found `{line}`");
    let (name, sql_type) = line.split_once("->").ok_or_else(malformed)?;
    let name = name.trim();
    let sql_type = sql_type.trim().trim_end_matches(',').trim();
    if name.is_empty() || sql_type.is_empty() {
        return Err(malformed());
    }
    let (sql_type, nullable) = match sql_type
        .strip_prefix("Nullable<")
        .and_then(|inner| inner.strip_suffix('>'))
    {
        Some(inner) => (inner.trim(), true),
        None => (sql_type, false),
    };
    Ok(Column {
        name: name.to_owned(),
        sql_type: sql_type.to_owned(),
        nullable,
    })
}

/// `diesel::joinable!(comments -> posts (post_id));` gives `comments -> posts (post_id)`.
fn parse_joinable(line: &str, line_no: usize) -> Result<String> {
    let malformed = || format!("line {line_no}: expected `joinable!(child -> parent (fk));`");
    let (_, args) = line.split_once('(').ok_or_else(malformed)?;
    let args = args.trim_end().trim_end_matches(';').trim_end();
    let args = args.strip_suffix(')').ok_or_else(malformed)?;
    Ok(args.split_whitespace().collect::<Vec<_>>().join(" "))
}

// ---------------------------------------------------------------------------
// Comparing PostgreSQL's schema.rs with SQLite's print-schema
// ---------------------------------------------------------------------------

/// The SQL type with Diesel's aliases resolved (`Int4` and `Integer` are the
/// same type), recursively inside generic types such as `Array<...>`.
fn canonical_type(sql_type: &str) -> String {
    let sql_type = sql_type.trim();
    if let Some((head, rest)) = sql_type.split_once('<')
        && let Some(inner) = rest.strip_suffix('>')
    {
        return format!(
            "{}<{}>",
            canonical_type_name(head.trim()),
            canonical_type(inner)
        );
    }
    canonical_type_name(sql_type).to_owned()
}

fn canonical_type_name(name: &str) -> &str {
    let name = name.strip_prefix("diesel::sql_types::").unwrap_or(name);
    match name {
        "Int4" => "Integer",
        "Int2" => "SmallInt",
        "Int8" => "BigInt",
        "Varchar" | "Bpchar" => "Text",
        "Float4" => "Float",
        "Float8" => "Double",
        other => other,
    }
}

/// `Varchar (= Text) NOT NULL`, `Nullable<Text>`.
fn describe_column(column: &Column) -> String {
    let canonical = canonical_type(&column.sql_type);
    if column.nullable {
        if canonical == column.sql_type {
            format!("Nullable<{}>", column.sql_type)
        } else {
            format!("Nullable<{}> (= Nullable<{canonical}>)", column.sql_type)
        }
    } else if canonical == column.sql_type {
        format!("{} NOT NULL", column.sql_type)
    } else {
        format!("{} (= {canonical}) NOT NULL", column.sql_type)
    }
}

fn column_list(names: &[&str]) -> String {
    format!("({})", names.join(", "))
}

/// Every difference between the schema of record (PostgreSQL's schema.rs) and
/// SQLite's, one human-readable line each; empty when they match.
fn compare_schemas(pg: &Schema, sqlite: &Schema) -> Vec<String> {
    let mut differences = Vec::new();
    for (name, pg_table) in &pg.tables {
        match sqlite.tables.get(name) {
            None => differences.push(format!(
                "table {name}: in {PG_LABEL}, missing from {SQLITE_LABEL}"
            )),
            Some(sqlite_table) => compare_tables(name, pg_table, sqlite_table, &mut differences),
        }
    }
    for name in sqlite.tables.keys() {
        if !pg.tables.contains_key(name) {
            differences.push(format!(
                "table {name}: in {SQLITE_LABEL}, missing from {PG_LABEL}"
            ));
        }
    }
    for joinable in pg.joinables.difference(&sqlite.joinables) {
        differences.push(format!(
            "joinable!({joinable}): in {PG_LABEL}, missing from {SQLITE_LABEL}"
        ));
    }
    for joinable in sqlite.joinables.difference(&pg.joinables) {
        differences.push(format!(
            "joinable!({joinable}): in {SQLITE_LABEL}, missing from {PG_LABEL}"
        ));
    }
    differences
}

fn compare_tables(name: &str, pg: &Table, sqlite: &Table, differences: &mut Vec<String>) {
    if pg.primary_key != sqlite.primary_key {
        differences.push(format!(
            "{name}: primary key: {PG_LABEL} says ({}), {SQLITE_LABEL} give ({})",
            pg.primary_key.join(", "),
            sqlite.primary_key.join(", ")
        ));
    }
    for pg_column in &pg.columns {
        match sqlite.columns.iter().find(|c| c.name == pg_column.name) {
            None => differences.push(format!(
                "{name}.{}: in {PG_LABEL} ({}), missing from {SQLITE_LABEL}",
                pg_column.name,
                describe_column(pg_column)
            )),
            Some(sqlite_column) => {
                let same_type =
                    canonical_type(&pg_column.sql_type) == canonical_type(&sqlite_column.sql_type);
                if !same_type || pg_column.nullable != sqlite_column.nullable {
                    differences.push(format!(
                        "{name}.{}: {PG_LABEL} says {}, {SQLITE_LABEL} give {}",
                        pg_column.name,
                        describe_column(pg_column),
                        describe_column(sqlite_column)
                    ));
                }
            }
        }
    }
    for sqlite_column in &sqlite.columns {
        if !pg.columns.iter().any(|c| c.name == sqlite_column.name) {
            differences.push(format!(
                "{name}.{}: in {SQLITE_LABEL} ({}), missing from {PG_LABEL}",
                sqlite_column.name,
                describe_column(sqlite_column)
            ));
        }
    }
    // Column order matters (table! column order is the tuple order of
    // `Queryable` structs): compare the order of the columns both have.
    let pg_order: Vec<&str> = pg
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| sqlite.columns.iter().any(|c| c.name == *n))
        .collect();
    let sqlite_order: Vec<&str> = sqlite
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| pg.columns.iter().any(|c| c.name == *n))
        .collect();
    if pg_order != sqlite_order {
        differences.push(format!(
            "{name}: column order: {PG_LABEL} has {}, {SQLITE_LABEL} give {}",
            column_list(&pg_order),
            column_list(&sqlite_order)
        ));
    }
}

// ---------------------------------------------------------------------------
// Line diff for PostgreSQL drift
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiffLine<'a> {
    /// Only in the checked-in file, with its 1-based line number there.
    Removed(usize, &'a str),
    /// Only in the generated output, with its 1-based line number there.
    Added(usize, &'a str),
}

/// The lines that differ between `old` and `new` (a longest-common-subsequence
/// diff of the part between the common prefix and suffix).
fn diff_lines<'a>(old: &'a str, new: &'a str) -> Vec<DiffLine<'a>> {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let prefix = old_lines
        .iter()
        .zip(&new_lines)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = old_lines[prefix..]
        .iter()
        .rev()
        .zip(new_lines[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let a = &old_lines[prefix..old_lines.len() - suffix];
    let b = &new_lines[prefix..new_lines.len() - suffix];

    let mut out = Vec::new();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        // Too big for the quadratic table: report the whole middle section.
        out.extend(
            a.iter()
                .enumerate()
                .map(|(i, l)| DiffLine::Removed(prefix + i + 1, l)),
        );
        out.extend(
            b.iter()
                .enumerate()
                .map(|(j, l)| DiffLine::Added(prefix + j + 1, l)),
        );
        return out;
    }
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(DiffLine::Removed(prefix + i + 1, a[i]));
            i += 1;
        } else {
            out.push(DiffLine::Added(prefix + j + 1, b[j]));
            j += 1;
        }
    }
    out
}

fn generated_label() -> String {
    format!("diesel print-schema ({PG_MIGRATIONS} applied to a fresh database)")
}

/// Printable diff: `- 17 | text` for lines only in `old`, `+ 17 | text` for
/// lines only in `new` (numbered in their own file), capped at MAX_DIFF_LINES.
fn render_diff(old: &str, new: &str, (old_label, new_label): &(String, String)) -> Vec<String> {
    let diff = diff_lines(old, new);
    let mut out = vec![format!("--- {old_label}"), format!("+++ {new_label}")];
    if diff.is_empty() {
        out.push(
            "(the lines are equal; the files differ in line endings or the final newline)"
                .to_owned(),
        );
        return out;
    }
    for line in diff.iter().take(MAX_DIFF_LINES) {
        out.push(match line {
            DiffLine::Removed(n, text) => format!("-{n:>4} | {text}"),
            DiffLine::Added(n, text) => format!("+{n:>4} | {text}"),
        });
    }
    if diff.len() > MAX_DIFF_LINES {
        out.push(format!(
            "... and {} more changed lines",
            diff.len() - MAX_DIFF_LINES
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const PG: &str = r#"// @generated automatically by Diesel CLI.

diesel::table! {
    posts (id) {
        id -> Int4,
        #[max_length = 200]
        title -> Varchar,
        content -> Text,
        author_id -> Int4,
        score -> Nullable<Float8>,
    }
}

diesel::table! {
    users (id) {
        id -> Int4,
        #[max_length = 50]
        first_name -> Nullable<Varchar>,
        is_active -> Bool,
    }
}

diesel::joinable!(posts -> users (author_id));

diesel::allow_tables_to_appear_in_same_query!(posts, users,);
"#;

    const SQLITE: &str = r#"// @generated automatically by Diesel CLI.

diesel::table! {
    posts (id) {
        id -> Integer,
        title -> Text,
        content -> Text,
        author_id -> Integer,
        score -> Nullable<Double>,
    }
}

diesel::table! {
    users (id) {
        id -> Integer,
        first_name -> Nullable<Text>,
        is_active -> Bool,
    }
}

diesel::joinable!(posts -> users (author_id));

diesel::allow_tables_to_appear_in_same_query!(posts, users,);
"#;

    fn parse(source: &str) -> Schema {
        parse_schema(source).expect("test schema parses")
    }

    fn differences(sqlite: &str) -> Vec<String> {
        compare_schemas(&parse(PG), &parse(sqlite))
    }

    #[test]
    fn parses_tables_columns_keys_and_joins() {
        let schema = parse(PG);
        assert_eq!(schema.tables.keys().collect::<Vec<_>>(), ["posts", "users"]);
        let users = &schema.tables["users"];
        assert_eq!(users.primary_key, ["id"]);
        assert_eq!(
            users.columns,
            [
                Column {
                    name: "id".into(),
                    sql_type: "Int4".into(),
                    nullable: false
                },
                Column {
                    name: "first_name".into(),
                    sql_type: "Varchar".into(),
                    nullable: true
                },
                Column {
                    name: "is_active".into(),
                    sql_type: "Bool".into(),
                    nullable: false
                },
            ]
        );
        assert_eq!(
            schema.joinables.iter().collect::<Vec<_>>(),
            ["posts -> users (author_id)"]
        );
    }

    #[test]
    fn parses_composite_keys_use_lines_and_doc_comments() {
        let source = "table! {\n    use diesel::sql_types::*;\n    /// Tags.\n    \
                      post_tags (post_id, tag) {\n        /// The post.\n        \
                      post_id -> Int8,\n        tag -> Array<Nullable<Int2>>,\n    }\n}\n";
        let schema = parse(source);
        let table = &schema.tables["post_tags"];
        assert_eq!(table.primary_key, ["post_id", "tag"]);
        assert_eq!(table.columns[1].sql_type, "Array<Nullable<Int2>>");
        assert!(!table.columns[1].nullable);
        assert_eq!(
            canonical_type("Array<Nullable<Int2>>"),
            "Array<Nullable<SmallInt>>"
        );
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(parse_schema("diesel::table! {\n    users (id) {\n        id Int4,\n").is_err());
        assert!(parse_schema("diesel::table! {\n    users (id) {\n        id -> Int4,\n").is_err());
        assert!(parse_schema("diesel::table! {\n    users {\n").is_err());
    }

    #[test]
    fn alias_equal_schemas_match() {
        assert_eq!(differences(SQLITE), Vec::<String>::new());
    }

    #[test]
    fn aliases_resolve() {
        for (alias, canonical) in [
            ("Int4", "Integer"),
            ("Int2", "SmallInt"),
            ("Int8", "BigInt"),
            ("Varchar", "Text"),
            ("Bpchar", "Text"),
            ("Float4", "Float"),
            ("Float8", "Double"),
            ("Timestamp", "Timestamp"),
            ("Timestamptz", "Timestamptz"),
            ("diesel::sql_types::Int4", "Integer"),
        ] {
            assert_eq!(canonical_type(alias), canonical, "{alias}");
        }
    }

    #[test]
    fn nullability_difference_fails() {
        let sqlite = SQLITE.replace("title -> Text,", "title -> Nullable<Text>,");
        assert_eq!(
            differences(&sqlite),
            [
                "posts.title: PostgreSQL schema.rs says Varchar (= Text) NOT NULL, \
              SQLite migrations give Nullable<Text>"
            ]
        );
    }

    #[test]
    fn missing_column_fails() {
        let sqlite = SQLITE.replace("        content -> Text,\n", "");
        assert_eq!(
            differences(&sqlite),
            [
                "posts.content: in PostgreSQL schema.rs (Text NOT NULL), missing from SQLite migrations"
            ]
        );
    }

    #[test]
    fn extra_column_fails() {
        let sqlite = SQLITE.replace(
            "is_active -> Bool,",
            "is_active -> Bool,\n        nickname -> Nullable<Text>,",
        );
        assert_eq!(
            differences(&sqlite),
            [
                "users.nickname: in SQLite migrations (Nullable<Text>), missing from PostgreSQL schema.rs"
            ]
        );
    }

    #[test]
    fn type_difference_fails() {
        let sqlite = SQLITE.replace("is_active -> Bool,", "is_active -> Integer,");
        assert_eq!(
            differences(&sqlite),
            ["users.is_active: PostgreSQL schema.rs says Bool NOT NULL, \
              SQLite migrations give Integer NOT NULL"]
        );
        // Int8 is BigInt, not Integer.
        let sqlite = SQLITE.replace("author_id -> Integer,", "author_id -> BigInt,");
        assert_eq!(
            differences(&sqlite),
            [
                "posts.author_id: PostgreSQL schema.rs says Int4 (= Integer) NOT NULL, \
              SQLite migrations give BigInt NOT NULL"
            ]
        );
    }

    #[test]
    fn column_order_difference_fails() {
        let sqlite = SQLITE.replace(
            "        title -> Text,\n        content -> Text,\n",
            "        content -> Text,\n        title -> Text,\n",
        );
        assert_eq!(
            differences(&sqlite),
            [
                "posts: column order: PostgreSQL schema.rs has (id, title, content, author_id, score), \
              SQLite migrations give (id, content, title, author_id, score)"
            ]
        );
    }

    #[test]
    fn primary_key_table_and_joinable_differences_fail() {
        let sqlite = SQLITE
            .replace("users (id) {", "users (id, first_name) {")
            .replace("diesel::joinable!(posts -> users (author_id));", "");
        assert_eq!(
            differences(&sqlite),
            [
                "users: primary key: PostgreSQL schema.rs says (id), SQLite migrations give (id, first_name)",
                "joinable!(posts -> users (author_id)): in PostgreSQL schema.rs, missing from SQLite migrations",
            ]
        );
        let sqlite = SQLITE.replace(
            "diesel::table! {\n    users (id)",
            "diesel::table! {\n    people (id)",
        );
        assert_eq!(
            differences(&sqlite),
            [
                "table users: in PostgreSQL schema.rs, missing from SQLite migrations",
                "table people: in SQLite migrations, missing from PostgreSQL schema.rs",
            ]
        );
    }

    #[test]
    fn pg_url_replaces_database_and_keeps_query() {
        let url = |server| pg_database_url(server, "scratch").expect("valid url");
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432"),
            "postgres://postgres@127.0.0.1:5432/scratch"
        );
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/"),
            "postgres://postgres@127.0.0.1:5432/scratch"
        );
        assert_eq!(
            url("postgres://u:p@db:5432/keel"),
            "postgres://u:p@db:5432/scratch"
        );
        assert_eq!(
            url("postgresql://u@db/keel?sslmode=disable"),
            "postgresql://u@db/scratch?sslmode=disable"
        );
        assert!(pg_database_url("mysql://u@db", "scratch").is_err());
        assert!(pg_database_url("127.0.0.1:5432", "scratch").is_err());
    }

    #[test]
    fn redacts_passwords() {
        for (server, password) in [
            ("postgres://u:s3cret@db:5432/x", "s3cret"),
            ("postgres://u:s3%2Fcret@db:5432/x", "s3/cret"),
            ("postgres://u@db:5432/x?password=s3cret", "s3cret"),
        ] {
            let diesel = Diesel {
                root: PathBuf::new(),
                server: PostgresUrl::parse(server).ok(),
            };
            let url = pg_database_url(server, "postgres").expect("valid url");
            let message = format!("could not connect via `{url}`: {password}");
            let redacted = diesel.redact(&message);
            assert!(!redacted.contains("s3"), "{redacted}");
        }
        for server in [
            "postgres://u:s3/cret@db:5432/x",
            "postgres://u:s3cret%zz@db:5432/x",
            "postgres://@/x?password=s3cret",
            "host=db password=s3cret",
        ] {
            let error = pg_database_url(server, "scratch").expect_err(server);
            assert!(!error.contains("s3"), "{error}");
        }
    }

    #[test]
    fn config_points_at_absolute_migrations_without_print_schema() {
        let dir = env::temp_dir();
        let config = migrations_only_config(&dir).expect("temp dir exists");
        assert!(config.contains("[migrations_directory]"));
        assert!(!config.contains("[print_schema]"));
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }

    #[test]
    fn diff_lists_changed_lines_with_numbers() {
        let old = "a\nb\nc\nd\n";
        let new = "a\nB\nc\nd\ne\n";
        assert_eq!(
            diff_lines(old, new),
            [
                DiffLine::Removed(2, "b"),
                DiffLine::Added(2, "B"),
                DiffLine::Added(5, "e"),
            ]
        );
        let labels = ("old".to_owned(), "new".to_owned());
        let rendered = render_diff(old, new, &labels);
        assert_eq!(&rendered[..2], ["--- old", "+++ new"]);
        assert_eq!(&rendered[2..], ["-   2 | b", "+   2 | B", "+   5 | e"]);
        assert!(diff_lines(old, old).is_empty());
        assert!(
            render_diff("a\n", "a", &labels)
                .last()
                .is_some_and(|l| l.contains("final newline"))
        );
    }
}
