//! `keel migrate` as a user runs it: the real binary, on real databases.

use std::process::{Command, Output};

use keel_tests::{TestDatabase, backend_tests};

fn keel(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run keel")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "keel failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A failure is one line on stderr, exit code 1, and nothing that looks like
/// a panic or a debug dump.
fn one_line_error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    stderr
}

backend_tests! {
    fn migrate_run_applies_then_reports_nothing_pending(db) {
        let url = db.database_url().as_connection_str().to_owned();
        let first = stdout(&keel(&url, &["migrate", "run"]));
        assert!(first.contains("applied 7 migrations"), "{first}");
        for name in ["_create_users", "_create_posts", "_create_comments", "_created_at_default_utc", "_sqlite_ids_never_reused", "_create_tags", "_add_parent_to_comments"] {
            assert!(first.contains(name), "{first}");
        }
        let mut conn = db.connect();
        assert_eq!(db.tables(&mut conn), ["comments", "post_tags", "posts", "tags", "users"]);

        let second = stdout(&keel(&url, &["migrate", "run"]));
        assert!(second.contains("nothing pending"), "{second}");

        let status = stdout(&keel(&url, &["migrate", "status"]));
        assert!(status.contains("7 applied, 0 pending"), "{status}");
        assert_eq!(status.matches("applied  ").count(), 7, "{status}");
    }

    fn migrate_revert_steps_past_the_start_leaves_an_empty_schema(db) {
        let url = db.database_url().as_connection_str().to_owned();
        stdout(&keel(&url, &["migrate", "run"]));
        let one = stdout(&keel(&url, &["migrate", "revert"]));
        assert!(one.contains("reverted 1 migration") && one.contains("_add_parent_to_comments"), "{one}");

        let rest = stdout(&keel(&url, &["migrate", "revert", "--steps", "99"]));
        assert!(rest.contains("reverted 6 migrations"), "{rest}");
        let mut conn = db.connect();
        assert!(db.tables(&mut conn).is_empty());

        let none = stdout(&keel(&url, &["migrate", "revert"]));
        assert!(none.contains("nothing to revert"), "{none}");
        let status = stdout(&keel(&url, &["migrate", "status"]));
        assert!(status.contains("0 applied, 7 pending"), "{status}");

        let redo = stdout(&keel(&url, &["migrate", "redo"]));
        assert!(redo.contains("nothing to redo"), "{redo}");
    }
}

#[test]
fn without_database_url_migrate_creates_keel_db_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["migrate", "run"])
        .env_remove("DATABASE_URL")
        .current_dir(dir.path())
        .output()
        .expect("run keel");
    let out = stdout(&output);
    assert!(
        out.starts_with("sqlite://keel.db: applied 7 migrations"),
        "{out}"
    );
    assert!(dir.path().join("keel.db").is_file());
}

#[test]
fn database_url_from_a_dotenv_file_is_honoured() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=sqlite://from-dotenv.db\n",
    )
    .expect("write .env");
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["migrate", "run"])
        .env_remove("DATABASE_URL")
        .current_dir(dir.path())
        .output()
        .expect("run keel");
    assert!(stdout(&output).contains("from-dotenv.db"));
    assert!(dir.path().join("from-dotenv.db").is_file());
}

#[test]
fn unsupported_url_is_a_one_line_error() {
    let stderr = one_line_error(&keel("mysql://root@127.0.0.1/test", &["migrate", "run"]));
    assert!(
        stderr.contains("unsupported database URL scheme `mysql://`"),
        "{stderr}"
    );
}

#[test]
fn unreachable_server_is_a_one_line_error_without_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let stderr = one_line_error(&keel(
        "postgres://keel:hunter2@127.0.0.1:1/keel",
        &["migrate", "status"],
    ));
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgres://keel:***@127.0.0.1:1/keel"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn unopenable_sqlite_file_is_a_one_line_error() {
    let stderr = one_line_error(&keel("/nonexistent-dir/keel.db", &["migrate", "run"]));
    assert!(stderr.contains("cannot connect to SQLite"), "{stderr}");
}
