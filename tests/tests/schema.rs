//! The migrations build the schema of `WORKLOAD.md` on both backends, undo it
//! exactly, and the database itself enforces what the schema promises.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use keel_migrations::{MigrationState, Migrator};
use keel_models::{NewComment, NewPost, NewUser, Post, User};
use keel_schema::{comments, posts, users};
use keel_tests::{ForeignKey, Index, TestDatabase, backend_tests};

const TABLES: [&str; 5] = ["comments", "post_tags", "posts", "tags", "users"];
/// How many migrations each backend has, and the newest one's name.
const MIGRATIONS: usize = 7;
const NEWEST: &str = "_add_parent_to_comments";

fn new_user(n: u32) -> NewUser {
    NewUser {
        email: format!("user{n}@example.com"),
        full_name: format!("First{n} Last{n}"),
        first_name: Some(format!("First{n}")),
        last_name: Some(format!("Last{n}")),
        is_active: true,
    }
}

fn index(table: &str, name: &str, columns: &[&str], unique: bool) -> Index {
    Index {
        table: table.into(),
        name: name.into(),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        unique,
    }
}

fn database_error_kind<T: std::fmt::Debug>(result: QueryResult<T>) -> DatabaseErrorKind {
    match result {
        Err(Error::DatabaseError(kind, _)) => kind,
        other => panic!("expected a database error, got {other:?}"),
    }
}

