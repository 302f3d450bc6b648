//! The `users` table: its queries, operations, repository, eager-loading
//! result types and input checks. Written on keel-repo's public core only,
//! the way a service writes a module for a table of its own.

use diesel::backend::Backend;
use diesel::dsl::{self, AsSelect};
use diesel::pg::Pg;
use diesel::{
    EscapeExpressionMethods as _, ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
    TextExpressionMethods,
};
use futures_util::future::{try_join, try_join3};
use keel_models::{Comment, NewUser, Post, User, UserChangeset};
use keel_schema::users;
use serde::Serialize;

use super::comments::{comments_of_posts, comments_on_posts_of_author};
use super::posts::{
    PostWithComments, PostWithCommentsAndTags, load_comments_and_tags, posts_by_author,
    posts_of_authors, posts_with_comments,
};
use super::tags::{PostWithTags, posts_with_tags};
use crate::executor::{call, read};
use crate::explain::{self, ExplainedQuery};
use crate::loading::{InIdList, group_by_key, ids};
use crate::page::{MAX_PAGE_SIZE, Page, deleted, found, prefix_pattern};
use crate::{Conn, Executor, Out, QueryScope, RepoError, TableSize, bulk, run, validate};

// ---- queries ----------------------------------------------------------------

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

/// Users by id, many at once: the select-in form of post → author.
#[dsl::auto_type]
pub fn users_by_ids<'a, DB: Backend>(ids: &'a [i32]) -> _ {
    let select: AsSelect<User, DB> = User::as_select();
    let wanted: InIdList<users::id> = InIdList::new(users::id, ids);
    users::table
        .filter(wanted)
        .order(users::id.asc())
        .select(select)
}

/// How many users there are, and the highest id.
#[dsl::auto_type]
pub fn user_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<users::id> = dsl::max(users::id);
    users::table.select((dsl::count_star(), highest))
}

// ---- operations -------------------------------------------------------------

/// Rows in the table and the highest id.
pub(crate) async fn size(conn: &mut Conn<'_>) -> diesel::QueryResult<TableSize> {
    let (rows, max_id) = run!(conn, get_result(user_count_and_max_id()))?;
    Ok(TableSize { rows, max_id })
}

async fn insert_user(conn: &mut Conn<'_>, user: &NewUser) -> diesel::QueryResult<User> {
    conn.durable_write(async |c| {
        run!(
            c,
            get_result(
                diesel::insert_into(users::table)
                    .values(user)
                    .returning(User::as_returning())
            )
        )
    })
    .await
}

async fn update_user(
    conn: &mut Conn<'_>,
    id: i32,
    changes: &UserChangeset,
) -> diesel::QueryResult<Option<User>> {
    conn.durable_write(async |c| {
        run!(
            c,
            get_result(
                diesel::update(users::table.find(id))
                    .set(changes)
                    .returning(User::as_returning())
            )
        )
        .optional()
    })
    .await
}

async fn delete_user(conn: &mut Conn<'_>, id: i32) -> diesel::QueryResult<usize> {
    conn.durable_write(async |c| run!(c, execute(diesel::delete(users::table.find(id)))))
        .await
}

/// On tokio-postgres the user and their posts are selected by the id alone
/// and sent together: one round trip. Elsewhere the posts are asked for
/// only when the user exists.
async fn user_with_posts(
    conn: &mut Conn<'_>,
    id: i32,
) -> diesel::QueryResult<Option<UserWithPosts>> {
    let Some(pipeline) = conn.pipeline() else {
        let Some(user) = run!(conn, get_result(user_by_id(id))).optional()? else {
            return Ok(None);
        };
        let posts = run!(conn, load(posts_of_authors(&[user.id])))?;
        return Ok(users_with_posts(vec![user], posts).pop());
    };
    let (mut users, posts): (Vec<User>, Vec<Post>) = try_join(
        pipeline.load(user_by_id::<Pg>(id)),
        pipeline.load(posts_by_author::<Pg>(id)),
    )
    .await?;
    Ok(users.pop().map(|user| UserWithPosts { user, posts }))
}

