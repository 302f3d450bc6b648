//! keel-repo's promises, checked in every mode on every backend: each test
//! body runs four times (sync and async, PostgreSQL and SQLite). In a body,
//! `run!(call)` is the call in sync mode and `call.await` in async mode.

use diesel::connection::SimpleConnection;
use keel_models::{NewComment, NewPost, NewUser, UserChangeset};
use keel_repo::RepoError;
use keel_repo::prelude::{CommentsExt as _, PostsExt as _, UsersExt as _};
use keel_tests::TestDatabase;

fn new_user(n: usize) -> NewUser {
    NewUser {
        email: format!("user{n}@example.com"),
        full_name: format!("First{n} Last{n}"),
        first_name: Some(format!("First{n}")),
        last_name: Some(format!("Last{}", n % 7)),
        is_active: !n.is_multiple_of(10),
    }
}

fn new_post(author_id: i32, title: &str) -> NewPost {
    NewPost {
        title: title.into(),
        content: format!("{title} content"),
        author_id,
    }
}

/// Gives every user `posts` posts, and every post `comments` comments by its
/// author, in a few set-based statements (fixtures, not the code under test).
fn seed_posts_and_comments<D: TestDatabase>(fixture: &D, posts: usize, comments: usize) {
    let mut conn = fixture.connect();
    for _ in 0..posts {
        conn.batch_execute(
            "INSERT INTO posts (title, content, author_id) \
             SELECT 'Post by ' || id, 'Some content', id FROM users",
        )
        .expect("seed posts");
    }
    for _ in 0..comments {
        conn.batch_execute(
            "INSERT INTO comments (body, post_id, author_id) \
             SELECT 'Comment on ' || id, id, author_id FROM posts",
        )
        .expect("seed comments");
    }
}

use keel_tests::{repo_config as config, repo_tests, strict_scope};

