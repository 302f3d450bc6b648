//! No password anywhere: a property test runs the real `keel` binary's
//! `migrate run`, `doctor`, `explain`, `seed` and `serve` with generated
//! passwords (the whole printable range, `/ ? # @ % :` and Unicode
//! included) in every shape a `DATABASE_URL` can carry one (URL userinfo
//! percent-encoded or raw, a `?password=` parameter, a key=value string
//! quoted or not, several hosts), against a closed port and against a live
//! test database, and checks that nothing it prints holds the password, as
//! given or percent-encoded, and that it leaves no file behind.
//!
//! The live cases need the test server to accept any password (trust
//! authentication, as `postgres://postgres@127.0.0.1:5432` has in CI);
//! without a server they skip loudly, and with `CI` set they fail.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_repo::DatabaseUrl;
use keel_tests::PgTestDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Where a case's URL points.
#[derive(Debug, Clone)]
struct Target {
    /// `host` or `host:port` pairs, for URLs: one or several.
    hosts: Vec<(String, u16)>,
    user: String,
    dbname: String,
    /// Whether a server answers there (the success paths run).
    live: bool,
}

impl Target {
    /// Nothing listens on port 1: the connection is refused at once.
    fn closed() -> Self {
        Self {
            hosts: vec![("127.0.0.1".into(), 1), ("[::1]".into(), 1)],
            user: "keel".into(),
            dbname: "keel".into(),
            live: false,
        }
    }

    /// A closed port first, then the live server: drivers move on to the
    /// second host.
    fn live(database: &PgTestDatabase) -> Self {
        let server = PgTestDatabase::server_url();
        let rest = server.split_once("://").map_or(server.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let (user, host_port) = authority
            .rsplit_once('@')
            .unwrap_or(("postgres", authority));
        let user = user.split(':').next().unwrap_or("postgres");
        let (host, port) = host_port
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse().ok()?)))
            .unwrap_or((host_port, 5432));
        let url = database.url();
        let dbname = url.rsplit('/').next().unwrap_or_default();
        Self {
            hosts: vec![("127.0.0.1".into(), 1), (host.to_owned(), port)],
            user: user.to_owned(),
            dbname: dbname.to_owned(),
            live: true,
        }
    }

    /// The last host: the one that answers when any does.
    fn host(&self) -> &(String, u16) {
        self.hosts.last().expect("a host")
    }
}

/// Where the password goes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `postgres://user:ENCODED@host/db`.
    UserinfoEncoded,
    /// `postgres://user:RAW@host/db`: refused when the password holds a
    /// character drivers would read differently.
    UserinfoRaw,
    /// `postgres://user@host/db?password=ENCODED`.
    QueryEncoded,
    /// `postgres://user@host/db?password=RAW`.
    QueryRaw,
    /// `host=… password='QUOTED' …`.
    ConninfoQuoted,
    /// `host=… password=RAW …`, backslash-escaped where it must be.
    ConninfoUnquoted,
    /// `postgres://user:ENCODED@h1:1,h2:port/db?target_session_attrs=any`.
    MultiHost,
}

const SHAPES: [Shape; 7] = [
    Shape::UserinfoEncoded,
    Shape::UserinfoRaw,
    Shape::QueryEncoded,
    Shape::QueryRaw,
    Shape::ConninfoQuoted,
    Shape::ConninfoUnquoted,
    Shape::MultiHost,
];