backend_tests! {
    fn migrations_apply_to_an_empty_database(db) {
        let mut conn = db.connect();
        assert!(db.tables(&mut conn).is_empty());

        let applied = db.migrate();
        assert_eq!(applied.len(), MIGRATIONS, "{applied:?}");
        assert!(applied[0].ends_with("_create_users"), "{applied:?}");
        assert_eq!(db.tables(&mut conn), TABLES);

        let mut migrator = Migrator::connect(&db.database_url()).expect("connect");
        assert!(migrator.run_pending().expect("second run").is_empty());
        let status = migrator.status().expect("status");
        assert_eq!(status.len(), MIGRATIONS);
        assert!(status.iter().all(|m| m.state == MigrationState::Applied));
    }

    fn migrations_go_down_to_nothing_and_up_again(db) {
        let mut conn = db.migrated_connection();
        let mut migrator = Migrator::connect(&db.database_url()).expect("connect");

        let reverted = migrator.revert(99).expect("revert all");
        assert_eq!(reverted.len(), MIGRATIONS);
        assert!(reverted[0].ends_with(NEWEST), "newest first: {reverted:?}");
        assert!(db.tables(&mut conn).is_empty(), "down.sql leaves tables behind");
        assert!(db.indexes(&mut conn).is_empty(), "down.sql leaves indexes behind");
        assert!(migrator.status().expect("status").iter().all(|m| m.state == MigrationState::Pending));

        assert_eq!(migrator.run_pending().expect("up again").len(), MIGRATIONS);
        assert_eq!(db.tables(&mut conn), TABLES);
        assert_eq!(migrator.redo().expect("redo").as_deref().map(|n| n.ends_with(NEWEST)), Some(true));
        assert_eq!(db.tables(&mut conn), TABLES);
    }

    fn every_declared_index_exists(db) {
        let mut conn = db.migrated_connection();
        let indexes = db.indexes(&mut conn);
        for expected in [
            index("users", "ix_users_email", &["email"], true),
            index("users", "ix_users_last_name", &["last_name"], false),
            index("users", "idx_users_full_name", &["last_name", "first_name"], false),
            index("posts", "ix_posts_author_id", &["author_id"], false),
            index("comments", "ix_comments_post_id", &["post_id"], false),
            index("comments", "ix_comments_author_id", &["author_id"], false),
            index("comments", "ix_comments_parent_id", &["parent_id"], false),
            index("tags", "ix_tags_name", &["name"], true),
            index("post_tags", "ix_post_tags_tag_id", &["tag_id", "post_id"], false),
        ] {
            assert!(indexes.contains(&expected), "missing {expected:?} in {indexes:#?}");
        }
    }

    fn every_foreign_key_is_indexed_and_cascades(db) {
        let mut conn = db.migrated_connection();
        let keys = db.foreign_keys(&mut conn);
        let fk = |table: &str, column: &str, references: &str| ForeignKey {
            table: table.into(),
            column: column.into(),
            references: references.into(),
            on_delete: "CASCADE".into(),
        };
        assert_eq!(
            keys,
            [
                fk("comments", "author_id", "users"),
                fk("comments", "parent_id", "comments"),
                fk("comments", "post_id", "posts"),
                fk("post_tags", "post_id", "posts"),
                fk("post_tags", "tag_id", "tags"),
                fk("posts", "author_id", "users"),
            ]
        );
        let indexes = db.indexes(&mut conn);
        for key in &keys {
            assert!(
                indexes.iter().any(|i| i.table == key.table && i.columns.first() == Some(&key.column)),
                "no index leads with {}.{}",
                key.table,
                key.column
            );
        }
    }

    fn rows_round_trip_through_the_models_with_server_defaults(db) {
        let mut conn = db.migrated_connection();
        let user: User = diesel::insert_into(users::table)
            .values(&new_user(1))
            .returning(User::as_returning())
            .get_result(&mut conn)
            .expect("insert a user");
        assert_eq!(user.email, "user1@example.com");
        assert_eq!(user.first_name.as_deref(), Some("First1"));
        let age = chrono::Utc::now().naive_utc() - user.created_at;
        assert!(age.num_seconds().abs() < 600, "created_at defaulted to {}, not UTC now", user.created_at);

        diesel::sql_query("INSERT INTO users (email, full_name) VALUES ('x@example.com', 'X')")
            .execute(&mut conn)
            .expect("insert with defaults");
        let defaulted: User = users::table
            .filter(users::email.eq("x@example.com"))
            .select(User::as_select())
            .first(&mut conn)
            .expect("read back");
        assert!(defaulted.is_active, "is_active defaults to true");
        assert_eq!(defaulted.first_name, None);
    }

    fn duplicate_email_is_rejected(db) {
        let mut conn = db.migrated_connection();
        diesel::insert_into(users::table).values(&new_user(1)).execute(&mut conn).expect("first");
        let mut same_email = new_user(2);
        same_email.email = "user1@example.com".into();
        let result = diesel::insert_into(users::table).values(&same_email).execute(&mut conn);
        assert_eq!(database_error_kind(result), DatabaseErrorKind::UniqueViolation);
        assert_eq!(users::table.count().get_result::<i64>(&mut conn), Ok(1));
    }

    fn post_for_a_missing_user_is_rejected(db) {
        let mut conn = db.migrated_connection();
        let result = diesel::insert_into(posts::table)
            .values(&NewPost { title: "t".into(), content: "c".into(), author_id: 999 })
            .execute(&mut conn);
        assert_eq!(database_error_kind(result), DatabaseErrorKind::ForeignKeyViolation);
        assert_eq!(posts::table.count().get_result::<i64>(&mut conn), Ok(0));
    }

    fn missing_required_column_is_rejected(db) {
        let mut conn = db.migrated_connection();
        let result = diesel::sql_query("INSERT INTO users (email, full_name) VALUES (NULL, 'x')")
            .execute(&mut conn);
        assert_eq!(database_error_kind(result), DatabaseErrorKind::NotNullViolation);
        let result = diesel::sql_query("INSERT INTO users (email, full_name) VALUES ('a@b.c', NULL)")
            .execute(&mut conn);
        assert_eq!(database_error_kind(result), DatabaseErrorKind::NotNullViolation);
    }

    fn deleting_a_user_deletes_their_posts_and_all_comments_on_them(db) {
        let mut conn = db.migrated_connection();
        let ids: Vec<i32> = diesel::insert_into(users::table)
            .values(&vec![new_user(1), new_user(2)])
            .returning(users::id)
            .get_results(&mut conn)
            .expect("insert users");
        let (alice, bob) = (ids[0], ids[1]);
        let post_ids: Vec<i32> = diesel::insert_into(posts::table)
            .values(&vec![
                NewPost { title: "a1".into(), content: "x".into(), author_id: alice },
                NewPost { title: "a2".into(), content: "x".into(), author_id: alice },
                NewPost { title: "b1".into(), content: "x".into(), author_id: bob },
            ])
            .returning(posts::id)
            .get_results(&mut conn)
            .expect("insert posts");
        diesel::insert_into(comments::table)
            .values(&vec![
                // Bob's comments on Alice's posts go with her posts.
                NewComment { body: "bob on a1".into(), post_id: post_ids[0], author_id: bob },
                NewComment { body: "bob on a2".into(), post_id: post_ids[1], author_id: bob },
                // Alice's comment on Bob's post goes with her.
                NewComment { body: "alice on b1".into(), post_id: post_ids[2], author_id: alice },
                NewComment { body: "bob on b1".into(), post_id: post_ids[2], author_id: bob },
            ])
            .execute(&mut conn)
            .expect("insert comments");

        let deleted = diesel::delete(users::table.find(alice)).execute(&mut conn).expect("delete");
        assert_eq!(deleted, 1);

        let posts_left: Vec<Post> = posts::table.select(Post::as_select()).load(&mut conn).expect("posts");
        assert_eq!(posts_left.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(), ["b1"]);
        let bodies: Vec<String> = comments::table.select(comments::body).load(&mut conn).expect("comments");
        assert_eq!(bodies, ["bob on b1"]);
        assert_eq!(users::table.select(users::id).load::<i32>(&mut conn), Ok(vec![bob]));
    }

    fn deleted_ids_are_never_handed_out_again(db) {
        let mut conn = db.migrated_connection();
        let user = |conn: &mut _, n| -> i32 {
            diesel::insert_into(users::table).values(&new_user(n)).returning(users::id).get_result(conn).expect("insert user")
        };
        let post = |conn: &mut _, author_id| -> i32 {
            diesel::insert_into(posts::table)
                .values(&NewPost { title: "t".into(), content: "c".into(), author_id })
                .returning(posts::id)
                .get_result(conn)
                .expect("insert post")
        };
        let comment = |conn: &mut _, post_id, author_id| -> i32 {
            diesel::insert_into(comments::table)
                .values(&NewComment { body: "b".into(), post_id, author_id })
                .returning(comments::id)
                .get_result(conn)
                .expect("insert comment")
        };
        let author = user(&mut conn, 1);
        let newest_user = user(&mut conn, 2);
        let kept_post = post(&mut conn, author);
        let newest_post = post(&mut conn, author);
        let newest_comment = comment(&mut conn, kept_post, author);

        // The newest row of each table goes; the next insert must not get its id.
        diesel::delete(comments::table.find(newest_comment)).execute(&mut conn).expect("delete");
        diesel::delete(posts::table.find(newest_post)).execute(&mut conn).expect("delete");
        diesel::delete(users::table.find(newest_user)).execute(&mut conn).expect("delete");
        assert!(user(&mut conn, 3) > newest_user, "a deleted user's id was handed out again");
        assert!(post(&mut conn, author) > newest_post, "a deleted post's id was handed out again");
        assert!(
            comment(&mut conn, kept_post, author) > newest_comment,
            "a deleted comment's id was handed out again"
        );
    }

    fn reverting_the_parent_column_keeps_deleted_ids_unused(db) {
        let mut conn = db.migrated_connection();
        let author: i32 = diesel::insert_into(users::table).values(&new_user(1)).returning(users::id).get_result(&mut conn).expect("user");
        let post_id: i32 = diesel::insert_into(posts::table)
            .values(&NewPost { title: "t".into(), content: "c".into(), author_id: author })
            .returning(posts::id)
            .get_result(&mut conn)
            .expect("post");
        let comment = |conn: &mut _| -> i32 {
            diesel::insert_into(comments::table)
                .values(&NewComment { body: "b".into(), post_id, author_id: author })
                .returning(comments::id)
                .get_result(conn)
                .expect("comment")
        };
        comment(&mut conn);
        let newest = comment(&mut conn);
        diesel::delete(comments::table.find(newest)).execute(&mut conn).expect("delete");
        let mut migrator = Migrator::connect(&db.database_url()).expect("connect");
        let reverted = migrator.revert(1).expect("revert");
        assert!(reverted[0].ends_with("_add_parent_to_comments"), "{reverted:?}");
        assert!(comment(&mut conn) > newest, "a rebuild forgot the largest id ever used");
    }

    fn the_id_migration_keeps_rows_indexes_and_foreign_keys(db) {
        let mut conn = db.migrated_connection();
        let mut migrator = Migrator::connect(&db.database_url()).expect("connect");
        // Back to just before the id migration (it is third from the top).
        let reverted = migrator.revert(3).expect("revert the newest three");
        assert!(reverted[2].ends_with("_sqlite_ids_never_reused"), "{reverted:?}");
        let indexes_before = db.indexes(&mut conn);
        let keys_before = db.foreign_keys(&mut conn);

        // Rows written before the migration, with a gap where the newest
        // user was deleted.
        let ids: Vec<i32> = diesel::insert_into(users::table)
            .values(&vec![new_user(1), new_user(2), new_user(3)])
            .returning(users::id)
            .get_results(&mut conn)
            .expect("insert users");
        let post_id: i32 = diesel::insert_into(posts::table)
            .values(&NewPost { title: "t".into(), content: "c".into(), author_id: ids[0] })
            .returning(posts::id)
            .get_result(&mut conn)
            .expect("insert post");
        diesel::insert_into(comments::table)
            .values(&NewComment { body: "b".into(), post_id, author_id: ids[1] })
            .execute(&mut conn)
            .expect("insert comment");
        diesel::delete(users::table.find(ids[2])).execute(&mut conn).expect("delete");
        let users_before: Vec<User> = users::table.select(User::as_select()).order(users::id).load(&mut conn).expect("users");
        let posts_before: Vec<Post> = posts::table.select(Post::as_select()).order(posts::id).load(&mut conn).expect("posts");
        let comments_before: Vec<(i32, String, i32, i32)> = comments::table
            .select((comments::id, comments::body, comments::post_id, comments::author_id))
            .load(&mut conn)
            .expect("comments");

        let applied = migrator.run_pending().expect("apply the id migration to a database with rows");
        assert_eq!(applied.len(), 3);
        assert_eq!(users::table.select(User::as_select()).order(users::id).load(&mut conn), Ok(users_before));
        assert_eq!(posts::table.select(Post::as_select()).order(posts::id).load(&mut conn), Ok(posts_before));
        assert_eq!(
            comments::table
                .select((comments::id, comments::body, comments::post_id, comments::author_id))
                .load(&mut conn),
            Ok(comments_before)
        );
        // The same indexes and keys, plus those of the later migrations.
        let indexes = db.indexes(&mut conn);
        assert!(indexes_before.iter().all(|i| indexes.contains(i)), "{indexes_before:#?}\n{indexes:#?}");
        let keys = db.foreign_keys(&mut conn);
        assert!(keys_before.iter().all(|k| keys.contains(k)), "{keys_before:#?}\n{keys:#?}");

        // From now on a deleted id stays unused. (Which ids were deleted
        // before the migration, no table records: the newest of them may
        // still come back once.)
        let insert = |conn: &mut _, n| -> i32 {
            diesel::insert_into(users::table).values(&new_user(n)).returning(users::id).get_result(conn).expect("insert")
        };
        let newest = insert(&mut conn, 4);
        diesel::delete(users::table.find(newest)).execute(&mut conn).expect("delete");
        assert!(insert(&mut conn, 5) > newest, "a deleted user's id was handed out again");

        // The keys still cascade.
        diesel::delete(users::table.find(ids[0])).execute(&mut conn).expect("delete");
        assert_eq!(posts::table.count().get_result::<i64>(&mut conn), Ok(0));
        assert_eq!(comments::table.count().get_result::<i64>(&mut conn), Ok(0));
    }
}

