//! `keel doctor` and `keel explain` on real databases.

use std::process::{Command, Output};

use diesel::connection::SimpleConnection;
use keel_tests::{TestDatabase, backend_tests};

fn keel(db: &impl TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("DATABASE_URL", db.database_url().as_connection_str())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run keel")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

backend_tests! {
    fn doctor_passes_on_a_fresh_database_and_names_a_dropped_foreign_key_index(db) {
        db.migrate();
        let healthy = keel(db, &["doctor"]);
        assert_eq!(healthy.status.code(), Some(0), "{}", stdout(&healthy));
        assert!(stdout(&healthy).contains("healthy"));

        db.connect().batch_execute("DROP INDEX ix_posts_author_id").expect("drop index");
        let sick = keel(db, &["doctor"]);
        assert_eq!(sick.status.code(), Some(1));
        let text = stdout(&sick);
        assert!(text.contains("[unindexed_foreign_key]") && text.contains("posts.author_id"), "{text}");

        let json: serde_json::Value = serde_json::from_slice(&keel(db, &["doctor", "--json"]).stdout).expect("JSON report");
        assert_eq!(json["healthy"], false);
        assert_eq!(json["findings"][0]["table"], "posts");
        assert_eq!(json["findings"][0]["column"], "author_id");
    }

    fn doctor_reports_pending_migrations_and_missing_tables(db) {
        let output = keel(db, &["doctor", "--json"]);
        assert_eq!(output.status.code(), Some(1));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
        let checks: Vec<&str> = json["findings"].as_array().expect("findings").iter().filter_map(|f| f["check"].as_str()).collect();
        assert_eq!(checks.iter().filter(|c| **c == "pending_migration").count(), 7, "one per migration: {json}");
        assert_eq!(checks.iter().filter(|c| **c == "schema_drift").count(), 5, "one per missing table: {json}");
    }

    fn explain_shows_the_email_lookup_on_the_unique_index(db) {
        db.migrate();
        let output = keel(db, &["explain", "user_by_email"]);
        assert_eq!(output.status.code(), Some(0));
        let text = stdout(&output);
        assert!(text.contains("ix_users_email"), "{text}");
        assert!(!text.contains("FULL SCAN"), "{text}");

        let all = keel(db, &["explain"]);
        assert_eq!(all.status.code(), Some(0), "{}", stdout(&all));
        for name in ["active_users", "posts_of_authors", "comments_of_posts", "posts_by_author_email", "users_page", "users_by_name", "replies_to", "comment_thread", "tags_of_posts", "posts_with_tag"] {
            assert!(stdout(&all).contains(name), "{name}");
        }
    }

    fn explain_flags_a_full_scan_when_the_index_is_gone(db) {
        db.migrate();
        db.connect().batch_execute("DROP INDEX ix_comments_post_id").expect("drop index");
        let output = keel(db, &["explain", "comments_of_posts"]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        assert!(stdout(&output).contains("FULL SCAN of comments"), "{}", stdout(&output));
    }
}

#[test]
fn explain_rejects_an_unknown_name() {
    let db = keel_tests::SqliteTestDatabase::create();
    let output = keel(&db, &["explain", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no query named `nope`") && stderr.contains("user_by_email"),
        "{stderr}"
    );
}