repo_tests! {
    fn users_are_created_and_found_by_id_and_email(db, fixture) {
        let created = run!(db.users().create(&new_user(1))).expect("create");
        assert_eq!(created.email, "user1@example.com");
        assert_eq!(run!(db.users().get_by_id(created.id)).expect("by id"), created);
        assert_eq!(run!(db.users().get_by_email("user1@example.com")).expect("by email"), created);
        assert!(matches!(
            run!(db.users().get_by_id(created.id + 1)),
            Err(RepoError::NotFound { entity: "user", .. })
        ));
        assert!(matches!(
            run!(db.users().get_by_email("nobody@example.com")),
            Err(RepoError::NotFound { entity: "user", .. })
        ));
    }

    fn a_duplicate_email_is_a_conflict_and_changes_nothing(db, fixture) {
        let first = run!(db.users().create(&new_user(1))).expect("create");
        let mut twin = new_user(2);
        twin.email = first.email.clone();
        match run!(db.users().create(&twin)) {
            Err(RepoError::Conflict { constraint }) => assert_eq!(constraint, "ix_users_email"),
            other => panic!("expected Conflict, got {other:?}"),
        }
        let page = run!(db.users().page(None, 10)).expect("page");
        assert_eq!(page.items, vec![first]);
    }

    fn bad_input_is_a_validation_error_before_any_sql(db, fixture) {
        let before = db.statements().count();
        let cases: Vec<(NewUser, &str)> = vec![
            (NewUser { email: "not-an-email".into(), ..new_user(1) }, "email"),
            (NewUser { email: "".into(), ..new_user(1) }, "email"),
            (NewUser { full_name: "x".repeat(101), ..new_user(1) }, "full_name"),
            (NewUser { full_name: "  ".into(), ..new_user(1) }, "full_name"),
            (NewUser { first_name: Some("nul\0byte".into()), ..new_user(1) }, "first_name"),
            (NewUser { last_name: Some("é".repeat(51)), ..new_user(1) }, "last_name"),
        ];
        for (user, field) in cases {
            match run!(db.users().create(&user)) {
                Err(RepoError::Validation { field: f, .. }) => assert_eq!(f, field, "{user:?}"),
                other => panic!("expected Validation of {field}, got {other:?}"),
            }
        }
        assert!(matches!(run!(db.users().get_by_id(0)), Err(RepoError::Validation { field: "id", .. })));
        assert!(matches!(run!(db.users().page(None, 0)), Err(RepoError::Validation { field: "limit", .. })));
        assert_eq!(db.statements().count(), before, "validation must reject before SQL");
        assert!(run!(db.users().page(None, 10)).expect("page").items.is_empty());
    }

    fn update_applies_a_changeset_and_reports_missing_rows(db, fixture) {
        let user = run!(db.users().create(&new_user(1))).expect("create");
        let changes = UserChangeset {
            full_name: Some("Renamed".into()),
            first_name: Some(None),
            is_active: Some(false),
            ..Default::default()
        };
        let updated = run!(db.users().update(user.id, &changes)).expect("update");
        assert_eq!(updated.full_name, "Renamed");
        assert_eq!(updated.first_name, None);
        assert!(!updated.is_active);
        assert_eq!(updated.email, user.email);
        assert_eq!(run!(db.users().update(user.id, &UserChangeset::default())).expect("no-op"), updated);
        assert!(matches!(
            run!(db.users().update(user.id + 100, &changes)),
            Err(RepoError::NotFound { .. })
        ));
    }

    fn deleting_a_user_cascades_to_posts_and_comments(db, fixture) {
        let alice = run!(db.users().create(&new_user(1))).expect("alice");
        let bob = run!(db.users().create(&new_user(2))).expect("bob");
        let post = run!(db.posts().create(&new_post(alice.id, "hello"))).expect("post");
        let bobs_post = run!(db.posts().create(&new_post(bob.id, "bob's"))).expect("post");
        run!(db.comments().create(&NewComment { body: "hi".into(), post_id: post.id, author_id: bob.id })).expect("comment");
        run!(db.comments().create(&NewComment { body: "yo".into(), post_id: bobs_post.id, author_id: alice.id })).expect("comment");

        run!(db.users().delete(alice.id)).expect("delete");
        assert!(matches!(run!(db.posts().get_by_id(post.id)), Err(RepoError::NotFound { entity: "post", .. })));
        assert!(run!(db.comments().by_author(bob.id)).expect("bob's comments").is_empty());
        assert!(run!(db.comments().by_author(alice.id)).expect("alice's comments").is_empty());
        assert_eq!(run!(db.posts().by_author(bob.id)).expect("bob's posts"), vec![bobs_post]);
        assert!(matches!(run!(db.users().delete(alice.id)), Err(RepoError::NotFound { .. })));
    }

    fn a_post_for_a_missing_author_is_related_missing(db, fixture) {
        match run!(db.posts().create(&new_post(4242, "orphan"))) {
            Err(RepoError::RelatedMissing { field }) => assert!(field.contains("author_id"), "{field}"),
            other => panic!("expected RelatedMissing, got {other:?}"),
        }
        assert!(matches!(
            run!(db.comments().create(&NewComment { body: "x".into(), post_id: 77, author_id: 1 })),
            Err(RepoError::RelatedMissing { .. })
        ));
    }

    fn one_user_with_posts_and_comments_is_at_most_three_statements(db, fixture) {
        let users: Vec<NewUser> = (1..=3).map(new_user).collect();
        let created = run!(db.users().create_many(&users)).expect("users");
        seed_posts_and_comments(&fixture, 2, 2);
        let lonely = run!(db.users().create(&new_user(4))).expect("a user without posts");

        let before = db.statements().count();
        let loaded = run!(db.users().get_with_posts_and_comments(created[1].id)).expect("by id");
        assert_eq!(db.statements().count() - before, 3, "user, posts, comments");
        assert_eq!(loaded.user, created[1]);
        assert_eq!(loaded.posts.len(), 2);
        for post in &loaded.posts {
            assert_eq!(post.post.author_id, created[1].id);
            assert_eq!(post.comments.len(), 2, "only this post's comments");
            assert!(post.comments.iter().all(|c| c.post_id == post.post.id));
        }
        // The same rows as the three levels loaded one by one.
        let posts = run!(db.posts().by_author(created[1].id)).expect("posts");
        assert_eq!(loaded.posts.iter().map(|p| p.post.clone()).collect::<Vec<_>>(), posts);

        let before = db.statements().count();
        let alone = run!(db.users().get_with_posts_and_comments(lonely.id)).expect("no posts");
        assert_eq!((alone.user.id, alone.posts.len()), (lonely.id, 0));
        // Sent together on tokio-postgres: 3; one by one elsewhere, where
        // the comments are not asked for when there is no post: 2.
        let sent = db.statements().count() - before;
        let pipelined = run!(db.with_conn(async |conn| Ok(conn.pipeline().is_some()))).expect("conn");
        assert_eq!(sent, if pipelined { 3 } else { 2 }, "pipelined: {pipelined}");

        assert!(matches!(
            run!(db.users().get_with_posts_and_comments(4242)),
            Err(RepoError::NotFound { entity: "user", .. })
        ));

        // The user and their posts: the same rows, sent together on
        // tokio-postgres, where a missing user's posts are asked for too.
        let before = db.statements().count();
        let with_posts = run!(db.users().get_with_posts(created[1].id)).expect("by id");
        assert_eq!(db.statements().count() - before, 2, "user, posts");
        assert_eq!((with_posts.user, with_posts.posts), (created[1].clone(), posts));
        let alone = run!(db.users().get_with_posts(lonely.id)).expect("no posts");
        assert_eq!((alone.user.id, alone.posts.len()), (lonely.id, 0));
        let before = db.statements().count();
        assert!(matches!(
            run!(db.users().get_with_posts(4242)),
            Err(RepoError::NotFound { entity: "user", .. })
        ));
        assert_eq!(db.statements().count() - before, if pipelined { 2 } else { 1 }, "pipelined: {pipelined}");
    }

    fn eager_loads_run_one_statement_per_level_for_1_and_1000_users(db, fixture) {
        let users: Vec<NewUser> = (1..=1000).map(|n| NewUser { is_active: true, ..new_user(n) }).collect();
        run!(db.users().create_many(&users)).expect("users");
        seed_posts_and_comments(&fixture, 2, 1);

        for limit in [1_i64, 1000] {
            let before = db.statements().count();
            let loaded = run!(db.users().users_with_posts_and_comments(limit)).expect("eager load");
            assert_eq!(db.statements().count() - before, 3, "3 levels at limit {limit}");
            assert_eq!(loaded.len() as i64, limit);
            for entry in &loaded {
                assert_eq!(entry.posts.len(), 2);
                for post in &entry.posts {
                    assert_eq!(post.post.author_id, entry.user.id);
                    assert_eq!(post.comments.len(), 1);
                    assert_eq!(post.comments[0].post_id, post.post.id);
                }
            }

            let before = db.statements().count();
            let loaded = run!(db.users().users_with_posts(limit)).expect("eager load");
            assert_eq!(db.statements().count() - before, 2, "2 levels at limit {limit}");
            assert_eq!(loaded.iter().map(|u| u.posts.len()).sum::<usize>() as i64, 2 * limit);
        }

        let before = db.statements().count();
        let one = run!(db.users().get_with_posts_and_comments(1)).expect("by id");
        assert_eq!(db.statements().count() - before, 3);
        assert_eq!((one.user.id, one.posts.len(), one.posts[0].comments.len()), (1, 2, 1));
        let before = db.statements().count();
        assert_eq!(run!(db.users().get_with_posts(2)).expect("by id").posts.len(), 2);
        assert_eq!(db.statements().count() - before, 2);

        let first_post = run!(db.posts().by_author(1)).expect("posts")[0].clone();
        let before = db.statements().count();
        let full = run!(db.posts().post_with_author_and_comments(first_post.id)).expect("post");
        assert_eq!(db.statements().count() - before, 2);
        assert_eq!(full.author.id, 1);
        assert_eq!(full.comments.len(), 1);
        assert_eq!(full.comments, run!(db.comments().for_post(first_post.id, None, 100)).expect("comments").items);
        // Sent together on tokio-postgres, where a missing post's comments
        // are asked for too.
        let pipelined = run!(db.with_conn(async |conn| Ok(conn.pipeline().is_some()))).expect("conn");
        let before = db.statements().count();
        assert!(matches!(
            run!(db.posts().post_with_author_and_comments(4242)),
            Err(RepoError::NotFound { entity: "post", .. })
        ));
        assert_eq!(db.statements().count() - before, if pipelined { 2 } else { 1 }, "pipelined: {pipelined}");
        let before = db.statements().count();
        let (post, author) = run!(db.posts().get_with_author(first_post.id)).expect("joined");
        assert_eq!(db.statements().count() - before, 1, "the joined form is one statement");
        assert_eq!((post, author.id), (first_post, 1));
    }

    fn create_many_inserts_40000_users_in_one_call(db, fixture) {
        let users: Vec<NewUser> = (1..=40_000).map(new_user).collect();
        let before = db.statements().count();
        let created = run!(db.users().create_many(&users)).expect("bulk insert");
        let statements = db.statements().count() - before;
        assert_eq!(created.len(), 40_000);
        assert!((3..=10).contains(&statements), "{statements} statements: chunked, not one per row");
        assert_eq!(created[39_999].email, "user40000@example.com");
        let page = run!(db.users().page(Some(created[39_994].id), 10)).expect("tail");
        assert_eq!(page.items.len(), 5);
        assert_eq!(page.next, None);
    }

    fn posts_and_comments_are_bulk_inserted(db, fixture) {
        let users = run!(db.users().create_many(&(1..=3).map(new_user).collect::<Vec<_>>())).expect("users");
        let posts: Vec<NewPost> = (0..30).map(|n| new_post(users[n % 3].id, &format!("p{n}"))).collect();
        let before = db.statements().count();
        let created = run!(db.posts().create_many(&posts)).expect("posts");
        assert_eq!(db.statements().count() - before, 1);
        assert_eq!(created.len(), 30);
        let comments: Vec<NewComment> = created
            .iter()
            .map(|p| NewComment { body: format!("on {}", p.id), post_id: p.id, author_id: users[0].id })
            .collect();
        assert_eq!(run!(db.comments().create_many(&comments)).expect("comments").len(), 30);
        let mut orphan = comments[0].clone();
        orphan.post_id = 9999;
        assert!(matches!(run!(db.comments().create_many(&[orphan])), Err(RepoError::RelatedMissing { .. })));
        assert_eq!(run!(db.comments().by_author(users[0].id)).expect("comments").len(), 30);
    }

    fn a_lookup_per_row_is_caught_as_n_plus_one_and_the_eager_load_is_not(db, fixture) {
        let users = run!(db.users().create_many(&(1..=20).map(new_user).collect::<Vec<_>>())).expect("users");
        seed_posts_and_comments(&fixture, 2, 1);

        let scope = strict_scope("posts per user in a loop");
        let looped: Result<(), RepoError> = in_scope!(scope, {
            for user in &users {
                run!(db.posts().by_author(user.id))?;
            }
            Ok(())
        });
        match looped {
            Err(RepoError::RepeatedStatement { statement, count, scope: name }) => {
                assert_eq!(count, 11, "caught on the first repeat past 10");
                assert!(statement.contains("posts") && statement.contains("author_id"), "{statement}");
                assert!(!statement.contains("binds"), "a shape, without bind values: {statement}");
                assert_eq!(name, "posts per user in a loop");
            }
            other => panic!("the N+1 was not caught: {other:?}"),
        }
        assert_eq!(scope.statements(), 11, "it stopped at the first call past the threshold");

        let scope = strict_scope("eager");
        let loaded = in_scope!(scope, run!(db.users().users_with_posts(1000))).expect("eager load passes");
        assert_eq!(loaded.len(), 18);
        assert_eq!(scope.repeated(), None);

        let lenient = keel_repo::QueryScope::named("lenient").strict(false);
        let looped: Result<(), RepoError> = in_scope!(lenient, {
            for user in &users {
                run!(db.posts().by_author(user.id))?;
            }
            Ok(())
        });
        assert!(looped.is_ok(), "outside strict mode it only warns");
        assert_eq!(lenient.repeated().map(|r| r.count), Some(11));
    }

    fn paging_loops_and_bulk_inserts_raise_no_alarm(db, fixture) {
        let scope = strict_scope("bulk and paging");
        let outcome: Result<usize, RepoError> = in_scope!(scope, {
            for chunk in 0..15 {
                let users: Vec<NewUser> = (1..=3).map(|n| new_user(chunk * 10 + n)).collect();
                run!(db.users().create_many(&users))?;
            }
            let mut after = None;
            let mut pages = 0;
            loop {
                let page = run!(db.users().page(after, 2))?;
                pages += 1;
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            Ok(pages)
        });
        assert_eq!(outcome.expect("no false alarm"), 23);
        assert_eq!(scope.repeated(), None);
    }

    fn eager_loaders_stay_within_budget_at_1000_users(db, fixture) {
        let users: Vec<NewUser> = (1..=1000).map(|n| NewUser { is_active: true, ..new_user(n) }).collect();
        run!(db.users().create_many(&users)).expect("users");
        seed_posts_and_comments(&fixture, 1, 1);
        let loaded = within_budget!(3, run!(db.users().users_with_posts_and_comments(1000)).expect("eager load"));
        assert_eq!(loaded.len(), 1000);
        within_budget!(2, run!(db.users().users_with_posts(1000)).expect("eager load"));
    }

    fn insert_many_loads_rows_without_reading_them_back(db, fixture) {
        let users: Vec<NewUser> = (1..=5000).map(new_user).collect();
        let before = db.statements().count();
        assert_eq!(run!(db.users().insert_many(&users)).expect("load"), 5000);
        assert!(db.statements().count() - before <= 2, "COPY or one multi-row INSERT per chunk");
        let sizes = run!(db.users().table_sizes()).expect("sizes");
        assert_eq!((sizes.users.rows, sizes.users.max_id), (5000, Some(5000)));
        assert_eq!(run!(db.users().get_by_email("user4321@example.com")).expect("loaded").id, 4321);

        let posts: Vec<NewPost> = (1..=100).map(|n| new_post(n, "p")).collect();
        assert_eq!(run!(db.posts().insert_many(&posts)).expect("posts"), 100);
        let comments: Vec<NewComment> = (1..=100).map(|n| NewComment { body: "c".into(), post_id: n, author_id: 1 }).collect();
        assert_eq!(run!(db.comments().insert_many(&comments)).expect("comments"), 100);

        let mut again = users[..3].to_vec();
        again[0].email = "fresh@example.com".into();
        assert!(matches!(run!(db.users().insert_many(&again)), Err(RepoError::Conflict { .. })));
        assert_eq!(run!(db.users().table_sizes()).expect("sizes").users.rows, 5000, "all or nothing");
        assert!(matches!(
            run!(db.posts().insert_many(&[new_post(99_999, "orphan")])),
            Err(RepoError::RelatedMissing { .. })
        ));
    }

    fn a_session_runs_its_calls_on_one_connection(db, fixture) {
        let session = run!(db.session()).expect("session");
        let user = run!(session.users().create(&new_user(1))).expect("create");
        assert_eq!(run!(session.users().get_by_id(user.id)).expect("read").id, user.id);
        run!(session.posts().create(&new_post(user.id, "p"))).expect("post");
        // Each call committed: other connections of the pool see the rows.
        assert_eq!(run!(db.posts().by_author(user.id)).expect("visible").len(), 1);
        assert!(matches!(run!(session.users().get_by_id(9999)), Err(RepoError::NotFound { .. })));
    }

    fn create_many_is_all_or_nothing(db, fixture) {
        run!(db.users().create(&new_user(5))).expect("existing");
        let users: Vec<NewUser> = (1..=10).map(new_user).collect(); // user5 again
        assert!(matches!(run!(db.users().create_many(&users)), Err(RepoError::Conflict { .. })));
        assert_eq!(run!(db.users().page(None, 100)).expect("page").items.len(), 1);
    }

    fn keyset_pages_neither_skip_nor_repeat_while_rows_are_inserted(db, fixture) {
        let created = run!(db.users().create_many(&(1..=25).map(new_user).collect::<Vec<_>>())).expect("users");
        let mut seen = Vec::new();
        let mut after = None;
        let mut inserted_meanwhile = 0;
        loop {
            let page = run!(db.users().page(after, 10)).expect("page");
            seen.extend(page.items.iter().map(|u| u.id));
            let Some(next) = page.next else { break };
            // Another client inserts between our pages.
            run!(db.users().create(&new_user(1000 + inserted_meanwhile))).expect("concurrent insert");
            inserted_meanwhile += 1;
            after = Some(next);
        }
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted, seen, "no row twice, ascending");
        assert!(inserted_meanwhile >= 2);
        assert_eq!(seen.len(), created.len() + inserted_meanwhile, "every row once, new ones included");
    }

    fn queries_filter_join_and_page(db, fixture) {
        let users = run!(db.users().create_many(&(1..=20).map(new_user).collect::<Vec<_>>())).expect("users");
        assert_eq!(run!(db.users().active_users(100)).expect("active").len(), 18);

        let by_name = run!(db.users().search_by_name("Last3", Some("First1"))).expect("search");
        let ids: Vec<i32> = by_name.iter().map(|u| u.id).collect();
        assert_eq!(ids, vec![10, 17], "Last3 and First1… : users 10 and 17, by first name");
        assert_eq!(run!(db.users().search_by_name("Last3", None)).expect("search").len(), 3);
        assert!(run!(db.users().search_by_name("Last3", Some("%"))).expect("escaped").is_empty());
        assert!(run!(db.users().search_by_name("Last3", Some("first1"))).expect("case").is_empty());

        let author = &users[2];
        for n in 0..3 {
            run!(db.posts().create(&new_post(author.id, &format!("p{n}")))).expect("post");
        }
        run!(db.posts().create(&new_post(users[3].id, "other"))).expect("post");
        let joined = run!(db.posts().by_author_email(&author.email)).expect("join");
        assert_eq!(joined.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(), ["p0", "p1", "p2"]);

        let post = &joined[0];
        for n in 0..5 {
            let who = users[n % 2].id;
            run!(db.comments().create(&NewComment { body: format!("c{n}"), post_id: post.id, author_id: who })).expect("comment");
        }
        let first = run!(db.comments().for_post(post.id, None, 2)).expect("page 1");
        let second = run!(db.comments().for_post(post.id, first.next, 2)).expect("page 2");
        let third = run!(db.comments().for_post(post.id, second.next, 2)).expect("page 3");
        let bodies: Vec<&str> = first.items.iter().chain(&second.items).chain(&third.items).map(|c| c.body.as_str()).collect();
        assert_eq!(bodies, ["c0", "c1", "c2", "c3", "c4"]);
        assert_eq!(third.next, None);

        let query = db.posts().comments_query(post.id).by_author(users[0].id).newest_first().limit(2);
        let refined = run!(db.posts().load_comments(&query)).expect("dynamic");
        assert_eq!(refined.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(), ["c4", "c2"]);
    }
}

