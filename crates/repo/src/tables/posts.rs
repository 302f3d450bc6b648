//! The `posts` table: its queries, operations, repository, eager-loading
//! result types and input checks.

use diesel::backend::Backend;
use diesel::dsl::{self, AsSelect};
use diesel::pg::Pg;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use futures_util::future::try_join;
use keel_models::{Comment, NewPost, Post, PostChangeset, Tag, User};
use keel_schema::{posts, users};
use serde::Serialize;

use super::comments::{
    CommentsQuery, all_comments_oldest_first, comments_matching, comments_of_posts,
};
use super::tags::{PostWithTags, load_tags_of_posts, posts_with_tags};
use super::users::users_by_ids;
use crate::executor::{call, read};
use crate::explain::{self, ExplainedQuery};
use crate::loading::{InIdList, by_id, distinct_ids, group_by_key, ids};
use crate::page::{MAX_PAGE_SIZE, Page, deleted, found};
use crate::{Conn, Executor, Out, RepoError, TableSize, bulk, run, validate};

// ---- queries ----------------------------------------------------------------

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

/// Posts of many authors at once: one level of an eager load (what
/// `Post::belonging_to(&users)` selects), the ids bound as one value.
#[dsl::auto_type]
pub fn posts_of_authors<'a, DB: Backend>(author_ids: &'a [i32]) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    let authors: InIdList<posts::author_id> = InIdList::new(posts::author_id, author_ids);
    posts::table
        .filter(authors)
        .order(posts::id.asc())
        .select(select)
}

/// A keyset page of posts: ids above `after`, ascending.
#[dsl::auto_type]
pub fn posts_after<DB: Backend>(after: i32, limit: i64) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    posts::table
        .filter(posts::id.gt(after))
        .order(posts::id.asc())
        .limit(limit)
        .select(select)
}

/// How many posts there are, and the highest id.
#[dsl::auto_type]
pub fn post_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<posts::id> = dsl::max(posts::id);
    posts::table.select((dsl::count_star(), highest))
}

// ---- operations -------------------------------------------------------------

/// Rows in the table and the highest id.
pub(crate) async fn size(conn: &mut Conn<'_>) -> diesel::QueryResult<TableSize> {
    let (rows, max_id) = run!(conn, get_result(post_count_and_max_id()))?;
    Ok(TableSize { rows, max_id })
}

async fn insert_post(conn: &mut Conn<'_>, post: &NewPost) -> diesel::QueryResult<Post> {
    conn.durable_write(async |c| {
        run!(
            c,
            get_result(
                diesel::insert_into(posts::table)
                    .values(post)
                    .returning(Post::as_returning())
            )
        )
    })
    .await
}

async fn update_post(
    conn: &mut Conn<'_>,
    id: i32,
    changes: &PostChangeset,
) -> diesel::QueryResult<Option<Post>> {
    conn.durable_write(async |c| {
        run!(
            c,
            get_result(
                diesel::update(posts::table.find(id))
                    .set(changes)
                    .returning(Post::as_returning())
            )
        )
        .optional()
    })
    .await
}

async fn delete_post(conn: &mut Conn<'_>, id: i32) -> diesel::QueryResult<usize> {
    conn.durable_write(async |c| run!(c, execute(diesel::delete(posts::table.find(id)))))
        .await
}

/// On tokio-postgres the post (joined to its author) and its comments are
/// selected by the post's id alone and sent together: one round trip.
/// Elsewhere the comments are asked for only when the post exists.
async fn post_with_author_and_comments(
    conn: &mut Conn<'_>,
    id: i32,
) -> diesel::QueryResult<Option<PostWithAuthorAndComments>> {
    let Some(pipeline) = conn.pipeline() else {
        let Some((post, author)) = run!(conn, get_result(post_with_author(id))).optional()? else {
            return Ok(None);
        };
        let comments = run!(conn, load(comments_of_posts(&[post.id])))?;
        return Ok(Some(PostWithAuthorAndComments {
            post,
            author,
            comments,
        }));
    };
    let (mut found, comments): (Vec<(Post, User)>, Vec<Comment>) = try_join(
        pipeline.load(post_with_author::<Pg>(id)),
        pipeline.load(all_comments_oldest_first::<Pg>(id)),
    )
    .await?;
    Ok(found.pop().map(|(post, author)| PostWithAuthorAndComments {
        post,
        author,
        comments,
    }))
}

