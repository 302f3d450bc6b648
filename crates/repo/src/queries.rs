//! Every query keel-repo runs, each built once as a value. The sync and the
//! async executors run these same values on PostgreSQL and SQLite; nothing
//! else in the crate builds SQL.

use diesel::backend::Backend;
use diesel::dsl::{self, AsSelect};
use diesel::prelude::*;
use keel_models::{Comment, Post, User};
use keel_schema::{comments, posts, users};

use crate::requests::CommentsQuery;

/// One user by id.
#[dsl::auto_type]
pub fn user_by_id<DB: Backend>(id: i32) -> _ {
    let select: AsSelect<User, DB> = User::as_select();
    users::table.find(id).select(select)
}

/// One user by email (served by the unique index `ix_users_email`).
#[dsl::auto_type]
pub fn user_by_email<'a, DB: Backend>(email: &'a str) -> _ {
    let select: AsSelect<User, DB> = User::as_select();
    users::table.filter(users::email.eq(email)).select(select)
}

/// The first `limit` active users by id: the top level of the eager loads.
#[dsl::auto_type]
pub fn active_users<DB: Backend>(limit: i64) -> _ {
    let select: AsSelect<User, DB> = User::as_select();
    users::table
        .filter(users::is_active.eq(true))
        .order(users::id.asc())
        .limit(limit)
        .select(select)
}

/// A keyset page: users with id above `after`, ascending. Rows inserted while
/// a client pages get higher ids, so pages never skip or repeat a row.
#[dsl::auto_type]
pub fn users_after<DB: Backend>(after: i32, limit: i64) -> _ {
    let select: AsSelect<User, DB> = User::as_select();
    users::table
        .filter(users::id.gt(after))
        .order(users::id.asc())
        .limit(limit)
        .select(select)
}

/// Users by last name and first-name `LIKE` pattern, in name order (served by
/// the composite index `idx_users_full_name`). Pass `%` for any first name.
#[dsl::auto_type]
pub fn users_by_name<'a, DB: Backend>(last_name: &'a str, first_name_pattern: &'a str) -> _ {
    let select: AsSelect<User, DB> = User::as_select();
    // SQLite has no default LIKE escape character: name one for both.
    let first_name_matches: dsl::Escape<dsl::Like<users::first_name, &'a str>> =
        users::first_name.like(first_name_pattern).escape('\\');
    users::table
        .filter(users::last_name.eq(last_name))
        .filter(first_name_matches)
        .order((users::first_name.asc(), users::id.asc()))
        .select(select)
}

/// How many users there are, and the highest id: `(count, max)`. Equal
/// when ids run 1..=count without gaps (how a seeded load is resumed).
#[dsl::auto_type]
pub fn user_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<users::id> = dsl::max(users::id);
    users::table.select((dsl::count_star(), highest))
}

/// `(count, max id)` of posts.
#[dsl::auto_type]
pub fn post_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<posts::id> = dsl::max(posts::id);
    posts::table.select((dsl::count_star(), highest))
}

/// `(count, max id)` of comments.
#[dsl::auto_type]
pub fn comment_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<comments::id> = dsl::max(comments::id);
    comments::table.select((dsl::count_star(), highest))
}

/// One post by id.
#[dsl::auto_type]
pub fn post_by_id<DB: Backend>(id: i32) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    posts::table.find(id).select(select)
}

/// A post with its author: one statement, an inner join (many-to-one).
#[dsl::auto_type]
pub fn post_with_author<DB: Backend>(id: i32) -> _ {
    let post: AsSelect<Post, DB> = Post::as_select();
    let author: AsSelect<User, DB> = User::as_select();
    posts::table
        .inner_join(users::table)
        .filter(posts::id.eq(id))
        .select((post, author))
}

/// An author's posts, oldest first.
#[dsl::auto_type]
pub fn posts_by_author<DB: Backend>(author_id: i32) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    posts::table
        .filter(posts::author_id.eq(author_id))
        .order(posts::id.asc())
        .select(select)
}