mod scopes {
    use super::*;
    use keel_repo::QueryScope;
    use keel_repo::asynchronous::AsyncDatabase;
    use std::sync::Arc;

    /// 32 tasks at once, each in a scope of its own, each running a
    /// different number of statements: every scope counts its own only.
    async fn scopes_follow_their_task(db: AsyncDatabase) {
        let db = Arc::new(db);
        db.users().create(&new_user(1)).await.expect("user");
        let tasks: Vec<_> = (0..32_u64)
            .map(|task| {
                let db = db.clone();
                tokio::spawn(async move {
                    let scope = QueryScope::new();
                    scope
                        .run_async(async {
                            for _ in 0..=task % 5 {
                                db.users().get_by_id(1).await.expect("lookup");
                                tokio::task::yield_now().await;
                            }
                        })
                        .await;
                    (task, scope.statements())
                })
            })
            .collect();
        for task in tasks {
            let (n, statements) = task.await.expect("task");
            assert_eq!(statements, n % 5 + 1, "task {n}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_postgres() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        scopes_follow_their_task(
            AsyncDatabase::connect(&config(&fixture))
                .await
                .expect("pool"),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_sqlite() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        scopes_follow_their_task(
            AsyncDatabase::connect(&config(&fixture))
                .await
                .expect("pool"),
        )
        .await;
    }

    #[test]
    fn sync_scopes_follow_their_thread() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let db = keel_repo::sync::Database::connect(&config(&fixture)).expect("pool");
        db.users().create(&new_user(1)).expect("user");
        std::thread::scope(|threads| {
            for n in 0..8_u64 {
                let db = &db;
                threads.spawn(move || {
                    let scope = QueryScope::new();
                    scope.run(|| {
                        for _ in 0..=n {
                            db.users().get_by_id(1).expect("lookup");
                        }
                    });
                    assert_eq!(scope.statements(), n + 1);
                });
            }
        });
    }
}

#[test]
fn a_blown_budget_lists_the_statements_that_ran() {
    let fixture = keel_tests::SqliteTestDatabase::create();
    let db = keel_repo::sync::Database::connect(&config(&fixture)).expect("pool");
    db.users().create(&new_user(1)).expect("user");
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        keel_repo::assert_statements!(<= 1, {
            db.users().get_by_id(1).expect("lookup");
            db.users().get_by_email("user1@example.com").expect("lookup");
        })
    }))
    .expect_err("two statements blow a budget of one");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("expected <= 1 statements, 2 ran"),
        "{message}"
    );
    assert!(
        message.contains("1. SELECT") && message.contains("2. SELECT"),
        "{message}"
    );
    // Statements sent with `run!` are logged by shape (the guard knows them
    // by type and does not render them per statement): no bind values, which
    // may hold secrets.
    assert!(
        message.contains("`users`.`email` = ?") && !message.contains("user1@example.com"),
        "the log lists shapes: {message}"
    );
}

