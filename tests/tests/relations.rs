//! The relationship shapes past one-to-many, in both modes on both backends:
//! posts ↔ tags (many-to-many through `post_tags`), comment → replies
//! (self-referential, loaded as a tree by one `WITH RECURSIVE` statement),
//! and each relation from both ends. Statement counts are exact, at 1 row
//! and at 1,000.
//!
//! Rows are written with plain SQL on the fixture's own connection: the
//! repository calls under test run in a strict scope, where a loop of
//! inserts would (rightly) look like an N+1.

use diesel::connection::SimpleConnection;
use keel_models::NewComment;
use keel_repo::RepoError;
use keel_repo::prelude::{CommentsExt as _, PostsExt as _, TagsExt as _, UsersExt as _};
use keel_tests::{TestDatabase, repo_tests};

/// Runs `sql` on a connection of the fixture's own.
fn seed<D: TestDatabase>(fixture: &D, sql: &str) {
    fixture
        .connect()
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// `count` posts by user `author_id`, titled `prefix1`, `prefix2`, …: one
/// statement (a recursive CTE counts, on both backends).
fn posts_sql(author_id: i32, count: usize, prefix: &str) -> String {
    format!(
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         INSERT INTO posts (title, content, author_id) \
         SELECT '{prefix}' || i, 'content', {author_id} FROM n;"
    )
}

/// `count` users, `user1@example.com`, …, ids 1 to `count` on a fresh database.
fn users_sql(count: usize) -> String {
    format!(
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         INSERT INTO users (email, full_name) SELECT 'user' || i || '@example.com', 'User ' || i FROM n;"
    )
}

fn comment(post_id: i32, author_id: i32, body: &str) -> NewComment {
    NewComment {
        body: body.into(),
        post_id,
        author_id,
    }
}

repo_tests! {
    fn posts_with_their_tags_take_2_statements_for_1_and_1000_posts(db, fixture) {
        seed(&fixture, &users_sql(2));
        seed(&fixture, &posts_sql(1, 1000, "many"));
        seed(&fixture, &posts_sql(2, 1, "one"));
        seed(
            &fixture,
            "INSERT INTO tags (name) VALUES ('rust'), ('sql'), ('web');
             INSERT INTO post_tags (post_id, tag_id)
                 SELECT posts.id, tags.id FROM posts, tags
                 WHERE (posts.author_id = 1 AND tags.name = 'rust')
                    OR (posts.author_id = 1 AND tags.name = 'sql' AND posts.id % 2 = 0)
                    OR (posts.author_id = 2 AND tags.name = 'web');",
        );
        for (author, posts) in [(2, 1), (1, 1000)] {
            let before = db.statements().count();
            let loaded = run!(db.posts().by_author_with_tags(author)).expect("posts with tags");
            assert_eq!(db.statements().count() - before, 2, "2 statements for {posts} posts");
            assert_eq!(loaded.len(), posts);
            for entry in &loaded {
                let names: Vec<&str> = entry.tags.iter().map(|t| t.name.as_str()).collect();
                let expected: &[&str] = match (author, entry.post.id % 2) {
                    (2, _) => &["web"],
                    (_, 0) => &["rust", "sql"],
                    _ => &["rust"],
                };
                assert_eq!(names, expected, "post {}", entry.post.id);
            }
        }
        let before = db.statements().count();
        let one = run!(db.posts().get_with_tags(1001)).expect("one post with tags");
        assert_eq!(db.statements().count() - before, 2);
        assert_eq!(one.tags.len(), 1);
        assert!(matches!(
            run!(db.posts().get_with_tags(5000)),
            Err(RepoError::NotFound { entity: "post", .. })
        ));
    }

    fn tags_with_their_posts_take_2_statements_whatever_the_count(db, fixture) {
        seed(&fixture, &users_sql(1));
        seed(&fixture, &posts_sql(1, 1000, "p"));
        seed(
            &fixture,
            "INSERT INTO tags (name) VALUES ('all'), ('empty'), ('first');
             INSERT INTO post_tags (post_id, tag_id)
                 SELECT posts.id, tags.id FROM posts, tags
                 WHERE tags.name = 'all' OR (tags.name = 'first' AND posts.id = 1);",
        );
        let before = db.statements().count();
        let loaded = run!(db.tags().tags_with_posts(10)).expect("tags with posts");
        assert_eq!(db.statements().count() - before, 2);
        let counts: Vec<(&str, usize)> =
            loaded.iter().map(|t| (t.tag.name.as_str(), t.posts.len())).collect();
        // An unloaded relation cannot pass for an empty one: `empty` is here,
        // loaded, with no posts.
        assert_eq!(counts, [("all", 1000), ("empty", 0), ("first", 1)]);
        assert!(loaded[0].posts.windows(2).all(|w| w[0].id < w[1].id));

        let before = db.statements().count();
        let first = run!(db.tags().tags_with_posts(1)).expect("one tag");
        assert_eq!(db.statements().count() - before, 2);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].posts.len(), 1000);
    }

    fn users_with_posts_comments_and_tags_take_4_statements_for_1_and_1000_users(db, fixture) {
        seed(&fixture, &users_sql(1000));
        seed(
            &fixture,
            "INSERT INTO posts (title, content, author_id) SELECT 'Post by ' || id, 'c', id FROM users;
             INSERT INTO comments (body, post_id, author_id) SELECT 'On ' || id, id, author_id FROM posts;
             INSERT INTO tags (name) VALUES ('even'), ('odd');
             INSERT INTO post_tags (post_id, tag_id)
                 SELECT posts.id, tags.id FROM posts, tags
                 WHERE (posts.id % 2 = 0 AND tags.name = 'even') OR (posts.id % 2 = 1 AND tags.name = 'odd');",
        );
        for limit in [1_i64, 1000] {
            let before = db.statements().count();
            let loaded = run!(db.users().users_with_posts_comments_and_tags(limit)).expect("load");
            assert_eq!(db.statements().count() - before, 4, "4 levels at limit {limit}");
            assert_eq!(loaded.len() as i64, limit);
            for user in &loaded {
                assert_eq!(user.posts.len(), 1);
                let post = &user.posts[0];
                assert_eq!(post.post.author_id, user.user.id);
                assert_eq!(post.comments.len(), 1);
                assert_eq!(post.comments[0].post_id, post.post.id);
                let parity = if post.post.id % 2 == 0 { "even" } else { "odd" };
                assert_eq!(post.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), [parity]);
            }
        }
        let before = db.statements().count();
        let one = run!(db.users().get_with_posts_and_tags(7)).expect("one user");
        assert_eq!(db.statements().count() - before, 3);
        assert_eq!(one.posts[0].tags[0].name, "odd");
        let before = db.statements().count();
        let one = run!(db.users().get_with_posts_comments_and_tags(8)).expect("one user");
        assert_eq!(db.statements().count() - before, 4);
        assert_eq!((one.posts[0].comments.len(), one.posts[0].tags[0].name.as_str()), (1, "even"));
    }

    fn a_thread_is_one_statement_for_1_and_1000_comments(db, fixture) {
        seed(&fixture, &users_sql(1));
        seed(&fixture, &posts_sql(1, 2, "p"));
        // Post 1: one comment. Post 2: 1,000, in 40 chains of 25 replies
        // (comment k answers k - 1 unless it starts a chain).
        seed(
            &fixture,
            "INSERT INTO comments (body, post_id, author_id) VALUES ('alone', 1, 1);
             WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO comments (body, post_id, author_id) SELECT 'c' || i, 2, 1 FROM n;
             UPDATE comments SET parent_id = id - 1 WHERE post_id = 2 AND (id - 2) % 25 <> 0;",
        );
        let before = db.statements().count();
        let alone = run!(db.comments().thread(1, 32)).expect("thread of 1");
        assert_eq!(db.statements().count() - before, 1);
        assert_eq!(alone.len(), 1);
        assert_eq!((alone[0].comment.body.as_str(), alone[0].replies.len()), ("alone", 0));

        let before = db.statements().count();
        let threads = run!(db.comments().thread(2, 32)).expect("thread of 1000");
        assert_eq!(db.statements().count() - before, 1, "one WITH RECURSIVE statement");
        assert_eq!(threads.len(), 40);
        assert_eq!(threads.iter().map(|t| t.len()).sum::<usize>(), 1000);
        assert!(threads.iter().all(|t| t.depth() == 25 && t.comment.parent_id.is_none()));
        let mut link = &threads[0];
        while let Some(reply) = link.replies.first() {
            assert_eq!(reply.comment.parent_id, Some(link.comment.id));
            link = reply;
        }

        // The depth bound holds: 10 levels of each chain, nothing deeper.
        let before = db.statements().count();
        let shallow = run!(db.comments().thread(2, 10)).expect("10 levels");
        assert_eq!(db.statements().count() - before, 1);
        assert!(shallow.iter().all(|t| t.depth() == 10));
        assert_eq!(shallow.iter().map(|t| t.len()).sum::<usize>(), 400);

        let before = db.statements().count();
        for depth in [0, 33, -1] {
            assert!(matches!(
                run!(db.comments().thread(2, depth)),
                Err(RepoError::Validation { field: "depth", .. })
            ));
        }
        assert_eq!(db.statements().count() - before, 0, "refused before any SQL");
    }

    fn reply_chains_cannot_loop(db, fixture) {
        // Why a thread load always ends: a reply's parent must exist before it
        // (the foreign key) and have a smaller id (ck_comments_parent_before_reply),
        // so every step up a chain goes to a smaller id, and no chain can come
        // back to where it started. Pointing a comment at a later one, or at
        // itself, is refused by the database on both backends.
        seed(&fixture, &users_sql(1));
        seed(&fixture, &posts_sql(1, 1, "p"));
        seed(
            &fixture,
            "INSERT INTO comments (body, post_id, author_id) VALUES ('a', 1, 1), ('b', 1, 1);
             UPDATE comments SET parent_id = 1 WHERE id = 2;",
        );
        let mut conn = fixture.connect();
        for sql in [
            "UPDATE comments SET parent_id = 2 WHERE id = 1",
            "UPDATE comments SET parent_id = 1 WHERE id = 1",
        ] {
            assert!(conn.batch_execute(sql).is_err(), "{sql} must be refused");
        }
        let threads = run!(db.comments().thread(1, 32)).expect("thread");
        assert_eq!((threads.len(), threads[0].len()), (1, 2));
    }

    fn replies_stay_on_their_post_and_load_from_both_ends(db, fixture) {
        seed(&fixture, &users_sql(2));
        seed(&fixture, &posts_sql(1, 2, "p"));
        let root = run!(db.comments().create(&comment(1, 1, "root"))).expect("root");
        let reply = run!(db.comments().reply(root.id, &comment(1, 2, "reply"))).expect("reply");
        assert_eq!(reply.parent_id, Some(root.id));

        match run!(db.comments().reply(root.id, &comment(2, 2, "elsewhere"))) {
            Err(RepoError::Validation { field: "parent_id", reason }) => {
                assert!(reason.contains("another post"), "{reason}")
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        match run!(db.comments().reply(9999, &comment(1, 2, "orphan"))) {
            Err(RepoError::RelatedMissing { field }) => assert_eq!(field, "parent_id"),
            other => panic!("expected RelatedMissing, got {other:?}"),
        }
        let page = run!(db.comments().for_post(1, None, 10)).expect("comments");
        assert_eq!(page.items.len(), 2, "a refused reply writes nothing");

        // parent → replies, reply → post (joined), comments → posts (select-in).
        let before = db.statements().count();
        let replies = run!(db.comments().replies(root.id)).expect("replies");
        assert_eq!(replies, vec![reply.clone()]);
        let post = run!(db.comments().post_of(reply.id)).expect("post of a comment");
        assert_eq!(post.id, 1);
        assert_eq!(db.statements().count() - before, 2);
        assert!(matches!(
            run!(db.comments().post_of(9999)),
            Err(RepoError::NotFound { entity: "comment", .. })
        ));

        let before = db.statements().count();
        let with_posts = run!(db.comments().by_author_with_posts(2)).expect("select-in");
        assert_eq!(db.statements().count() - before, 2);
        assert_eq!(with_posts.len(), 1);
        assert_eq!((with_posts[0].comment.id, with_posts[0].post.id), (reply.id, 1));
    }

    fn many_to_one_relations_load_joined_and_select_in(db, fixture) {
        seed(&fixture, &users_sql(3));
        seed(&fixture, &posts_sql(2, 999, "p"));
        seed(&fixture, &posts_sql(3, 1, "q"));
        // post → author, select-in: 2 statements for a page of 1 and of 1,000.
        for limit in [1_i64, 1000] {
            let before = db.statements().count();
            let page = run!(db.posts().page_with_authors(None, limit)).expect("posts with authors");
            assert_eq!(db.statements().count() - before, 2, "limit {limit}");
            assert_eq!(page.items.len() as i64, limit);
            assert!(page.items.iter().all(|p| p.author.id == p.post.author_id));
        }

        // reply → parent: joined (1 statement) and select-in (2 for a post's comments).
        seed(
            &fixture,
            "INSERT INTO comments (body, post_id, author_id) VALUES ('root', 1, 1), ('reply', 1, 2), ('deeper', 1, 3);
             UPDATE comments SET parent_id = id - 1 WHERE id IN (2, 3);",
        );
        let before = db.statements().count();
        let parent = run!(db.comments().parent_of(3)).expect("parent of a reply");
        assert_eq!(db.statements().count() - before, 1, "one statement, a self-join");
        assert_eq!(parent.map(|p| p.body), Some("reply".to_owned()));
        assert_eq!(run!(db.comments().parent_of(1)).expect("top level"), None);
        assert!(matches!(
            run!(db.comments().parent_of(9999)),
            Err(RepoError::NotFound { entity: "comment", .. })
        ));

        let before = db.statements().count();
        let with_parents = run!(db.comments().for_post_with_parents(1)).expect("select-in");
        assert_eq!(db.statements().count() - before, 2);
        let pairs: Vec<(i32, Option<i32>)> =
            with_parents.iter().map(|c| (c.comment.id, c.parent.as_ref().map(|p| p.id))).collect();
        assert_eq!(pairs, [(1, None), (2, Some(1)), (3, Some(2))]);
    }

    fn deleting_a_comment_deletes_its_replies_to_any_depth(db, fixture) {
        seed(&fixture, &users_sql(1));
        seed(&fixture, &posts_sql(1, 1, "p"));
        seed(
            &fixture,
            "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6)
             INSERT INTO comments (body, post_id, author_id) SELECT 'c' || i, 1, 1 FROM n;
             UPDATE comments SET parent_id = id - 1 WHERE id BETWEEN 2 AND 5;",
        );
        // 1 ← 2 ← 3 ← 4 ← 5, and 6 on its own.
        run!(db.comments().delete(2)).expect("delete a reply in the middle");
        let left: Vec<i32> =
            run!(db.comments().for_post(1, None, 10)).expect("page").items.iter().map(|c| c.id).collect();
        assert_eq!(left, [1, 6]);
    }

    fn tagging_is_idempotent_and_bad_tags_are_refused(db, fixture) {
        seed(&fixture, &users_sql(1));
        seed(&fixture, &posts_sql(1, 3, "p"));
        let rust = run!(db.tags().create("rust")).expect("create");
        match run!(db.tags().create("rust")) {
            Err(RepoError::Conflict { constraint }) => assert_eq!(constraint, "ix_tags_name"),
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(run!(db.tags().get_by_name("rust")).expect("by name"), rust);

        assert_eq!(run!(db.tags().tag_post(1, "rust")).expect("tag"), (rust.clone(), true));
        assert_eq!(run!(db.tags().tag_post(1, "rust")).expect("tag again"), (rust.clone(), false));
        assert_eq!(run!(db.tags().tags_of_post(1)).expect("tags of post"), vec![rust.clone()]);
        assert!(run!(db.tags().untag_post(1, "rust")).expect("untag"));
        assert!(!run!(db.tags().untag_post(1, "rust")).expect("untag again"));
        assert!(run!(db.tags().tags_of_post(1)).expect("tags of post").is_empty());

        let before = db.statements().count();
        assert!(matches!(
            run!(db.tags().tag_post(1, &"x".repeat(51))),
            Err(RepoError::Validation { field: "name", .. })
        ));
        assert!(matches!(
            run!(db.tags().create(" padded ")),
            Err(RepoError::Validation { field: "name", .. })
        ));
        assert_eq!(db.statements().count() - before, 0, "refused before any SQL");
        assert!(matches!(
            run!(db.tags().tag_post(1, "unknown")),
            Err(RepoError::NotFound { entity: "tag", .. })
        ));
        match run!(db.tags().tag_post(999, "rust")) {
            Err(RepoError::RelatedMissing { field }) => assert_eq!(field, "post_id"),
            other => panic!("expected RelatedMissing, got {other:?}"),
        }

        seed(&fixture, "INSERT INTO post_tags (post_id, tag_id) VALUES (1, 1), (2, 1), (3, 1);");
        let first = run!(db.tags().posts_with_tag("rust", None, 2)).expect("page 1");
        assert_eq!(first.items.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2]);
        let second = run!(db.tags().posts_with_tag("rust", first.next, 2)).expect("page 2");
        assert_eq!((second.items.len(), second.next), (1, None));
        assert!(matches!(
            run!(db.tags().posts_with_tag("nope", None, 2)),
            Err(RepoError::NotFound { entity: "tag", .. })
        ));

        // Deleting a post or a tag removes its links, not the other side.
        run!(db.posts().delete(3)).expect("delete post");
        assert_eq!(run!(db.tags().posts_with_tag("rust", None, 10)).expect("page").items.len(), 2);
        seed(&fixture, "DELETE FROM tags WHERE name = 'rust';");
        assert!(run!(db.tags().tags_of_post(1)).expect("tags").is_empty());
        assert_eq!(run!(db.posts().get_by_id(1)).expect("post stays").id, 1);
    }
}