/// On tokio-postgres the three levels are selected by the id alone and sent
/// together: one round trip. Elsewhere each statement is a call of its own,
/// and the lower levels are selected by the ids the level above found.
async fn user_with_posts_and_comments(
    conn: &mut Conn<'_>,
    id: i32,
) -> diesel::QueryResult<Option<UserWithPostsAndComments>> {
    let Some(pipeline) = conn.pipeline() else {
        let Some(user) = run!(conn, get_result(user_by_id(id))).optional()? else {
            return Ok(None);
        };
        return load_posts_and_comments(conn, vec![user])
            .await
            .map(|mut users| users.pop());
    };
    let (mut users, posts, comments): (Vec<User>, Vec<Post>, Vec<Comment>) = try_join3(
        pipeline.load(user_by_id::<Pg>(id)),
        pipeline.load(posts_by_author::<Pg>(id)),
        pipeline.load(comments_on_posts_of_author(id)),
    )
    .await?;
    let Some(user) = users.pop() else {
        return Ok(None);
    };
    Ok(Some(UserWithPostsAndComments {
        user,
        posts: posts_with_comments(posts, comments),
    }))
}

async fn active_users_with_posts(
    conn: &mut Conn<'_>,
    limit: i64,
) -> diesel::QueryResult<Vec<UserWithPosts>> {
    let users: Vec<User> = run!(conn, load(active_users(limit)))?;
    let posts = match ids(&users, |u| u.id) {
        Some(ids) => run!(conn, load(posts_of_authors(&ids)))?,
        None => Vec::new(),
    };
    Ok(users_with_posts(users, posts))
}

async fn active_users_with_posts_and_comments(
    conn: &mut Conn<'_>,
    limit: i64,
) -> diesel::QueryResult<Vec<UserWithPostsAndComments>> {
    let users: Vec<User> = run!(conn, load(active_users(limit)))?;
    load_posts_and_comments(conn, users).await
}

/// The posts of `users` and the comments of those posts: one statement per
/// level (none for a level with no parents).
async fn load_posts_and_comments(
    conn: &mut Conn<'_>,
    users: Vec<User>,
) -> diesel::QueryResult<Vec<UserWithPostsAndComments>> {
    let posts: Vec<Post> = match ids(&users, |u| u.id) {
        Some(ids) => run!(conn, load(posts_of_authors(&ids)))?,
        None => Vec::new(),
    };
    let comments = match ids(&posts, |p| p.id) {
        Some(ids) => run!(conn, load(comments_of_posts(&ids)))?,
        None => Vec::new(),
    };
    let posts = posts_with_comments(posts, comments);
    let mut grouped = group_by_key(posts, &users, |p| p.post.author_id, |u| u.id);
    Ok(users
        .into_iter()
        .map(|user| {
            let posts = grouped.remove(&user.id).unwrap_or_default();
            UserWithPostsAndComments { user, posts }
        })
        .collect())
}

/// The posts of `users`, then the tags of those posts: one statement per
/// level (none for a level with no parents).
async fn load_posts_and_tags(
    conn: &mut Conn<'_>,
    users: Vec<User>,
) -> diesel::QueryResult<Vec<UserWithPostsAndTags>> {
    let posts: Vec<Post> = match ids(&users, |u| u.id) {
        Some(ids) => run!(conn, load(posts_of_authors(&ids)))?,
        None => Vec::new(),
    };
    let posts = posts_with_tags(conn, posts).await?;
    let mut grouped = group_by_key(posts, &users, |p| p.post.author_id, |u| u.id);
    Ok(users
        .into_iter()
        .map(|user| {
            let posts = grouped.remove(&user.id).unwrap_or_default();
            UserWithPostsAndTags { user, posts }
        })
        .collect())
}

/// The posts of `users`, then the comments and the tags of those posts:
/// one statement per level.
async fn load_posts_comments_and_tags(
    conn: &mut Conn<'_>,
    users: Vec<User>,
) -> diesel::QueryResult<Vec<UserWithPostsCommentsAndTags>> {
    let posts: Vec<Post> = match ids(&users, |u| u.id) {
        Some(ids) => run!(conn, load(posts_of_authors(&ids)))?,
        None => Vec::new(),
    };
    let posts = load_comments_and_tags(conn, posts).await?;
    let mut grouped = group_by_key(posts, &users, |p| p.post.author_id, |u| u.id);
    Ok(users
        .into_iter()
        .map(|user| {
            let posts = grouped.remove(&user.id).unwrap_or_default();
            UserWithPostsCommentsAndTags { user, posts }
        })
        .collect())
}

