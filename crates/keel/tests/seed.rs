//! `keel seed`: WORKLOAD.md's rows and checksums, whole chunks only when
//! killed, and a rerun that completes the load.

use keel_repo::prelude::{CommentsExt as _, TagsExt as _, UsersExt as _};
use std::process::{Command, Output};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use keel_repo::DatabaseConfig;
use keel_repo::sync::Database;
use keel_tests::{TestDatabase, backend_tests};
use keel_workload::{GraphChecksum, Workload};

fn seed_command(db: &impl TestDatabase, users: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .args(["seed", "--users", &users.to_string()])
        .env("DATABASE_URL", db.database_url().as_connection_str())
        .env("RUST_LOG", "info");
    command
}

fn succeeded(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "keel seed failed: {stderr}");
    stderr
}

/// The graph checksum of B2, read back through the repo.
fn graph_checksum(db: &Database) -> GraphChecksum {
    let mut checksum = GraphChecksum::default();
    for user in db
        .users()
        .users_with_posts_and_comments(1000)
        .expect("eager load")
    {
        checksum.add_user();
        for post in user.posts {
            checksum.add_post();
            for comment in post.comments {
                checksum.add_comment(&comment.body);
            }
        }
    }
    checksum
}

fn assert_complete(db: &impl TestDatabase, workload: &Workload) {
    let repo = Database::connect(&DatabaseConfig::new(db.database_url())).expect("pool");
    let sizes = repo.users().table_sizes().expect("sizes");
    assert_eq!(sizes.users.rows, i64::from(workload.user_count()));
    assert_eq!(sizes.posts.rows, i64::from(workload.post_count()));
    assert_eq!(sizes.comments.rows, i64::from(workload.comment_count()));
    assert_eq!(graph_checksum(&repo), workload.expected_graph());
    for id in workload.lookup_ids(50) {
        let user = repo.users().get_by_id(id).expect("lookup");
        assert_eq!(user.email, Workload::email(id));
    }
    // Tags and replies, by the workload's rules.
    assert_eq!(
        repo.tags().size().expect("tags").rows,
        i64::from(keel_workload::TAG_COUNT)
    );
    let count = |sql: &'static str| -> usize {
        let rows: i64 = repo
            .with_conn(async |conn| {
                keel_repo::run!(
                    conn,
                    get_result(diesel::select(
                        diesel::dsl::sql::<diesel::sql_types::BigInt>(sql)
                    ))
                )
            })
            .expect(sql);
        usize::try_from(rows).expect("a count")
    };
    assert_eq!(
        count("(SELECT count(*) FROM post_tags)"),
        workload.post_tag_count()
    );
    assert_eq!(
        count("(SELECT count(*) FROM comments WHERE parent_id IS NOT NULL)"),
        workload.reply_count()
    );
    for post_id in [1, 25, workload.post_count()] {
        let names: Vec<String> = repo
            .tags()
            .tags_of_post(post_id)
            .expect("tags")
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mut expected: Vec<String> = Workload::tags_of_post(post_id)
            .into_iter()
            .map(Workload::tag_name)
            .collect();
        expected.sort();
        assert_eq!(names, expected, "post {post_id}");
    }
    for comment_id in [9, 10, 20] {
        let parent = repo
            .comments()
            .get_by_id(comment_id)
            .expect("comment")
            .parent_id;
        assert_eq!(
            parent,
            workload.parent_of_comment(comment_id),
            "comment {comment_id}"
        );
    }
}

backend_tests! {
    fn seed_loads_the_workload_rows_and_checksums(db) {
        let log = succeeded(seed_command(db, 300).output().expect("run"));
        assert!(log.contains("seeded"), "{log}");
        assert_complete(db, &Workload::new(300, 10, 2).expect("sizes"));
        let again = succeeded(seed_command(db, 300).output().expect("run"));
        assert!(again.contains("already seeded"), "{again}");
    }

    fn rerunning_a_complete_load_resets_no_id_and_no_tag(db) {
        succeeded(seed_command(db, 300).output().expect("run keel seed"));
        let repo = Database::connect(&DatabaseConfig::new(db.database_url())).expect("pool");
        // A service writes and deletes a user, and untags a post.
        let extra = repo.users().create(&keel_models::NewUser::new("extra@example.com", "Extra")).expect("create");
        repo.users().delete(extra.id).expect("delete");
        assert!(repo.tags().untag_post(1, &Workload::tag_name(1)).expect("untag"));
        let again = succeeded(seed_command(db, 300).output().expect("run keel seed"));
        assert!(again.contains("already seeded"), "{again}");
        let next = repo.users().create(&keel_models::NewUser::new("next@example.com", "Next")).expect("create");
        assert!(next.id > extra.id, "the deleted user's id {} came back", extra.id);
        let tags = repo.tags().tags_of_post(1).expect("tags");
        assert!(tags.iter().all(|t| t.name != Workload::tag_name(1)), "a removed tag came back: {tags:?}");
    }

    fn a_rerun_completes_an_interrupted_load(db) {
        succeeded(seed_command(db, 300).output().expect("run"));
        // What a kill between chunks leaves: the tail of the load missing.
        db.connect()
            .batch_execute("DELETE FROM comments; DELETE FROM posts WHERE id > 1500;")
            .expect("cut the load short");
        succeeded(seed_command(db, 300).output().expect("rerun"));
        assert_complete(db, &Workload::new(300, 10, 2).expect("sizes"));
    }

    fn a_load_with_other_sizes_is_not_continued(db) {
        succeeded(seed_command(db, 100).output().expect("run"));
        let output = seed_command(db, 200).output().expect("run");
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not the first rows of this workload"), "{stderr}");
    }

    fn killed_half_way_leaves_whole_chunks_and_a_rerun_finishes(db) {
        let mut child = seed_command(db, 4000).spawn().expect("start");
        std::thread::sleep(Duration::from_millis(600));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let repo = Database::connect(&DatabaseConfig::new(db.database_url())).expect("pool");
        let sizes = repo.users().table_sizes().expect("sizes");
        let workload = Workload::new(4000, 10, 2).expect("sizes");
        for (rows, total) in [
            (sizes.users.rows, workload.user_count()),
            (sizes.posts.rows, workload.post_count()),
            (sizes.comments.rows, workload.comment_count()),
        ] {
            assert!(rows % 10_000 == 0 || rows == i64::from(total), "{rows} rows: a chunk was cut in half");
        }
        drop(repo);
        succeeded(seed_command(db, 4000).output().expect("rerun"));
        assert_complete(db, &workload);
    }
}