mod transactions {
    use super::*;
    use keel_repo::asynchronous::AsyncDatabase;
    use keel_repo::sync::Database;

    fn sync_commit_and_rollback(db: &Database) {
        let result: Result<(), RepoError> = db.transaction(|tx| {
            let user = tx.users().create(&new_user(1))?;
            tx.posts().create(&new_post(user.id, "in tx"))?;
            Err(RepoError::validation("test", "roll back"))
        });
        assert!(result.is_err());
        assert!(
            db.users().page(None, 10).expect("page").items.is_empty(),
            "rolled back"
        );

        let user = db
            .transaction(|tx| {
                let user = tx.users().create(&new_user(2))?;
                tx.posts().create(&new_post(user.id, "kept"))?;
                tx.posts()
                    .create_many(&[new_post(user.id, "bulk 1"), new_post(user.id, "bulk 2")])?;
                tx.users().insert_many(&[new_user(3)])?;
                Ok::<_, RepoError>(user)
            })
            .expect("commit");
        assert_eq!(
            db.posts().by_author(user.id).expect("posts").len(),
            3,
            "bulk inserts nest in the transaction"
        );
    }

    async fn async_commit_and_rollback(db: &AsyncDatabase) {
        let result: Result<(), RepoError> = db
            .transaction(async |tx| {
                let user = tx.users().create(&new_user(1)).await?;
                tx.posts().create(&new_post(user.id, "in tx")).await?;
                Err(RepoError::validation("test", "roll back"))
            })
            .await;
        assert!(result.is_err());
        assert!(
            db.users()
                .page(None, 10)
                .await
                .expect("page")
                .items
                .is_empty(),
            "rolled back"
        );

        let user = db
            .transaction(async |tx| {
                let user = tx.users().create(&new_user(2)).await?;
                tx.posts().create(&new_post(user.id, "kept")).await?;
                tx.posts()
                    .create_many(&[new_post(user.id, "bulk 1"), new_post(user.id, "bulk 2")])
                    .await?;
                tx.users().insert_many(&[new_user(3)]).await?;
                Ok::<_, RepoError>(user)
            })
            .await
            .expect("commit");
        assert_eq!(
            db.posts().by_author(user.id).await.expect("posts").len(),
            3,
            "bulk inserts nest in the transaction"
        );
    }