fn copy_posts(conn: &mut diesel::pg::PgConnection, rows: &[NewPost]) -> diesel::QueryResult<usize> {
    diesel::ExecuteCopyFromDsl::execute(diesel::copy_from(posts::table).from_insertable(rows), conn)
}

/// Inserts `rows` and reads them back, one multi-row `INSERT … RETURNING`
/// per chunk, in one transaction.
async fn insert_posts(conn: &mut Conn<'_>, rows: &[NewPost]) -> diesel::QueryResult<Vec<Post>> {
    bulk::insert_returning_chunks(conn, rows, (CHUNK, PG_CHUNK), async |c, chunk| {
        let insert = diesel::insert_into(posts::table).values(chunk);
        run!(c, get_results(insert.returning(Post::as_returning())))
    })
    .await
}

/// Rows per multi-row `INSERT` of `NewPost` (3 columns), on SQLite and on PostgreSQL.
const CHUNK: usize = bulk::sqlite_rows_per_statement(3);
const PG_CHUNK: usize = bulk::postgres_rows_per_statement(3);

// ---- eager-loading results ----------------------------------------------------

/// A post with every comment on it, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithComments {
    /// The post.
    pub post: Post,
    /// Its comments, oldest first.
    pub comments: Vec<Comment>,
}

/// A post with its author, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithAuthor {
    /// The post.
    pub post: Post,
    /// Who wrote it.
    pub author: User,
}

/// Each post with its author: 1 statement for all the authors (many-to-one,
/// select-in form).
async fn posts_with_authors(
    conn: &mut Conn<'_>,
    posts: Vec<Post>,
) -> diesel::QueryResult<Vec<PostWithAuthor>> {
    let authors: Vec<User> = match distinct_ids(&posts, |p| Some(p.author_id)) {
        Some(ids) => run!(conn, load(users_by_ids(&ids)))?,
        None => Vec::new(),
    };
    let authors = by_id(authors, |u| u.id);
    Ok(posts
        .into_iter()
        .filter_map(|post| {
            // An author deleted between the two statements took the post
            // with it (the cascade): it is gone, not orphaned.
            let author = authors.get(&post.author_id)?.clone();
            Some(PostWithAuthor { post, author })
        })
        .collect())
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

/// Each post with its comments, from one load of the comments of them all.
pub(crate) fn posts_with_comments(
    posts: Vec<Post>,
    comments: Vec<Comment>,
) -> Vec<PostWithComments> {
    let mut grouped = group_by_key(comments, &posts, |c| c.post_id, |p| p.id);
    posts
        .into_iter()
        .map(|post| {
            let comments = grouped.remove(&post.id).unwrap_or_default();
            PostWithComments { post, comments }
        })
        .collect()
}

/// A post with its comments and its tags, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithCommentsAndTags {
    /// The post.
    pub post: Post,
    /// Its comments, oldest first.
    pub comments: Vec<Comment>,
    /// Its tags, by name.
    pub tags: Vec<Tag>,
}

/// Each post with its comments and tags: 2 statements for all of them
/// (none when there are no posts).
pub(crate) async fn load_comments_and_tags(
    conn: &mut Conn<'_>,
    posts: Vec<Post>,
) -> diesel::QueryResult<Vec<PostWithCommentsAndTags>> {
    let mut tags = load_tags_of_posts(conn, &posts).await?;
    let comments = match ids(&posts, |p| p.id) {
        Some(ids) => run!(conn, load(comments_of_posts(&ids)))?,
        None => Vec::new(),
    };
    Ok(posts_with_comments(posts, comments)
        .into_iter()
        .map(|PostWithComments { post, comments }| {
            let tags = tags.remove(&post.id).unwrap_or_default();
            PostWithCommentsAndTags {
                post,
                comments,
                tags,
            }
        })
        .collect())
}

