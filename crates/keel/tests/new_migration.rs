//! `keel migrate new` as a user runs it: the pair it makes, once filled in,
//! migrates up, down and up again on both backends.

use std::path::Path;
use std::process::Command;

use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use keel_tests::{TestDatabase, backend_tests};

/// Runs `keel migrate new ARGS` in `cwd`; its exit status and output.
fn migrate_new(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .current_dir(cwd)
        .args(["migrate", "new"])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run keel")
}

/// A workspace-shaped folder: `migrations/postgres` and `migrations/sqlite`.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for backend in ["postgres", "sqlite"] {
        std::fs::create_dir_all(dir.path().join("migrations").join(backend)).expect("folder");
    }
    dir
}

fn folders(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

backend_tests! {
    fn a_new_pair_migrates_up_down_and_up(db) {
        let dir = workspace();
        let made = migrate_new(dir.path(), &["create_widgets"]);
        assert!(made.status.success(), "{made:?}");
        let postgres = folders(&dir.path().join("migrations/postgres"));
        let sqlite = folders(&dir.path().join("migrations/sqlite"));
        assert_eq!(postgres, sqlite, "the same version and name on both backends");
        assert_eq!(postgres.len(), 1);
        assert!(postgres[0].ends_with("_create_widgets"), "{postgres:?}");
        assert!(String::from_utf8_lossy(&made.stdout).contains(&postgres[0]));

        // What a user writes into the generated files.
        for backend in ["postgres", "sqlite"] {
            let folder = dir.path().join("migrations").join(backend).join(&postgres[0]);
            std::fs::write(folder.join("up.sql"), "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
                .expect("up.sql");
            std::fs::write(folder.join("down.sql"), "DROP TABLE widgets;").expect("down.sql");
        }
        let backend = match db.database_url() {
            keel_repo::DatabaseUrl::Postgres(_) => "postgres",
            keel_repo::DatabaseUrl::Sqlite(_) => "sqlite",
        };
        let source = FileBasedMigrations::from_path(dir.path().join("migrations").join(backend))
            .expect("the folder diesel reads");
        let mut conn = db.connect();
        assert_eq!(conn.run_pending_migrations(source.clone()).expect("up").len(), 1);
        assert_eq!(db.tables(&mut conn), ["widgets"]);
        conn.revert_last_migration(source.clone()).expect("down");
        assert!(db.tables(&mut conn).is_empty());
        assert_eq!(conn.run_pending_migrations(source).expect("up again").len(), 1);
        assert_eq!(db.tables(&mut conn), ["widgets"]);
    }
}

#[test]
fn a_vague_or_malformed_name_is_refused_and_nothing_is_written() {
    let dir = workspace();
    for name in [
        "widgets",
        "Create_Widgets",
        "create-widgets",
        "misc_changes",
    ] {
        let refused = migrate_new(dir.path(), &[name]);
        assert_eq!(refused.status.code(), Some(1), "{name}: {refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.starts_with("error: migration name"),
            "{name}: {stderr}"
        );
    }
    assert!(folders(&dir.path().join("migrations/postgres")).is_empty());
    assert!(folders(&dir.path().join("migrations/sqlite")).is_empty());

    let elsewhere = tempfile::tempdir().expect("temp dir");
    let lost = migrate_new(elsewhere.path(), &["create_widgets"]);
    assert_eq!(lost.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lost.stderr).contains("run this from the workspace root"));
}