    /// What an axum handler does: a transaction inside a spawned task (the
    /// future must be `Send`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_runs_in_a_spawned_task() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let db = std::sync::Arc::new(
            AsyncDatabase::connect(&config(&fixture))
                .await
                .expect("pool"),
        );
        let task = tokio::spawn({
            let db = db.clone();
            async move {
                db.transaction(async |tx| {
                    let user = tx.users().create(&new_user(1)).await?;
                    tx.posts().create(&new_post(user.id, "spawned")).await
                })
                .await
            }
        });
        let post = task.await.expect("the task ran").expect("committed");
        assert_eq!(
            db.posts().get_by_id(post.id).await.expect("stored").title,
            "spawned"
        );
        let session_task = tokio::spawn({
            let db = db.clone();
            async move {
                let session = db.session().await?;
                session.users().get_by_id(1).await
            }
        });
        assert_eq!(
            session_task.await.expect("the task ran").expect("read").id,
            1
        );
    }

    #[test]
    fn sync_postgres() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        sync_commit_and_rollback(&Database::connect(&config(&fixture)).expect("pool"));
    }

    #[test]
    fn sync_sqlite() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        sync_commit_and_rollback(&Database::connect(&config(&fixture)).expect("pool"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_postgres() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        async_commit_and_rollback(
            &AsyncDatabase::connect(&config(&fixture))
                .await
                .expect("pool"),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_sqlite() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        async_commit_and_rollback(
            &AsyncDatabase::connect(&config(&fixture))
                .await
                .expect("pool"),
        )
        .await;
    }

    /// On a current-thread runtime (where `block_in_place` is not allowed)
    /// async SQLite still works: its calls run directly on the thread.
    #[tokio::test(flavor = "current_thread")]
    async fn async_sqlite_on_a_current_thread_runtime() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        async_commit_and_rollback(
            &AsyncDatabase::connect(&config(&fixture))
                .await
                .expect("pool"),
        )
        .await;
    }
}