/// The posts of the user with this email: posts joined to users.
#[dsl::auto_type]
pub fn posts_by_author_email<'a, DB: Backend>(email: &'a str) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    posts::table
        .inner_join(users::table)
        .filter(users::email.eq(email))
        .order(posts::id.asc())
        .select(select)
}

/// Posts of many authors at once: one level of an eager load. This is the
/// query `Post::belonging_to(&users)` builds (`author_id = ANY($1)` on
/// PostgreSQL, `IN (?, …)` on SQLite), taking owned ids so it has no borrow.
#[dsl::auto_type]
pub fn posts_of_authors<DB: Backend>(author_ids: Vec<i32>) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    posts::table
        .filter(posts::author_id.eq_any(author_ids))
        .order(posts::id.asc())
        .select(select)
}

/// Comments on many posts at once: the next level of an eager load.
#[dsl::auto_type]
pub fn comments_of_posts<DB: Backend>(post_ids: Vec<i32>) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table
        .filter(comments::post_id.eq_any(post_ids))
        .order(comments::id.asc())
        .select(select)
}

/// One comment by id.
#[dsl::auto_type]
pub fn comment_by_id<DB: Backend>(id: i32) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table.find(id).select(select)
}

/// A keyset page of a post's comments: ids above `after`, ascending.
#[dsl::auto_type]
pub fn comments_for_post<DB: Backend>(post_id: i32, after: i32, limit: i64) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table
        .filter(comments::post_id.eq(post_id))
        .filter(comments::id.gt(after))
        .order(comments::id.asc())
        .limit(limit)
        .select(select)
}

/// Every comment a user wrote, oldest first.
#[dsl::auto_type]
pub fn comments_by_author<DB: Backend>(author_id: i32) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table
        .filter(comments::author_id.eq(author_id))
        .order(comments::id.asc())
        .select(select)
}

/// The SQL for a refined [`CommentsQuery`], on one backend. Boxed because
/// each refinement is optional; the macro writes it once for every backend.
macro_rules! comments_matching {
    ($name:ident, $backend:ty) => {
        pub(crate) fn $name(
            query: &CommentsQuery,
        ) -> comments::BoxedQuery<'static, $backend, AsSelectComment<$backend>> {
            let mut sql = comments::table
                .filter(comments::post_id.eq(query.post_id))
                .select(Comment::as_select())
                .into_boxed();
            if let Some(author_id) = query.author_id {
                sql = sql.filter(comments::author_id.eq(author_id));
            }
            if let Some(after) = query.after {
                sql = sql.filter(comments::id.gt(after));
            }
            sql = if query.newest_first {
                sql.order(comments::id.desc())
            } else {
                sql.order(comments::id.asc())
            };
            if let Some(limit) = query.limit {
                sql = sql.limit(limit);
            }
            sql
        }
    };
}

type AsSelectComment<DB> = AsSelect<Comment, DB>;

/// The queries that differ by backend, one module per backend with the
/// same names, so an executor names its backend once.
pub(crate) mod postgres {
    use super::*;

    pub(crate) use super::{comments_of_posts, posts_of_authors};

    comments_matching!(comments_matching, diesel::pg::Pg);

    /// Moves each id sequence past the table's highest id, so the next
    /// insert gets `MAX(id) + 1` (a rolled-back insert consumes sequence
    /// values; a resumed load needs ids to follow on). Run in a transaction:
    /// the lock first waits out any writer still inserting (say, the server
    /// side of a killed client), whose inserts would take sequence values.
    pub(crate) fn restart_id_sequences() -> Vec<diesel::query_builder::SqlQuery> {
        vec![
            diesel::sql_query("LOCK TABLE users, posts, comments IN SHARE ROW EXCLUSIVE MODE"),
            diesel::sql_query(
                "SELECT \
             setval(pg_get_serial_sequence('users', 'id'), COALESCE((SELECT MAX(id) FROM users), 0) + 1, false), \
             setval(pg_get_serial_sequence('posts', 'id'), COALESCE((SELECT MAX(id) FROM posts), 0) + 1, false), \
             setval(pg_get_serial_sequence('comments', 'id'), COALESCE((SELECT MAX(id) FROM comments), 0) + 1, false)",
            ),
        ]
    }
}