/// One user, and `load` for the levels below: `None` for no such user.
async fn one_user_with<T>(
    conn: &mut Conn<'_>,
    id: i32,
    load: impl AsyncFnOnce(&mut Conn<'_>, Vec<User>) -> diesel::QueryResult<Vec<T>>,
) -> diesel::QueryResult<Option<T>> {
    let Some(user) = run!(conn, get_result(user_by_id(id))).optional()? else {
        return Ok(None);
    };
    Ok(load(conn, vec![user]).await?.pop())
}

fn copy_users(conn: &mut diesel::pg::PgConnection, rows: &[NewUser]) -> diesel::QueryResult<usize> {
    diesel::ExecuteCopyFromDsl::execute(diesel::copy_from(users::table).from_insertable(rows), conn)
}

/// Inserts `rows` and reads them back, one multi-row `INSERT … RETURNING`
/// per chunk, in one transaction.
async fn insert_users(conn: &mut Conn<'_>, rows: &[NewUser]) -> diesel::QueryResult<Vec<User>> {
    bulk::insert_returning_chunks(conn, rows, (CHUNK, PG_CHUNK), async |c, chunk| {
        let insert = diesel::insert_into(users::table).values(chunk);
        run!(c, get_results(insert.returning(User::as_returning())))
    })
    .await
}

/// Rows per multi-row `INSERT` of `NewUser` (5 columns), on SQLite and on PostgreSQL.
const CHUNK: usize = bulk::sqlite_rows_per_statement(5);
const PG_CHUNK: usize = bulk::postgres_rows_per_statement(5);

// ---- eager-loading results ----------------------------------------------------

/// A user with every one of their posts, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithPosts {
    /// The user.
    pub user: User,
    /// Their posts, oldest first.
    pub posts: Vec<Post>,
}

/// A user with their posts and each post's comments, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithPostsAndComments {
    /// The user.
    pub user: User,
    /// Their posts, oldest first, each with its comments.
    pub posts: Vec<PostWithComments>,
}

/// A user with their posts and each post's tags, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithPostsAndTags {
    /// The user.
    pub user: User,
    /// Their posts, oldest first, each with its tags.
    pub posts: Vec<PostWithTags>,
}

/// A user with their posts and each post's comments and tags, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserWithPostsCommentsAndTags {
    /// The user.
    pub user: User,
    /// Their posts, oldest first, each with its comments and tags.
    pub posts: Vec<PostWithCommentsAndTags>,
}

fn users_with_posts(users: Vec<User>, posts: Vec<Post>) -> Vec<UserWithPosts> {
    let mut grouped = group_by_key(posts, &users, |p| p.author_id, |u| u.id);
    users
        .into_iter()
        .map(|user| {
            let posts = grouped.remove(&user.id).unwrap_or_default();
            UserWithPosts { user, posts }
        })
        .collect()
}

// ---- input checks ---------------------------------------------------------------

fn check_new_user(user: &NewUser) -> Result<(), RepoError> {
    validate::email(&user.email)?;
    validate::required_text("full_name", &user.full_name, Some(100))?;
    validate::optional_text("first_name", user.first_name.as_deref(), Some(50))?;
    validate::optional_text("last_name", user.last_name.as_deref(), Some(50))
}

fn check_changeset(changes: &UserChangeset) -> Result<(), RepoError> {
    if let Some(value) = &changes.email {
        validate::email(value)?;
    }
    if let Some(value) = &changes.full_name {
        validate::required_text("full_name", value, Some(100))?;
    }
    let first_name = changes.first_name.as_ref().and_then(Option::as_deref);
    validate::optional_text("first_name", first_name, Some(50))?;
    let last_name = changes.last_name.as_ref().and_then(Option::as_deref);
    validate::optional_text("last_name", last_name, Some(50))
}

// ---- repository -------------------------------------------------------------------

/// Users: lookups, writes, pages, search and eager loads, on any executor
/// (`db.users()`, `session.users()`, `tx.users()`, sync or async).
pub struct UserRepository<'a, E> {
    db: &'a E,
}

/// `users()` on every executor.
pub trait UsersExt: Executor + Sized {
    /// Users, on this executor's connections.
    fn users(&self) -> UserRepository<'_, Self> {
        UserRepository { db: self }
    }
}

impl<E: Executor> UsersExt for E {}