/// `warm_up` opens the pool's connections before the first request needs them.
mod warm_up {
    use super::*;
    use diesel::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        connections: i64,
    }

    fn connections(fixture: &keel_tests::PgTestDatabase) -> i64 {
        let count: Count = diesel::sql_query(
            "SELECT count(*) AS connections FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .get_result(&mut fixture.connect())
        .expect("pg_stat_activity");
        count.connections
    }

    #[test]
    fn sync_pool_opens_its_connections() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        let db = keel_repo::sync::Database::connect(&config(&fixture)).expect("pool");
        db.warm_up(4).expect("warm up");
        assert!(connections(&fixture) >= 4, "{}", connections(&fixture));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_pool_opens_its_connections() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        let db = keel_repo::asynchronous::AsyncDatabase::connect(&config(&fixture))
            .await
            .expect("pool");
        db.warm_up(4).await.expect("warm up");
        assert!(connections(&fixture) >= 4, "{}", connections(&fixture));
        db.warm_up(100).await.expect("bounded by the pool size");
    }
}

/// Loads on PostgreSQL go in with one `COPY` per table however many rows, in
/// async mode too: on the pool through the blocking lane, and in
/// `run_blocking`. Inside an async transaction they share its connection,
/// so they are multi-row INSERTs, one per chunk of 65,535 binds.
mod copy_loads {
    use super::*;
    use keel_repo::asynchronous::AsyncDatabase;