/// See [`postgres`].
pub(crate) mod sqlite {
    use super::*;
    use diesel::expression::{AppearsOnTable, Expression, ValidGrouping};
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::sqlite::Sqlite;

    comments_matching!(comments_matching, Sqlite);

    /// [`super::posts_of_authors`], with the ids bound as one JSON array.
    #[dsl::auto_type]
    pub(crate) fn posts_of_authors(author_ids: Vec<i32>) -> _ {
        let select: AsSelect<Post, Sqlite> = Post::as_select();
        let in_list: InIdList<posts::author_id> = InIdList::new(posts::author_id, &author_ids);
        posts::table
            .filter(in_list)
            .order(posts::id.asc())
            .select(select)
    }

    /// [`super::comments_of_posts`], with the ids bound as one JSON array.
    #[dsl::auto_type]
    pub(crate) fn comments_of_posts(post_ids: Vec<i32>) -> _ {
        let select: AsSelect<Comment, Sqlite> = Comment::as_select();
        let in_list: InIdList<comments::post_id> = InIdList::new(comments::post_id, &post_ids);
        comments::table
            .filter(in_list)
            .order(comments::id.asc())
            .select(select)
    }

    /// `column IN (SELECT value FROM json_each(?))`: an id list bound as one
    /// JSON array. `eq_any`'s `IN (?, ?, …)` has one placeholder per id, so its
    /// SQL changes with the list's length: diesel prepares it afresh on every
    /// call (a 10,000-id list is about 5% of an eager load), and a list longer
    /// than SQLite's bind limit must be split. This statement is the same for
    /// every list: prepared once, then cached, and never split. PostgreSQL's
    /// `= ANY($1)` already binds the list as one array.
    #[derive(Debug, Clone)]
    pub(crate) struct InIdList<Column> {
        column: Column,
        ids: String,
    }

    impl<Column> InIdList<Column> {
        pub(crate) fn new(column: Column, ids: &[i32]) -> Self {
            use std::fmt::Write as _;
            let mut json = String::with_capacity(ids.len() * 7 + 2);
            json.push('[');
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                // Writing to a String cannot fail.
                let _ = write!(json, "{id}");
            }
            json.push(']');
            Self { column, ids: json }
        }
    }

    impl<Column: Expression> Expression for InIdList<Column> {
        type SqlType = diesel::sql_types::Bool;
    }

    impl<Column, QS> AppearsOnTable<QS> for InIdList<Column> where Column: AppearsOnTable<QS> {}

    impl<Column, GroupBy> ValidGrouping<GroupBy> for InIdList<Column>
    where
        Column: ValidGrouping<GroupBy>,
    {
        type IsAggregate = Column::IsAggregate;
    }

    impl<Column: QueryId> QueryId for InIdList<Column> {
        type QueryId = InIdList<Column::QueryId>;
        const HAS_STATIC_QUERY_ID: bool = Column::HAS_STATIC_QUERY_ID;
    }

    impl<Column: QueryFragment<Sqlite>> QueryFragment<Sqlite> for InIdList<Column> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
            self.column.walk_ast(out.reborrow())?;
            out.push_sql(" IN (SELECT value FROM json_each(");
            out.push_bind_param::<diesel::sql_types::Text, _>(&self.ids)?;
            out.push_sql("))");
            Ok(())
        }
    }

    /// Nothing to do: an `INTEGER PRIMARY KEY` takes `MAX(id) + 1` anyway.
    pub(crate) fn restart_id_sequences() -> Vec<diesel::query_builder::SqlQuery> {
        Vec::new()
    }
}
