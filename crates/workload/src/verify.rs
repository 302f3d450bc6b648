//! The load check: one SQL statement, the same text on PostgreSQL and SQLite,
//! that counts the rows breaking the workload's formulas (docs/workload.md).

use std::fmt::Write as _;

use crate::{POST_CONTENT_LEN, Workload};

/// The shortest `unit` a post's content repeats: `"Post 1 by user 1. "`.
const SHORTEST_CONTENT_UNIT: usize = "Post 1 by user 1. ".len();

impl Workload {
    /// SQL returning one row with one `BIGINT` column, `mismatched_rows`:
    /// the rows of `users`, `posts` and `comments` whose id is outside
    /// 1..=count or any of whose columns differs from the formulas for that
    /// id, plus the ids in 1..=count with no row. A correct load gives 0.
    ///
    /// Only standard functions both backends have are used (`||`, `%`,
    /// integer `/`, `substr`, `COALESCE`, `CAST`), every operator
    /// parenthesised (SQLite binds `||` tighter than `%`, PostgreSQL looser),
    /// and the sizes are inlined as integer literals.
    pub fn mismatched_rows_sql(&self) -> String {
        let users = self.user_count();
        let posts = self.post_count();
        let comments = self.comment_count();
        let per_user = self.posts_per_user();
        let per_post = self.comments_per_post();
        // The content is `unit` repeated past 200 characters, cut to 200.
        let repeats = POST_CONTENT_LEN.div_ceil(SHORTEST_CONTENT_UNIT);
        let repeated_unit = vec!["unit"; repeats].join(" || ");

        let mut sql = String::from("SELECT CAST(\n");
        // users
        let _ = write!(
            sql,
            "  (SELECT count(*) FROM users WHERE id < 1 OR id > {users}\
             \n     OR email <> ('user' || id || '@example.com')\
             \n     OR full_name <> ('First' || id || ' Last' || id)\
             \n     OR COALESCE(first_name, '') <> ('First' || id)\
             \n     OR COALESCE(last_name, '') <> ('Last' || (id % 1000))\
             \n     OR is_active <> ((id % 10) <> 0))\
             \n  + ({users} - (SELECT count(*) FROM users WHERE id BETWEEN 1 AND {users}))\n"
        );
        // posts: i = (id-1)/P + 1 is the author, j = (id-1)%P + 1 the post's number.
        let _ = write!(
            sql,
            "  + (SELECT count(*) FROM (\
             \n       SELECT id, title, content, author_id, i, j,\
             \n              ('Post ' || j || ' by user ' || i || '. ') AS unit\
             \n       FROM (SELECT id, title, content, author_id,\
             \n                    (((id - 1) / {per_user}) + 1) AS i, (((id - 1) % {per_user}) + 1) AS j\
             \n             FROM posts) AS numbered) AS expected\
             \n     WHERE id < 1 OR id > {posts}\
             \n     OR author_id <> i\
             \n     OR title <> ('Post ' || j || ' by ' || i)\
             \n     OR content <> substr({repeated_unit}, 1, {POST_CONTENT_LEN}))\
             \n  + ({posts} - (SELECT count(*) FROM posts WHERE id BETWEEN 1 AND {posts}))\n"
        );
        // comments: p = (id-1)/C + 1 is the post, k = (id-1)%C + 1 the comment's number.
        let _ = write!(
            sql,
            "  + (SELECT count(*) FROM (\
             \n       SELECT id, body, post_id, author_id,\
             \n              (((id - 1) / {per_post}) + 1) AS p, (((id - 1) % {per_post}) + 1) AS k\
             \n       FROM comments) AS expected\
             \n     WHERE id < 1 OR id > {comments}\
             \n     OR post_id <> p\
             \n     OR author_id <> (((p + k) % {users}) + 1)\
             \n     OR body <> ('Comment ' || k || ' on post ' || p))\
             \n  + ({comments} - (SELECT count(*) FROM comments WHERE id BETWEEN 1 AND {comments}))\n"
        );
        sql.push_str("AS BIGINT) AS mismatched_rows");
        sql
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use keel_schema::{comments, posts, users};
    use keel_tests::TestDatabase;

    use crate::Workload;

    #[derive(QueryableByName)]
    struct Mismatched {
        #[diesel(sql_type = BigInt)]
        mismatched_rows: i64,
    }

    /// Runs the check on a connection of either backend.
    macro_rules! mismatched {
        ($conn:expr, $workload:expr) => {
            diesel::sql_query($workload.mismatched_rows_sql())
                .get_result::<Mismatched>($conn)
                .expect("the check runs")
                .mismatched_rows
        };
    }

    /// Inserts `workload`'s rows in id order, in one transaction.
    macro_rules! load {
        ($conn:expr, $workload:expr) => {
            $conn
                .transaction(|conn| {
                    for chunk in $workload.users().chunks(1_000) {
                        diesel::insert_into(users::table)
                            .values(&chunk)
                            .execute(conn)?;
                    }
                    for chunk in $workload.posts().chunks(1_000) {
                        diesel::insert_into(posts::table)
                            .values(&chunk)
                            .execute(conn)?;
                    }
                    for chunk in $workload.comments().chunks(1_000) {
                        diesel::insert_into(comments::table)
                            .values(&chunk)
                            .execute(conn)?;
                    }
                    diesel::QueryResult::Ok(())
                })
                .expect("rows insert")
        };
    }

    /// Changes to a correct load of `Workload::new(1_000, 2, 2)`, each with
    /// the mismatch count after it and all before it.
    const CHANGES: [(&str, i64); 10] = [
        ("UPDATE users SET email = 'x@example.com' WHERE id = 5", 1),
        ("UPDATE users SET last_name = NULL WHERE id = 7", 2),
        ("UPDATE users SET is_active = true WHERE id = 20", 3),
        // 'Last' || (id % 1000): user 1000's last name is Last0.
        ("UPDATE users SET last_name = 'Last1000' WHERE id = 1000", 4),
        (
            "UPDATE posts SET content = substr(content, 1, 199) || 'x' WHERE id = 9",
            5,
        ),
        ("UPDATE posts SET title = 'Post 1 by 2' WHERE id = 1", 6),
        ("UPDATE comments SET author_id = 1 WHERE id = 3", 7),
        // A missing row counts once; a row past the last id counts too.
        ("DELETE FROM comments WHERE id = 4", 8),
        (
            "INSERT INTO comments (id, body, post_id, author_id) VALUES (4001, 'x', 1, 1)",
            9,
        ),
        (
            "UPDATE comments SET body = 'Comment 1 on post 1' WHERE id = 2",
            10,
        ),
    ];

    keel_tests::backend_tests! {
        fn a_correct_load_has_no_mismatched_rows(db) {
            let workload = Workload::new(150, 3, 2).expect("valid sizes");
            let mut conn = db.migrated_connection();
            load!(conn, workload);
            assert_eq!(mismatched!(&mut conn, workload), 0);
            // The same rows checked against other sizes do not pass.
            let other = Workload::new(150, 4, 2).expect("valid sizes");
            assert!(mismatched!(&mut conn, other) > 0);
        }

        fn every_kind_of_mismatch_counts(db) {
            let workload = Workload::new(1_000, 2, 2).expect("valid sizes");
            let mut conn = db.migrated_connection();
            load!(conn, workload);
            assert_eq!(mismatched!(&mut conn, workload), 0);
            for (change, expected) in CHANGES {
                conn.batch_execute(change).expect("the change applies");
                assert_eq!(mismatched!(&mut conn, workload), expected, "after {change}");
            }
        }
    }

    #[test]
    fn the_sql_inlines_the_sizes() {
        let sql = Workload::DEFAULT.mismatched_rows_sql();
        assert!(sql.starts_with("SELECT CAST("));
        assert!(sql.ends_with("AS BIGINT) AS mismatched_rows"));
        assert!(sql.contains("id > 10000"));
        assert!(sql.contains("id > 100000"));
        assert!(sql.contains("id > 200000"));
        assert!(sql.contains("substr(unit || unit"));
    }
}