    /// One more user than one 5-column INSERT can carry on PostgreSQL.
    const ROWS: usize = 65_535 / 5 + 1;

    fn users(range: std::ops::RangeInclusive<usize>) -> Vec<NewUser> {
        range.map(new_user).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_insert_many_on_postgres_is_one_copy_on_the_pool_and_chunks_in_a_transaction() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        let db = AsyncDatabase::connect(&config(&fixture))
            .await
            .expect("pool");

        let before = db.statements().count();
        assert_eq!(
            db.users()
                .insert_many(&users(1..=ROWS))
                .await
                .expect("load"),
            ROWS
        );
        assert_eq!(db.statements().count() - before, 1, "one COPY");

        let more = users(ROWS + 1..=2 * ROWS);
        let before = db.statements().count();
        let loaded = db
            .transaction(async |tx| tx.users().insert_many(&more).await)
            .await
            .expect("load in a transaction");
        assert_eq!(loaded, ROWS);
        assert_eq!(db.statements().count() - before, 2, "two multi-row INSERTs");

        let sizes = db.users().table_sizes().await.expect("sizes");
        assert_eq!(sizes.users.rows, 2 * ROWS as i64);
        // A failed COPY leaves nothing: the duplicate is the last row.
        let mut again = users(2 * ROWS + 1..=2 * ROWS + 100);
        again.push(new_user(1));
        assert!(matches!(
            db.users().insert_many(&again).await,
            Err(RepoError::Conflict { .. })
        ));
        assert_eq!(
            db.users().table_sizes().await.expect("sizes").users.rows,
            2 * ROWS as i64
        );
    }