/// Every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `text` with `\` before each `\`, `'` and whitespace character.
fn backslash_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == '\\' || c == '\'' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `DATABASE_URL` for `password` in `shape`, and how the password is
/// written in it.
fn database_url(shape: Shape, target: &Target, password: &str) -> (String, String) {
    let (host, port) = target.host();
    let (user, db) = (&target.user, &target.dbname);
    let encoded = percent_encode(password);
    match shape {
        Shape::UserinfoEncoded => (
            format!("postgres://{user}:{encoded}@{host}:{port}/{db}"),
            encoded,
        ),
        Shape::UserinfoRaw => (
            format!("postgres://{user}:{password}@{host}:{port}/{db}"),
            password.to_owned(),
        ),
        Shape::QueryEncoded => (
            format!("postgresql://{user}@{host}:{port}/{db}?sslmode=disable&password={encoded}"),
            encoded,
        ),
        Shape::QueryRaw => (
            format!("postgres://{user}@{host}:{port}/{db}?password={password}"),
            password.to_owned(),
        ),
        Shape::ConninfoQuoted => {
            let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
            (
                format!(
                    "host={} port={port} user={user} password='{quoted}' dbname={db}",
                    host.trim_matches(['[', ']'])
                ),
                quoted,
            )
        }
        Shape::ConninfoUnquoted => {
            let written = backslash_escape(password);
            (
                format!(
                    "host = {} port = {port} password = {written} user = {user} dbname = {db}",
                    host.trim_matches(['[', ']'])
                ),
                written,
            )
        }
        Shape::MultiHost => {
            let hosts: Vec<String> = target
                .hosts
                .iter()
                .map(|(host, port)| format!("{host}:{port}"))
                .collect();
            (
                format!(
                    "postgres://{user}:{encoded}@{}/{db}?target_session_attrs=any",
                    hosts.join(",")
                ),
                encoded,
            )
        }
    }
}

/// Passwords of 8 to 20 characters over printable ASCII, the characters
/// URLs and key=value strings give a meaning to, and Unicode (letters,
/// CJK, emoji, and, rarer, non-ASCII spaces: a key=value string must quote
/// those).
fn password() -> impl Strategy<Value = String> {
    let ascii = proptest::char::range(' ', '~');
    let special = proptest::sample::select(vec![
        '/', '?', '#', '@', '%', ':', '&', '=', '+', '\'', '"', '\\', ' ', '[', ']', ',', ';',
    ]);
    let unicode = prop_oneof![
        10 => proptest::char::range('\u{a1}', '\u{24f}'),
        10 => proptest::char::range('\u{391}', '\u{3c9}'),
        10 => proptest::char::range('\u{4e00}', '\u{4fff}'),
        10 => proptest::char::range('\u{1f600}', '\u{1f64f}'),
        1 => Just('\u{a0}'),
        1 => Just('\u{2003}'),
    ];
    proptest::collection::vec(prop_oneof![3 => ascii, 2 => special, 2 => unicode], 8..=20)
        .prop_map(|chars| chars.into_iter().collect())
}

fn keel(dir: &Path, url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "debug")
        .env("KEEL_CONNECT_TIMEOUT_MS", "3000")
        .stdin(Stdio::null());
    command
}

