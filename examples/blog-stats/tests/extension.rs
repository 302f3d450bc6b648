//! The whole extension path, run as a service would run it: this crate's own
//! query, operation and repository on keel's pool, in a session and in a
//! transaction that rolls back; sync and async; SQLite and PostgreSQL (each
//! body runs once per backend). Scopes count the statements, and a strict
//! scope stops an N+1 loop over this crate's own query.

use keel_example_blog_stats::{AuthorPostCount, BlogStatsExt as _, Handover, posts_per_author};
use keel_models::{NewPost, NewUser};
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::prelude::*;
use keel_repo::sync::Database;
use keel_repo::{DatabaseConfig, QueryScope};
use keel_tests::TestDatabase;

/// Three users: the first with two posts, the second with one, the third
/// with none. Returns their ids.
fn seed(db: &Database) -> [i32; 3] {
    let ids = [1, 2, 3].map(|n| {
        let user = NewUser::new(format!("author{n}@example.com"), format!("Author {n}"));
        db.users().create(&user).expect("create a user").id
    });
    for (author_id, title) in [(ids[0], "one"), (ids[0], "two"), (ids[1], "three")] {
        let post = NewPost {
            title: title.into(),
            content: "…".into(),
            author_id,
        };
        db.posts().create(&post).expect("create a post");
    }
    ids
}

fn counts(pairs: &[(i32, i64)]) -> Vec<AuthorPostCount> {
    pairs
        .iter()
        .map(|&(author_id, posts)| AuthorPostCount { author_id, posts })
        .collect()
}