// ---- input checks ---------------------------------------------------------------

fn check_new_post(post: &NewPost) -> Result<(), RepoError> {
    validate::required_text("title", &post.title, Some(200))?;
    validate::required_text("content", &post.content, None)?;
    validate::id("author_id", post.author_id)
}

fn check_changeset(changes: &PostChangeset) -> Result<(), RepoError> {
    if let Some(title) = &changes.title {
        validate::required_text("title", title, Some(200))?;
    }
    if let Some(content) = &changes.content {
        validate::required_text("content", content, None)?;
    }
    Ok(())
}

// ---- repository -------------------------------------------------------------------

/// Posts: writes, lookups, the join by author email, and a post's comments.
pub struct PostRepository<'a, E> {
    db: &'a E,
}

/// `posts()` on every executor.
pub trait PostsExt: Executor + Sized {
    /// Posts, on this executor's connections.
    fn posts(&self) -> PostRepository<'_, Self> {
        PostRepository { db: self }
    }
}

impl<E: Executor> PostsExt for E {}

impl<'a, E: Executor> PostRepository<'a, E> {
    /// Inserts a post; an author that does not exist is `RelatedMissing`.
    pub fn create<'s>(&self, post: &'s NewPost) -> Out<'s, E, Post>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            check_new_post(post)?;
            call(db, async |conn| insert_post(conn, post).await)
                .await
                .map_err(|e| e.naming_related("author_id"))
        })
    }

    /// Inserts many posts in one transaction, one multi-row `INSERT` per
    /// chunk that fits the bind limit. All or nothing.
    pub fn create_many<'s>(&self, posts: &'s [NewPost]) -> Out<'s, E, Vec<Post>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            posts.iter().try_for_each(check_new_post)?;
            if posts.is_empty() {
                return Ok(Vec::new());
            }
            call(db, async |conn| insert_posts(conn, posts).await)
                .await
                .map_err(|e| e.naming_related("author_id"))
        })
    }

    /// Loads many posts without reading them back; see
    /// `UserRepository::insert_many`.
    pub fn insert_many<'s>(&self, posts: &'s [NewPost]) -> Out<'s, E, usize>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            posts.iter().try_for_each(check_new_post)?;
            bulk::insert_many::<E, posts::table, NewPost, CHUNK, PG_CHUNK>(
                db,
                posts::table,
                posts,
                copy_posts,
            )
            .await
            .map_err(|e| e.naming_related("author_id"))
        })
    }

    /// The post with this id. 1 statement.
    pub fn get_by_id(&self, id: i32) -> Out<'a, E, Post> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let post = read(db, async |conn| {
                run!(conn, get_result(post_by_id(id))).optional()
            })
            .await?;
            found(post, "post", || format!("id {id}"))
        })
    }

    /// A post and its author in 1 statement (inner join).
    pub fn get_with_author(&self, id: i32) -> Out<'a, E, (Post, User)> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let row = read(db, async |conn| {
                run!(conn, get_result(post_with_author(id))).optional()
            })
            .await?;
            found(row, "post", || format!("id {id}"))
        })
    }

    /// A post with its author (joined) and its comments: 2 statements, sent
    /// together on tokio-postgres (one round trip); elsewhere 2, or 1 when
    /// there is no post.
    pub fn post_with_author_and_comments(&self, id: i32) -> Out<'a, E, PostWithAuthorAndComments> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let post = read(db, async |conn| {
                post_with_author_and_comments(conn, id).await
            })
            .await?;
            found(post, "post", || format!("id {id}"))
        })
    }

    /// A keyset page of posts, each with its author (many-to-one, select-in
    /// form): 2 statements, whatever the page size. `next` follows the
    /// posts' ids.
    pub fn page_with_authors(
        &self,
        after: Option<i32>,
        limit: i64,
    ) -> Out<'a, E, Page<PostWithAuthor>> {
        let db = self.db;
        db.output(crate::QueryScope::repeats_intended_in(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            let after = after.unwrap_or(0);
            let posts = read(db, async |conn| {
                let posts = run!(conn, load(posts_after(after, limit)))?;
                posts_with_authors(conn, posts).await
            })
            .await?;
            Ok(Page::new(posts, limit, |p| p.post.id))
        }))
    }

    /// A post with its tags: 2 statements.
    pub fn get_with_tags(&self, id: i32) -> Out<'a, E, PostWithTags> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let post = read(db, async |conn| {
                let Some(post) = run!(conn, get_result(post_by_id(id))).optional()? else {
                    return Ok(None);
                };
                Ok(posts_with_tags(conn, vec![post]).await?.pop())
            })
            .await?;
            found(post, "post", || format!("id {id}"))
        })
    }

    /// An author's posts, oldest first, each with its tags: 2 statements,
    /// whatever the number of posts and tags.
    pub fn by_author_with_tags(&self, author_id: i32) -> Out<'a, E, Vec<PostWithTags>> {
        let db = self.db;
        db.output(async move {
            validate::id("author_id", author_id)?;
            read(db, async |conn| {
                let posts = run!(conn, load(posts_by_author(author_id)))?;
                posts_with_tags(conn, posts).await
            })
            .await
        })
    }

    /// Applies `changes` and returns the post as stored.
    pub fn update<'s>(&self, id: i32, changes: &'s PostChangeset) -> Out<'s, E, Post>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            check_changeset(changes)?;
            let post = if *changes == PostChangeset::default() {
                call(db, async |conn| {
                    run!(conn, get_result(post_by_id(id))).optional()
                })
                .await?
            } else {
                call(db, async |conn| update_post(conn, id, changes).await).await?
            };
            found(post, "post", || format!("id {id}"))
        })
    }

    /// An author's posts, oldest first. 1 statement.
    pub fn by_author(&self, author_id: i32) -> Out<'a, E, Vec<Post>> {
        let db = self.db;
        db.output(async move {
            validate::id("author_id", author_id)?;
            read(db, async |conn| {
                run!(conn, load(posts_by_author(author_id)))
            })
            .await
        })
    }

    /// The posts of the user with this email: posts joined to users. 1 statement.
    pub fn by_author_email<'s>(&self, email: &'s str) -> Out<'s, E, Vec<Post>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::email(email)?;
            read(db, async |conn| {
                run!(conn, load(posts_by_author_email(email)))
            })
            .await
        })
    }

    /// A post's comments as a query to refine (author, cursor, order,
    /// limit) before [`PostRepository::load_comments`] runs it.
    pub fn comments_query(&self, post_id: i32) -> CommentsQuery {
        CommentsQuery::new(post_id)
    }

    /// Runs a [`CommentsQuery`]. 1 statement.
    pub fn load_comments<'s>(&self, query: &'s CommentsQuery) -> Out<'s, E, Vec<Comment>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::id("post_id", query.post_id)?;
            if let Some(limit) = query.limit {
                validate::limit(limit, MAX_PAGE_SIZE)?;
            }
            read(db, async |conn| comments_matching(conn, query).await).await
        })
    }

    /// Deletes a post and, by cascade, its comments.
    pub fn delete(&self, id: i32) -> Out<'a, E, ()> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let rows = call(db, async |conn| delete_post(conn, id).await).await?;
            deleted(rows, "post", id)
        })
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
            name: "posts_of_authors",
            description: "eager load level 2: posts of many users",
            needs_index: true,
            explain: |conn| explain::explain!(conn, posts_of_authors(&[1, 2, 3])),
        },
        ExplainedQuery {
            name: "posts_by_author_email",
            description: "posts joined to users by email (PostRepository::by_author_email)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, posts_by_author_email("user1@example.com")),
        },
    ]
}