/// Everything `output` printed.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `keel serve --bind 127.0.0.1:0` until it logs that it listens (then
/// SIGTERM) or exits; its output, and whether it listened.
fn serve(dir: &Path, url: &str) -> (String, bool) {
    let log_dir = tempfile::tempdir().expect("temp dir");
    let out_path = log_dir.path().join("stdout");
    let err_path = log_dir.path().join("stderr");
    let mut child = keel(dir, url)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start keel serve");
    let read = || {
        let out = std::fs::read(&out_path).unwrap_or_default();
        let err = std::fs::read(&err_path).unwrap_or_default();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    };
    let started = Instant::now();
    let mut listened = false;
    while exited(&mut child).is_none() && started.elapsed() < Duration::from_secs(30) {
        if read().contains("listening on http://") {
            listened = true;
            let term = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(term.success());
            let stopping = Instant::now();
            while exited(&mut child).is_none() {
                assert!(
                    stopping.elapsed() < Duration::from_secs(20),
                    "keel serve still running 20 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if exited(&mut child).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("keel serve neither listened nor exited in 30 s: {}", read());
    }
    (read(), listened)
}

fn exited(child: &mut Child) -> Option<std::process::ExitStatus> {
    child.try_wait().expect("wait for keel")
}

/// Runs every command on `url` in an empty directory; fails if any output
/// holds `secrets`, or a file is left behind. On a live target, a URL that
/// parses must migrate and serve.
fn check(shape: Shape, target: &Target, password: &str) -> Result<(), TestCaseError> {
    let (url, written) = database_url(shape, target, password);
    let secrets = [password.to_owned(), percent_encode(password), written];
    let dir = tempfile::tempdir().expect("temp dir");
    let parses = DatabaseUrl::parse(&url).is_ok();
    let mut outputs = Vec::new();
    for args in [
        &["migrate", "run"][..],
        &["doctor"],
        &["explain"],
        &["seed", "--users", "2"],
    ] {
        let output = keel(dir.path(), &url)
            .args(args)
            .output()
            .expect("run keel");
        if target.live && parses && args == ["migrate", "run"] {
            prop_assert!(
                output.status.success(),
                "{shape:?}: keel migrate run failed on a live database: {}",
                printed(&output)
            );
        }
        outputs.push((args.join(" "), printed(&output)));
    }
    let (served, listened) = serve(dir.path(), &url);
    if target.live && parses {
        prop_assert!(listened, "{shape:?}: keel serve did not listen: {served}");
    }
    outputs.push(("serve".to_owned(), served));
    for (command, output) in &outputs {
        for secret in &secrets {
            prop_assert!(
                !output.contains(secret.as_str()),
                "{shape:?}: `keel {command}` printed the password {secret:?}:\n{output}"
            );
        }
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the working directory")
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .expect("list the working directory");
    prop_assert!(left.is_empty(), "{shape:?}: files left behind: {left:?}");
    Ok(())
}

fn run(target: &Target, cases: u32) {
    for shape in SHAPES {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&password(), |password| check(shape, target, &password)) {
            panic!("{shape:?} on {target:?}: {failure}");
        }
    }
}

/// 7 shapes x 3 passwords against a closed port, 7 x 2 against a live
/// database: 35 cases, 5 commands each (about 5 s).
#[test]
fn no_command_prints_a_password_in_any_url_shape() {
    run(&Target::closed(), 3);
    let Some(database) = PgTestDatabase::create() else {
        return;
    };
    run(&Target::live(&database), 2);
}

/// The reproduction: a key=value string was taken for a SQLite
/// file name, created in the working directory and logged whole.
#[test]
fn a_key_value_string_creates_no_file_and_prints_no_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = keel(
        dir.path(),
        "host=127.0.0.1 port=1 password=s3cret dbname=test",
    )
    .args(["migrate", "run"])
    .output()
    .expect("run keel");
    let text = printed(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot connect to PostgreSQL"), "{text}");
    assert!(text.contains("password=***"), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains("sqlite"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the working directory")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The other reproductions: each is refused (or fails to connect)
/// without the password, by every command, `explain` included.
#[test]
fn the_reported_urls_print_no_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    for url in [
        "postgres://postgres:s3cret%zzPW@127.0.0.1:1/test",
        "postgres://postgres:s3cretPW@[::1:5433/test",
        "postgres://postgres:s3cret/PW@127.0.0.1:1/test",
        "postgres://postgres:s3cret?PW@127.0.0.1:1/test",
    ] {
        for args in [
            &["migrate", "run"][..],
            &["doctor"],
            &["explain"],
            &["seed", "--users", "2"],
        ] {
            let output = keel(dir.path(), url).args(args).output().expect("run keel");
            let text = printed(&output);
            assert_eq!(output.status.code(), Some(1), "{url} {args:?}: {text}");
            assert!(!text.contains("s3cret"), "{url} {args:?}: {text}");
        }
    }
}

/// A malformed `.env`: dotenvy's message quotes the line, which may be the
/// `DATABASE_URL` with its password; keel's warning does not.
#[test]
fn a_malformed_dotenv_line_is_not_quoted() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL='postgres://keel:s3cretPW@127.0.0.1:1/keel\n",
    )
    .expect("write .env");
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["migrate", "status"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run keel");
    let text = printed(&output);
    assert!(
        text.contains("warning: ignoring the rest of .env"),
        "{text}"
    );
    assert!(!text.contains("s3cretPW"), "{text}");
}