impl<'a, E: Executor> UserRepository<'a, E> {
    /// The user with this id. 1 statement.
    pub fn get_by_id(&self, id: i32) -> Out<'a, E, User> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let user = read(db, async |conn| {
                run!(conn, get_result(user_by_id(id))).optional()
            })
            .await?;
            found(user, "user", || format!("id {id}"))
        })
    }

    /// The user with this email. 1 statement, on the unique index.
    pub fn get_by_email<'s>(&self, email: &'s str) -> Out<'s, E, User>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::email(email)?;
            let user = read(db, async |conn| {
                run!(conn, get_result(user_by_email(email))).optional()
            })
            .await?;
            found(user, "user", || format!("email {email}"))
        })
    }

    /// Inserts a user and returns it as stored. A taken email is `Conflict`.
    pub fn create<'s>(&self, user: &'s NewUser) -> Out<'s, E, User>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            check_new_user(user)?;
            call(db, async |conn| insert_user(conn, user).await).await
        })
    }

    /// Inserts many users in one transaction: one multi-row `INSERT` per
    /// chunk that fits the backend's bind-parameter limit. All or nothing.
    pub fn create_many<'s>(&self, users: &'s [NewUser]) -> Out<'s, E, Vec<User>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            users.iter().try_for_each(check_new_user)?;
            if users.is_empty() {
                return Ok(Vec::new());
            }
            call(db, async |conn| insert_users(conn, users).await).await
        })
    }

    /// Loads many users without reading them back (no ids, no `RETURNING`),
    /// in one transaction; returns how many rows went in. The fast path for
    /// bulk loads: one `COPY … FROM STDIN` on PostgreSQL (in async mode on
    /// the pool, on a blocking thread: needs the `sync` feature), multi-row
    /// `INSERT`s elsewhere.
    pub fn insert_many<'s>(&self, users: &'s [NewUser]) -> Out<'s, E, usize>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            users.iter().try_for_each(check_new_user)?;
            bulk::insert_many::<E, users::table, NewUser, CHUNK, PG_CHUNK>(
                db,
                users::table,
                users,
                copy_users,
            )
            .await
        })
    }

    /// Applies `changes` and returns the user as stored. No change at all is
    /// not an error: it returns the user unchanged.
    pub fn update<'s>(&self, id: i32, changes: &'s UserChangeset) -> Out<'s, E, User>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            check_changeset(changes)?;
            let user = if *changes == UserChangeset::default() {
                call(db, async |conn| {
                    run!(conn, get_result(user_by_id(id))).optional()
                })
                .await?
            } else {
                call(db, async |conn| update_user(conn, id, changes).await).await?
            };
            found(user, "user", || format!("id {id}"))
        })
    }

    /// Deletes a user; the database deletes their posts, the comments on
    /// those posts and the user's own comments with them (ON DELETE CASCADE).
    pub fn delete(&self, id: i32) -> Out<'a, E, ()> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let rows = call(db, async |conn| delete_user(conn, id).await).await?;
            deleted(rows, "user", id)
        })
    }

    /// The first `limit` active users, by id. 1 statement.
    pub fn active_users(&self, limit: i64) -> Out<'a, E, Vec<User>> {
        let db = self.db;
        db.output(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            read(db, async |conn| run!(conn, load(active_users(limit)))).await
        })
    }

    /// A keyset page of users with id above `after` (`None`: from the
    /// start), ascending. Inserts between pages never make a page skip or
    /// repeat a row. 1 statement; a paging loop is not an N+1.
    pub fn page(&self, after: Option<i32>, limit: i64) -> Out<'a, E, Page<User>> {
        let db = self.db;
        db.output(QueryScope::repeats_intended_in(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            let after = after.unwrap_or(0);
            let users = read(db, async |conn| run!(conn, load(users_after(after, limit)))).await?;
            Ok(Page::new(users, limit, |u| u.id))
        }))
    }

    /// Users with this last name whose first name starts with
    /// `first_name_prefix` (any, if `None`), in name order. Served by the
    /// composite index on (last_name, first_name). 1 statement.
    pub fn search_by_name<'s>(
        &self,
        last_name: &'s str,
        first_name_prefix: Option<&'s str>,
    ) -> Out<'s, E, Vec<User>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::required_text("last_name", last_name, Some(50))?;
            let pattern = prefix_pattern(first_name_prefix);
            read(db, async |conn| {
                run!(conn, load(users_by_name(last_name, &pattern)))
            })
            .await
        })
    }

    /// One user with their posts: 2 statements, sent together on
    /// tokio-postgres (one round trip); elsewhere 2, or 1 when there is no
    /// user.
    pub fn get_with_posts(&self, id: i32) -> Out<'a, E, UserWithPosts> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let user = read(db, async |conn| user_with_posts(conn, id).await).await?;
            found(user, "user", || format!("id {id}"))
        })
    }

    /// One user with their posts and the posts' comments: 3 statements
    /// whatever the number of posts, sent together on tokio-postgres (one
    /// round trip); elsewhere 3, or fewer when there is no user or no post.
    pub fn get_with_posts_and_comments(&self, id: i32) -> Out<'a, E, UserWithPostsAndComments> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let user = read(db, async |conn| {
                user_with_posts_and_comments(conn, id).await
            })
            .await?;
            found(user, "user", || format!("id {id}"))
        })
    }

    /// The first `limit` active users with their posts: 2 statements,
    /// whatever the number of users.
    pub fn users_with_posts(&self, limit: i64) -> Out<'a, E, Vec<UserWithPosts>> {
        let db = self.db;
        db.output(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            read(db, async |conn| active_users_with_posts(conn, limit).await).await
        })
    }

    /// The first `limit` active users, their posts and the posts' comments:
    /// 3 statements, whatever the number of rows.
    pub fn users_with_posts_and_comments(
        &self,
        limit: i64,
    ) -> Out<'a, E, Vec<UserWithPostsAndComments>> {
        let db = self.db;
        db.output(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            read(db, async |conn| {
                active_users_with_posts_and_comments(conn, limit).await
            })
            .await
        })
    }

    /// One user with their posts and the posts' tags: 3 statements whatever
    /// the number of posts and tags.
    pub fn get_with_posts_and_tags(&self, id: i32) -> Out<'a, E, UserWithPostsAndTags> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let user = read(db, async |conn| {
                one_user_with(conn, id, load_posts_and_tags).await
            })
            .await?;
            found(user, "user", || format!("id {id}"))
        })
    }

    /// One user with their posts and the posts' comments and tags: 4
    /// statements whatever the number of rows.
    pub fn get_with_posts_comments_and_tags(
        &self,
        id: i32,
    ) -> Out<'a, E, UserWithPostsCommentsAndTags> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let user = read(db, async |conn| {
                one_user_with(conn, id, load_posts_comments_and_tags).await
            })
            .await?;
            found(user, "user", || format!("id {id}"))
        })
    }

    /// The first `limit` active users, their posts, and the posts' comments
    /// and tags: 4 statements, whatever the number of rows.
    pub fn users_with_posts_comments_and_tags(
        &self,
        limit: i64,
    ) -> Out<'a, E, Vec<UserWithPostsCommentsAndTags>> {
        let db = self.db;
        db.output(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            read(db, async |conn| {
                let users: Vec<User> = run!(conn, load(active_users(limit)))?;
                load_posts_comments_and_tags(conn, users).await
            })
            .await
        })
    }

    /// Rows and highest id of every one of keel's tables: 3 statements
    /// (see [`super::table_sizes`]).
    pub fn table_sizes(&self) -> Out<'a, E, super::TableSizes> {
        super::table_sizes(self.db)
    }

    /// Rows in the table and the highest id: 1 statement.
    pub fn size(&self) -> Out<'a, E, TableSize> {
        let db = self.db;
        db.output(async move { read(db, async |conn| size(conn).await).await })
    }
}

// ---- registrations -----------------------------------------------------------------

/// The queries `keel explain` shows for this table, with sample arguments.
pub(crate) fn explained_queries() -> Vec<ExplainedQuery> {
    vec![
        ExplainedQuery {
            name: "user_by_email",
            description: "a user by email (UserRepository::get_by_email)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, user_by_email("user1@example.com")),
        },
        ExplainedQuery {
            name: "active_users",
            description: "eager load level 1: active users by id (users_with_posts*)",
            needs_index: false,
            explain: |conn| explain::explain!(conn, active_users(1000)),
        },
        ExplainedQuery {
            name: "users_page",
            description: "keyset page of users (UserRepository::page)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, users_after(100, 20)),
        },
        ExplainedQuery {
            name: "users_by_name",
            description: "name search on (last_name, first_name) (UserRepository::search_by_name)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, users_by_name("Last1", "First1%")),
        },
    ]
}
