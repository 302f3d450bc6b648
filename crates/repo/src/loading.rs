//! Eager loading: the named result types, and how each level's rows are
//! grouped under their parents (`grouped_by`). Queries live in `queries`;
//! this is the pure assembly both executors share.

use diesel::prelude::*;
use keel_models::{Comment, Post, User};
use serde::Serialize;

/// A user with every one of their posts, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithPosts {
    /// The user.
    pub user: User,
    /// Their posts, oldest first.
    pub posts: Vec<Post>,
}

/// A post with every comment on it, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithComments {
    /// The post.
    pub post: Post,
    /// Its comments, oldest first.
    pub comments: Vec<Comment>,
}

/// A user with their posts and each post's comments, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithPostsAndComments {
    /// The user.
    pub user: User,
    /// Their posts, oldest first, each with its comments.
    pub posts: Vec<PostWithComments>,
}

/// A post with its author and its comments, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithAuthorAndComments {
    /// The post.
    pub post: Post,
    /// Who wrote it.
    pub author: User,
    /// Its comments, oldest first.
    pub comments: Vec<Comment>,
}

/// The ids of `rows` as the next level's id list: one list, bound as one
/// value on either backend (`= ANY($1)`, `IN (SELECT value FROM
/// json_each(?))`). No rows, no list (and so no statement).
pub(crate) fn id_list<'a, T: 'a>(rows: &'a [T]) -> Option<Vec<i32>>
where
    &'a T: Identifiable<Id = &'a i32>,
{
    (!rows.is_empty()).then(|| rows.iter().map(|row| *row.id()).collect())
}

pub(crate) fn users_with_posts(users: Vec<User>, posts: Vec<Post>) -> Vec<UserWithPosts> {
    let grouped = posts.grouped_by(&users);
    users
        .into_iter()
        .zip(grouped)
        .map(|(user, posts)| UserWithPosts { user, posts })
        .collect()
}

pub(crate) fn posts_with_comments(
    posts: Vec<Post>,
    comments: Vec<Comment>,
) -> Vec<PostWithComments> {
    let grouped = comments.grouped_by(&posts);
    posts
        .into_iter()
        .zip(grouped)
        .map(|(post, comments)| PostWithComments { post, comments })
        .collect()
}

pub(crate) fn users_with_posts_and_comments(
    users: Vec<User>,
    posts: Vec<Post>,
    comments: Vec<Comment>,
) -> Vec<UserWithPostsAndComments> {
    let posts = posts_with_comments(posts, comments);
    let grouped = posts.grouped_by_author(&users);
    users
        .into_iter()
        .zip(grouped)
        .map(|(user, posts)| UserWithPostsAndComments { user, posts })
        .collect()
}

/// `grouped_by` for posts that already carry their comments.
trait GroupedByAuthor {
    fn grouped_by_author(self, users: &[User]) -> Vec<Vec<PostWithComments>>;
}

impl GroupedByAuthor for Vec<PostWithComments> {
    fn grouped_by_author(self, users: &[User]) -> Vec<Vec<PostWithComments>> {
        let position: std::collections::HashMap<i32, usize> =
            users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let mut grouped: Vec<Vec<PostWithComments>> = users.iter().map(|_| Vec::new()).collect();
        for post in self {
            if let Some(&i) = position.get(&post.post.author_id) {
                grouped[i].push(post);
            }
        }
        grouped
    }
}
