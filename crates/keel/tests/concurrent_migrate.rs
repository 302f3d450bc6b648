//! Four `keel migrate run` processes started at once on one empty database:
//! the migration lock lets exactly one apply each migration, the others wait
//! and find nothing pending, and every process exits 0.

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_tests::{TestDatabase, backend_tests};

const PROCESSES: usize = 4;
/// Longest any one `keel migrate run` may take here; far above the real time
/// (well under a second), so only a hang trips it.
const DEADLINE: Duration = Duration::from_secs(30);

const MIGRATIONS: [&str; 7] = [
    "_create_users",
    "_create_posts",
    "_create_comments",
    "_created_at_default_utc",
    "_sqlite_ids_never_reused",
    "_create_tags",
    "_add_parent_to_comments",
];

fn spawn_migrate(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["migrate", "run"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keel")
}

/// Waits for `child`, killing it (and failing) if it outlives the deadline.
fn wait_bounded(mut child: Child, started: Instant) -> Output {
    loop {
        if child.try_wait().expect("poll keel").is_some() {
            return child.wait_with_output().expect("collect keel's output");
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect keel's output");
            panic!(
                "keel migrate run hung for {DEADLINE:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the four processes at once; each must exit 0. Returns their stdouts.
fn migrate_concurrently(url: &str) -> Vec<String> {
    let started = Instant::now();
    let children: Vec<Child> = (0..PROCESSES).map(|_| spawn_migrate(url)).collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| wait_bounded(child, started))
        .collect();
    outputs
        .iter()
        .map(|output| {
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert_eq!(
                output.status.code(),
                Some(0),
                "every process must succeed; this one said:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
        })
        .collect()
}

/// How many processes printed each migration's name as applied.
fn times_applied(stdouts: &[String]) -> HashMap<&'static str, usize> {
    let mut applied: HashMap<&str, usize> = MIGRATIONS.iter().map(|name| (*name, 0)).collect();
    for line in stdouts.iter().flat_map(|s| s.lines()) {
        if let Some(name) = MIGRATIONS
            .iter()
            .find(|name| line.starts_with("  ") && line.trim_end().ends_with(*name))
        {
            *applied.entry(name).or_default() += 1;
        }
    }
    applied
}

fn status(url: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["migrate", "status"])
        .env("DATABASE_URL", url)
        .output()
        .expect("run keel migrate status");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

backend_tests! {
    fn four_concurrent_migrate_runs_apply_each_migration_exactly_once(db) {
        let url = db.database_url().as_connection_str().to_owned();
        let first = migrate_concurrently(&url);
        assert!(
            times_applied(&first).values().all(|&n| n == 1),
            "each migration applied by exactly one process: {:?}\n{first:#?}",
            times_applied(&first)
        );
        let idle = first.iter().filter(|s| s.contains("nothing pending")).count();
        assert!(idle >= PROCESSES.saturating_sub(MIGRATIONS.len()), "{first:#?}");

        let mut conn = db.connect();
        assert_eq!(db.tables(&mut conn), ["comments", "post_tags", "posts", "tags", "users"]);
        assert_eq!(db.foreign_keys(&mut conn).len(), 6, "every foreign key");
        assert!(db.indexes(&mut conn).iter().any(|i| i.name == "ix_users_email" && i.unique));
        let status = status(&url);
        assert!(status.contains("7 applied, 0 pending"), "{status}");

        // Again on the complete schema: all four find nothing to do.
        let again = migrate_concurrently(&url);
        assert!(times_applied(&again).values().all(|&n| n == 0), "{again:#?}");
        assert!(again.iter().all(|s| s.contains("nothing pending")), "{again:#?}");
    }
}