/// `created_at` defaults to UTC whoever writes the row: here a session set
/// to New York (UTC-5 or UTC-4), as psql, a second service or a backfill might
/// be. With the old `DEFAULT now()` the three rows held New York time, hours
/// away from UTC. SQLite has no session time zone (`CURRENT_TIMESTAMP` is UTC).
#[test]
fn created_at_defaults_to_utc_in_a_new_york_session() {
    let Some(db) = keel_tests::PgTestDatabase::create() else {
        return;
    };
    let mut conn = db.migrated_connection();
    conn.batch_execute("SET TIME ZONE 'America/New_York'")
        .expect("set the session's zone");
    let zone: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_setting('TimeZone')",
    ))
    .get_result(&mut conn)
    .expect("read the zone");
    assert_eq!(zone, "America/New_York");
    conn.batch_execute(
        "INSERT INTO users (email, full_name) VALUES ('ny@example.com', 'New York');
         INSERT INTO posts (title, content, author_id) SELECT 't', 'c', id FROM users;
         INSERT INTO comments (body, post_id, author_id) SELECT 'b', p.id, p.author_id FROM posts p;",
    )
    .expect("insert with the defaults");
    let stamps: Vec<chrono::NaiveDateTime> = users::table
        .select(users::created_at)
        .union_all(posts::table.select(posts::created_at))
        .union_all(comments::table.select(comments::created_at))
        .load(&mut conn)
        .expect("read the defaults");
    assert_eq!(stamps.len(), 3);
    let now = chrono::Utc::now().naive_utc();
    for stamp in stamps {
        let off = (now - stamp).num_seconds().abs();
        assert!(
            off < 600,
            "created_at {stamp} is {off} s away from UTC now ({now})"
        );
    }
}

