//! The hand-written baseline: the same steps in plain SQL on the plain
//! drivers, with prepared statements and the fewest statements a careful
//! person would send. The SQL text is shared by the drivers where it can be
//! (`$1` is a parameter on SQLite too); the rows are read into the same
//! keel-models structs keel returns, so both sides materialise the same data.

pub mod pg_async;
pub mod pg_sync;
pub mod sqlite;

use std::collections::HashMap;

use keel_models::{Comment, Post, User};

/// `users` columns, in `User`'s field order (written out in each query;
/// the tests check they agree).
#[cfg(test)]
const USER_COLUMNS: &str = "id, email, full_name, first_name, last_name, is_active, created_at";
/// `posts` columns, in `Post`'s field order.
const POST_COLUMNS: &str = "id, title, content, author_id, created_at";
/// `comments` columns, in `Comment`'s field order.
const COMMENT_COLUMNS: &str = "id, body, post_id, author_id, created_at, parent_id";

/// B2's and B3's first level: `$1` = true, `$2` = the limit.
const ACTIVE_USERS: &str = "SELECT id, email, full_name, first_name, last_name, is_active, created_at \
     FROM users WHERE is_active = $1 ORDER BY id LIMIT $2";
/// B3: one user's posts.
pub(crate) const POSTS_BY_AUTHOR: &str =
    "SELECT id, title, content, author_id, created_at FROM posts WHERE author_id = $1 ORDER BY id";
/// B3: one post's comments.
const COMMENTS_BY_POST: &str = "SELECT id, body, post_id, author_id, created_at, parent_id FROM comments WHERE post_id = $1 ORDER BY id";
/// B4: a user by email.
const USER_BY_EMAIL: &str = "SELECT id, email, full_name, first_name, last_name, is_active, created_at \
     FROM users WHERE email = $1";
/// B6: a user by id.
pub(crate) const USER_BY_ID: &str = "SELECT id, email, full_name, first_name, last_name, is_active, created_at \
     FROM users WHERE id = $1";
/// B5: an author's posts, by the author's email.
const POSTS_BY_AUTHOR_EMAIL: &str = "SELECT posts.id, posts.title, posts.content, posts.author_id, posts.created_at \
     FROM posts INNER JOIN users ON users.id = posts.author_id \
     WHERE users.email = $1 ORDER BY posts.id";

/// Users with their posts, each post with its comments.
pub type Graph = Vec<(User, Vec<(Post, Vec<Comment>)>)>;

/// Puts each level's rows under their parents, keeping each level's order.
/// Rows whose parent is not loaded are dropped (none are, in this workload).
pub fn assemble_graph(users: Vec<User>, posts: Vec<Post>, comments: Vec<Comment>) -> Graph {
    let post_position: HashMap<i32, usize> =
        posts.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let mut comments_by_post: Vec<Vec<Comment>> = posts.iter().map(|_| Vec::new()).collect();
    for comment in comments {
        if let Some(&i) = post_position.get(&comment.post_id) {
            comments_by_post[i].push(comment);
        }
    }
    let user_position: HashMap<i32, usize> =
        users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
    let mut posts_by_user: Vec<Vec<(Post, Vec<Comment>)>> =
        users.iter().map(|_| Vec::new()).collect();
    for (post, comments) in posts.into_iter().zip(comments_by_post) {
        if let Some(&i) = user_position.get(&post.author_id) {
            posts_by_user[i].push((post, comments));
        }
    }
    users.into_iter().zip(posts_by_user).collect()
}

/// `table`'s columns as `COPY … FROM STDIN (FORMAT BINARY)` for a load.
fn copy_statement(table: &str, columns: &[&str]) -> String {
    format!(
        "COPY {table} ({}) FROM STDIN (FORMAT BINARY)",
        columns.join(", ")
    )
}

/// The columns a load writes (the server fills `id` and `created_at`).
const USER_INSERT_COLUMNS: [&str; 5] =
    ["email", "full_name", "first_name", "last_name", "is_active"];
const POST_INSERT_COLUMNS: [&str; 3] = ["title", "content", "author_id"];
const COMMENT_INSERT_COLUMNS: [&str; 3] = ["body", "post_id", "author_id"];

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;

    fn at() -> NaiveDateTime {
        NaiveDateTime::default()
    }

    #[test]
    fn the_graph_groups_each_level_under_its_parent() {
        let user = |id| User {
            id,
            email: format!("user{id}@example.com"),
            full_name: String::new(),
            first_name: None,
            last_name: None,
            is_active: true,
            created_at: at(),
        };
        let post = |id, author_id| Post {
            id,
            title: String::new(),
            content: String::new(),
            author_id,
            created_at: at(),
        };
        let comment = |id, post_id| Comment {
            id,
            body: format!("c{id}"),
            post_id,
            author_id: 1,
            created_at: at(),
            parent_id: None,
        };
        let graph = assemble_graph(
            vec![user(1), user(2)],
            vec![post(10, 2), post(11, 1), post(12, 2), post(13, 9)],
            vec![comment(100, 12), comment(101, 10), comment(102, 12)],
        );
        type Ids = Vec<(i32, Vec<(i32, Vec<i32>)>)>;
        let shape: Ids = graph
            .iter()
            .map(|(u, posts)| {
                let posts = posts
                    .iter()
                    .map(|(p, cs)| (p.id, cs.iter().map(|c| c.id).collect()))
                    .collect();
                (u.id, posts)
            })
            .collect();
        assert_eq!(
            shape,
            [
                (1, vec![(11, vec![])]),
                (2, vec![(10, vec![101]), (12, vec![100, 102])]),
            ]
        );
    }

    #[test]
    fn column_lists_match_the_queries() {
        for (sql, columns) in [
            (ACTIVE_USERS, USER_COLUMNS),
            (USER_BY_EMAIL, USER_COLUMNS),
            (USER_BY_ID, USER_COLUMNS),
            (POSTS_BY_AUTHOR, POST_COLUMNS),
            (COMMENTS_BY_POST, COMMENT_COLUMNS),
            (pg_sync::POSTS_OF_AUTHORS, POST_COLUMNS),
            (pg_sync::COMMENTS_OF_POSTS, COMMENT_COLUMNS),
        ] {
            assert!(sql.contains(columns), "{sql}");
        }
        assert_eq!(
            copy_statement("posts", &POST_INSERT_COLUMNS),
            "COPY posts (title, content, author_id) FROM STDIN (FORMAT BINARY)"
        );
    }
}