    /// A two-table load in one sync transaction on a blocking thread: all of
    /// it or none of it, counted on the async pool's counter.
    async fn run_blocking_loads_tables_in_one_transaction(db: &AsyncDatabase) {
        // Fresh tables: the users get ids 1..=500.
        let posts: Vec<NewPost> = (1..=500).map(|n| new_post(n, "p")).collect();
        let first_users = users(1..=500);
        let before = db.statements().count();
        let loaded = db
            .run_blocking(move |db| {
                db.transaction(|tx| {
                    Ok::<_, RepoError>(
                        tx.users().insert_many(&first_users)? + tx.posts().insert_many(&posts)?,
                    )
                })
            })
            .await
            .expect("load");
        assert_eq!(loaded, 1000);
        // A COPY per table on PostgreSQL, one multi-row INSERT per table on SQLite.
        assert_eq!(
            db.statements().count() - before,
            2,
            "one statement per table"
        );

        let (more_users, orphan_posts) = (
            users(501..=600),
            vec![new_post(1, "fine"), new_post(99_999, "orphan")],
        );
        let failed = db
            .run_blocking(move |db| {
                db.transaction(|tx| {
                    tx.users().insert_many(&more_users)?;
                    tx.posts().insert_many(&orphan_posts)
                })
            })
            .await;
        assert!(
            matches!(failed, Err(RepoError::RelatedMissing { .. })),
            "{failed:?}"
        );
        let sizes = db.users().table_sizes().await.expect("sizes");
        assert_eq!(
            (sizes.users.rows, sizes.posts.rows),
            (500, 500),
            "the failed load left nothing"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_blocking_on_postgres() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        let db = AsyncDatabase::connect(&config(&fixture))
            .await
            .expect("pool");
        run_blocking_loads_tables_in_one_transaction(&db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_blocking_on_sqlite() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let db = AsyncDatabase::connect(&config(&fixture))
            .await
            .expect("pool");
        run_blocking_loads_tables_in_one_transaction(&db).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_blocking_refuses_an_in_memory_sqlite_database() {
        let url = keel_repo::DatabaseUrl::parse(":memory:").expect("url");
        let db = AsyncDatabase::connect(&keel_tests::config(url))
            .await
            .expect("pool");
        let result = db.run_blocking(|db| db.users().page(None, 1)).await;
        assert!(
            matches!(&result, Err(RepoError::Connection(m)) if m.contains("in-memory")),
            "{result:?}"
        );
    }
}

/// With both pools built, `DatabaseConfig::pool` chooses, and the pool
/// chosen is the one serving: deadpool counts a caller waiting for the only
/// connection, bb8 never counts waiters.
#[cfg(feature = "bb8")]
mod both_pools_built {
    use super::*;
    use keel_repo::asynchronous::AsyncDatabase;
    use std::sync::Arc;

    /// Callers waiting while the one connection is held in a session.
    async fn waiting_while_held(pool: keel_repo::PoolKind) -> u64 {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let mut config = config(&fixture);
        config.pool = pool;
        config.pool_size = 1;
        let db = Arc::new(AsyncDatabase::connect(&config).await.expect("pool"));
        let user = db.users().create(&new_user(0)).await.expect("create");
        let session = db.session().await.expect("session");
        let waiter = tokio::spawn({
            let db = db.clone();
            async move { db.users().get_by_id(user.id).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let waiting = db.pool_status().waiting;
        drop(session);
        let found = waiter.await.expect("task").expect("the waiter is served");
        assert_eq!(found, user);
        waiting
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deadpool_serves_when_chosen() {
        assert_eq!(waiting_while_held(keel_repo::PoolKind::Deadpool).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bb8_serves_when_chosen() {
        assert_eq!(waiting_while_held(keel_repo::PoolKind::Bb8).await, 0);
    }
}

/// `in_memory()`: a fresh, migrated database in one call, the same one for
/// every call on the pool, and a new one for each call to `in_memory()`.
mod in_memory {
    use super::*;
    use keel_repo::asynchronous::AsyncDatabase;
    use keel_repo::sync::Database;

    #[test]
    fn sync_pool_session_and_transaction_see_one_migrated_database() {
        let db = Database::in_memory().expect("in-memory database");
        assert!(
            db.run_migrations().expect("again").is_empty(),
            "already migrated"
        );
        let user = db.users().create(&new_user(1)).expect("create");
        let session = db.session().expect("session");
        assert_eq!(
            session
                .users()
                .get_by_id(user.id)
                .expect("seen by the session"),
            user
        );
        drop(session);
        let post = db
            .transaction(|tx| tx.posts().create(&new_post(user.id, "hello")))
            .expect("a transaction on the same database");
        // Foreign keys are on: deleting the user takes the post.
        db.users().delete(user.id).expect("delete");
        assert!(matches!(
            db.posts().get_by_id(post.id),
            Err(RepoError::NotFound { .. })
        ));

        let other = Database::in_memory().expect("a second one");
        assert_eq!(
            other.users().table_sizes().expect("sizes").users.rows,
            0,
            "each call is a new database"
        );
        assert_eq!(db.users().table_sizes().expect("sizes").users.rows, 0);
        other
            .users()
            .create(&new_user(1))
            .expect("same email, other database");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_pool_session_and_transaction_see_one_migrated_database() {
        let db = AsyncDatabase::in_memory()
            .await
            .expect("in-memory database");
        assert!(
            db.run_migrations().await.expect("again").is_empty(),
            "already migrated"
        );
        let user = db.users().create(&new_user(1)).await.expect("create");
        let session = db.session().await.expect("session");
        assert_eq!(
            session
                .users()
                .get_by_id(user.id)
                .await
                .expect("seen by the session"),
            user
        );
        drop(session);
        let post = db
            .transaction(async |tx| tx.posts().create(&new_post(user.id, "hello")).await)
            .await
            .expect("a transaction on the same database");
        assert_eq!(
            db.posts().get_by_id(post.id).await.expect("committed"),
            post
        );

        let other = AsyncDatabase::in_memory().await.expect("a second one");
        assert!(matches!(
            other.users().get_by_id(user.id).await,
            Err(RepoError::NotFound { .. })
        ));
    }
}