/// A SQLite database that already has a row pointing nowhere (written by a
/// tool with foreign keys off) still migrates: keel's migrator, which runs
/// SQLite migrations with foreign keys off, refuses only rows a run itself
/// leaves dangling (unit tests in crates/migrations/src/migrator.rs), and
/// turns foreign keys back on afterwards.
#[test]
fn a_sqlite_database_with_dangling_rows_still_migrates() {
    let db = keel_tests::SqliteTestDatabase::create();
    let mut conn = db.migrated_connection();
    let mut migrator = Migrator::connect(&db.database_url()).expect("connect");
    migrator.revert(1).expect("revert the newest");
    conn.batch_execute(
        "PRAGMA foreign_keys = OFF;
         INSERT INTO posts (title, content, author_id) VALUES ('orphan', 'x', 999);
         PRAGMA foreign_keys = ON;",
    )
    .expect("write a dangling row behind the schema's back");

    assert_eq!(
        migrator.run_pending().expect("migrates all the same").len(),
        1
    );
    assert_eq!(posts::table.count().get_result::<i64>(&mut conn), Ok(1));
    // The migrator's connection has foreign keys on again: a run with
    // nothing pending checks nothing and changes nothing.
    assert!(migrator.run_pending().expect("nothing pending").is_empty());
}