/// Why a transaction in these tests ends: a rollback carrying what it saw,
/// or keel's error.
#[derive(Debug)]
enum Abort {
    RolledBack(Handover),
    Repo(#[expect(dead_code, reason = "shown by Debug when a test fails")] RepoError),
}

impl From<RepoError> for Abort {
    fn from(error: RepoError) -> Self {
        Self::Repo(error)
    }
}

fn strict(threshold: u32) -> QueryScope {
    QueryScope::named("authors page")
        .strict(true)
        .repeat_threshold(threshold)
}

fn migrated_config(db: &impl TestDatabase) -> DatabaseConfig {
    let config = keel_tests::config(db.database_url());
    Database::connect(&config)
        .and_then(|d| d.run_migrations())
        .expect("migrate");
    config
}

keel_tests::backend_tests! {
    fn sync_mode_runs_the_services_own_query_and_operation(fixture) {
        let db = Database::connect(&migrated_config(fixture)).expect("pool");
        let [ada, bob, cyd] = seed(&db);

        // On the pool: the repository, and the same query through with_conn.
        let scope = QueryScope::named("stats");
        let stats = scope.run(|| db.blog_stats().posts_per_author()).expect("posts per author");
        assert_eq!(stats, counts(&[(ada, 2), (bob, 1)]));
        assert_eq!(scope.statements(), 1, "one GROUP BY, whatever the number of authors");
        let raw: Vec<(i32, i64)> =
            db.with_conn(async |conn| run!(conn, load(posts_per_author()))).expect("with_conn");
        assert_eq!(raw, [(ada, 2), (bob, 1)]);

        // In a session: the two-statement operation.
        let session = db.session().expect("session");
        let scope = QueryScope::named("hand over");
        let handover = scope.run(|| session.blog_stats().hand_over_posts(bob, cyd)).expect("hand over");
        assert_eq!(handover, Handover { moved: 1, now_owned: 1 });
        assert_eq!(scope.statements(), 2, "{:?}", scope.statement_log());
        drop(session);

        // In a transaction that rolls back: nothing it did stays.
        let outcome = db.transaction(|tx| {
            let handover = tx.blog_stats().hand_over_posts(ada, cyd)?;
            let inside = tx.blog_stats().posts_per_author()?;
            assert_eq!(inside, counts(&[(cyd, 3)]), "the transaction sees its own write");
            Err::<(), _>(Abort::RolledBack(handover))
        });
        assert!(matches!(outcome, Err(Abort::RolledBack(Handover { moved: 2, now_owned: 3 }))), "{outcome:?}");
        assert_eq!(db.blog_stats().posts_per_author().expect("after"), counts(&[(ada, 2), (cyd, 1)]));

        // Bad input: a typed error, and the database as it was.
        let missing = db.blog_stats().hand_over_posts(ada, 999_999);
        assert!(matches!(missing, Err(RepoError::RelatedMissing { .. })), "{missing:?}");
        assert_eq!(db.blog_stats().posts_per_author().expect("after"), counts(&[(ada, 2), (cyd, 1)]));

        // The N+1 the GROUP BY avoids: one count per author, caught in strict mode.
        let authors = [ada, bob, cyd, ada, bob];
        let looped = strict(3).run(|| {
            authors.iter().map(|&id| db.blog_stats().post_count_of(id)).collect::<Result<Vec<_>, _>>()
        });
        match looped {
            Err(RepoError::RepeatedStatement { count, scope, .. }) => {
                assert_eq!((count, scope.as_str()), (4, "authors page"));
            }
            other => panic!("strict mode let the loop through: {other:?}"),
        }
        let eager = strict(3).run(|| db.blog_stats().posts_per_author());
        assert_eq!(eager.expect("one statement passes"), counts(&[(ada, 2), (cyd, 1)]));
    }

    fn async_mode_runs_the_services_own_query_and_operation(fixture) {
        let config = migrated_config(fixture);
        let ids = seed(&Database::connect(&config).expect("sync pool for the fixtures"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async_path(config, ids));
    }
}

async fn async_path(config: DatabaseConfig, [ada, bob, cyd]: [i32; 3]) {
    let db = AsyncDatabase::connect(&config).await.expect("pool");

    let scope = QueryScope::named("stats");
    let stats = scope
        .run_async(db.blog_stats().posts_per_author())
        .await
        .expect("posts per author");
    assert_eq!(stats, counts(&[(ada, 2), (bob, 1)]));
    assert_eq!(scope.statements(), 1);
    let raw: Vec<(i32, i64)> = db
        .with_conn(async |conn| run!(conn, load(posts_per_author())))
        .await
        .expect("with_conn");
    assert_eq!(raw, [(ada, 2), (bob, 1)]);

    let session = db.session().await.expect("session");
    let scope = QueryScope::named("hand over");
    let handover = scope
        .run_async(session.blog_stats().hand_over_posts(bob, cyd))
        .await
        .expect("hand over");
    assert_eq!(
        handover,
        Handover {
            moved: 1,
            now_owned: 1
        }
    );
    assert_eq!(scope.statements(), 2, "{:?}", scope.statement_log());
    drop(session);

    let outcome = db
        .transaction(async |tx| {
            let handover = tx.blog_stats().hand_over_posts(ada, cyd).await?;
            let inside = tx.blog_stats().posts_per_author().await?;
            assert_eq!(
                inside,
                counts(&[(cyd, 3)]),
                "the transaction sees its own write"
            );
            Err::<(), _>(Abort::RolledBack(handover))
        })
        .await;
    assert!(
        matches!(
            outcome,
            Err(Abort::RolledBack(Handover {
                moved: 2,
                now_owned: 3
            }))
        ),
        "{outcome:?}"
    );
    assert_eq!(
        db.blog_stats().posts_per_author().await.expect("after"),
        counts(&[(ada, 2), (cyd, 1)])
    );

    let missing = db.blog_stats().hand_over_posts(ada, 999_999).await;
    assert!(
        matches!(missing, Err(RepoError::RelatedMissing { .. })),
        "{missing:?}"
    );
    assert_eq!(
        db.blog_stats().posts_per_author().await.expect("after"),
        counts(&[(ada, 2), (cyd, 1)])
    );

    let looped = strict(3)
        .run_async(async {
            for id in [ada, bob, cyd, ada, bob] {
                db.blog_stats().post_count_of(id).await?;
            }
            Ok(())
        })
        .await;
    match looped {
        Err(RepoError::RepeatedStatement { count, scope, .. }) => {
            assert_eq!((count, scope.as_str()), (4, "authors page"));
        }
        other => panic!("strict mode let the loop through: {other:?}"),
    }
    let eager = strict(3)
        .run_async(db.blog_stats().posts_per_author())
        .await;
    assert_eq!(
        eager.expect("one statement passes"),
        counts(&[(ada, 2), (cyd, 1)])
    );
}

/// A service's unit test on a throwaway database: one call, no server, no
/// file.
#[test]
fn a_throwaway_in_memory_database_serves_the_services_repository() {
    let db = Database::in_memory().expect("fresh migrated database");
    let [ada, bob, _] = seed(&db);
    let stats = keel_repo::assert_statements!(== 1, { db.blog_stats().posts_per_author() });
    assert_eq!(stats.expect("stats"), counts(&[(ada, 2), (bob, 1)]));
}
