//! Bad input, everywhere, through the repository API: arbitrary strings
//! (unicode, NUL bytes, 1 MB, empty, SQL fragments) and arbitrary ids end in a
//! typed error that leaves the database as it was, or are stored and read back
//! byte for byte. Never a panic, never an untyped database error.

use keel_models::{NewPost, NewUser};
use keel_repo::prelude::{PostsExt as _, UsersExt as _};
use keel_repo::{DatabaseConfig, RepoError};
use keel_tests::TestDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,60}",
        Just(String::new()),
        Just("   ".to_owned()),
        Just("'; DROP TABLE users; --".to_owned()),
        Just("Robert'); DELETE FROM posts; --@example.com".to_owned()),
        Just("nul\0byte".to_owned()),
        Just("é".repeat(120)),
        Just("x".repeat(1_000_000)),
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}",
    ]
}

fn nasty_id() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(0),
        Just(-1),
        Just(i32::MIN),
        Just(i32::MAX),
        any::<i32>(),
        1..5i32
    ]
}

/// The outcome of one write, as the property sees it.
fn is_typed(error: &RepoError) -> bool {
    matches!(
        error,
        RepoError::Validation { .. }
            | RepoError::Conflict { .. }
            | RepoError::NotFound { .. }
            | RepoError::RelatedMissing { .. }
    )
}

/// The properties, over one connection pool (sync or async via `call`).
fn check_properties<Create, Read, ReadId, CreatePost, Count>(
    create: Create,
    read_by_id: ReadId,
    read_by_email: Read,
    create_post: CreatePost,
    count: Count,
) where
    Create: Fn(&NewUser) -> Result<keel_models::User, RepoError>,
    ReadId: Fn(i32) -> Result<keel_models::User, RepoError>,
    Read: Fn(&str) -> Result<keel_models::User, RepoError>,
    CreatePost: Fn(&NewPost) -> Result<keel_models::Post, RepoError>,
    Count: Fn() -> usize,
{
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        nasty_string(),
        nasty_string(),
        proptest::option::of(nasty_string()),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(email, full_name, first_name, is_active)| {
            let before = count();
            let user = NewUser {
                email,
                full_name,
                first_name,
                last_name: None,
                is_active,
            };
            match create(&user) {
                Ok(stored) => {
                    let read = read_by_id(stored.id).expect("a stored user reads back");
                    prop_assert_eq!(&read.email, &user.email, "byte for byte");
                    prop_assert_eq!(&read.full_name, &user.full_name);
                    prop_assert_eq!(&read.first_name, &user.first_name);
                    prop_assert_eq!(read_by_email(&user.email).expect("by email").id, stored.id);
                    prop_assert_eq!(count(), before + 1);
                }
                Err(error) => {
                    prop_assert!(
                        is_typed(&error),
                        "untyped error for {:?}: {error:?}",
                        user.email
                    );
                    prop_assert_eq!(count(), before, "a failed write changed the database");
                }
            }
            Ok(())
        })
        .expect("user property");

    runner
        .run(
            &(nasty_id(), nasty_string(), nasty_string()),
            |(author_id, title, content)| {
                let before = count();
                match create_post(&NewPost {
                    title,
                    content,
                    author_id,
                }) {
                    Ok(post) => prop_assert_eq!(post.author_id, author_id),
                    Err(error) => {
                        prop_assert!(is_typed(&error), "untyped error: {error:?}");
                        prop_assert_eq!(count(), before);
                    }
                }
                match read_by_id(author_id) {
                    Ok(user) => prop_assert_eq!(user.id, author_id),
                    Err(error) => prop_assert!(is_typed(&error), "untyped error: {error:?}"),
                }
                Ok(())
            },
        )
        .expect("id property");
}

/// Rows in every table: what must not change when a write fails.
fn row_count(sizes: keel_repo::TableSizes) -> usize {
    usize::try_from(sizes.users.rows + sizes.posts.rows + sizes.comments.rows).unwrap_or(usize::MAX)
}

fn config<D: TestDatabase>(fixture: &D) -> DatabaseConfig {
    fixture.migrate();
    keel_tests::config(fixture.database_url())
}

fn sync_properties<D: TestDatabase>(fixture: &D) {
    let db = keel_repo::sync::Database::connect(&config(fixture)).expect("pool");
    check_properties(
        |u| db.users().create(u),
        |id| db.users().get_by_id(id),
        |email| db.users().get_by_email(email),
        |p| db.posts().create(p),
        || row_count(db.users().table_sizes().expect("sizes")),
    );
}

fn async_properties<D: TestDatabase>(fixture: &D) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = runtime
        .block_on(keel_repo::asynchronous::AsyncDatabase::connect(&config(
            fixture,
        )))
        .expect("pool");
    check_properties(
        |u| runtime.block_on(db.users().create(u)),
        |id| runtime.block_on(db.users().get_by_id(id)),
        |email| runtime.block_on(db.users().get_by_email(email)),
        |p| runtime.block_on(db.posts().create(p)),
        || row_count(runtime.block_on(db.users().table_sizes()).expect("sizes")),
    );
}

#[test]
fn sync_sqlite() {
    sync_properties(&keel_tests::SqliteTestDatabase::create());
}

#[test]
fn sync_postgres() {
    let Some(fixture) = keel_tests::PgTestDatabase::create() else {
        return;
    };
    sync_properties(&fixture);
}

#[test]
fn async_sqlite() {
    async_properties(&keel_tests::SqliteTestDatabase::create());
}

#[test]
fn async_postgres() {
    let Some(fixture) = keel_tests::PgTestDatabase::create() else {
        return;
    };
    async_properties(&fixture);
}
