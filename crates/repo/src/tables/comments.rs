//! The `comments` table: its queries, operations, repository, the refinable
//! [`CommentsQuery`], threads of replies ([`CommentThread`]) and input checks.

use diesel::backend::Backend;
use diesel::dsl::{self, AsSelect};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Integer};
use diesel::{
    ExpressionMethods, JoinOnDsl, NullableExpressionMethods, OptionalExtension, QueryDsl,
    SelectableHelper,
};
use keel_models::{Comment, NewComment, Post};
use keel_schema::{comments, posts};
use serde::Serialize;

use crate::executor::{call, read};
use crate::explain::{self, ExplainedQuery};
use crate::loading::{InIdList, by_id, distinct_ids};
use crate::page::{MAX_PAGE_SIZE, Page, deleted, found};
use crate::{Conn, Executor, Out, QueryScope, RepoError, TableSize, bulk, run, validate};

// ---- queries ----------------------------------------------------------------

/// One comment by id.
#[dsl::auto_type]
pub fn comment_by_id<DB: Backend>(id: i32) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table.find(id).select(select)
}

/// Comments on many posts at once: the next level of an eager load, the
/// ids bound as one value.
#[dsl::auto_type]
pub fn comments_of_posts<'a, DB: Backend>(post_ids: &'a [i32]) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    let posts: InIdList<comments::post_id> = InIdList::new(comments::post_id, post_ids);
    comments::table
        .filter(posts)
        .order(comments::id.asc())
        .select(select)
}

/// The ids of one author's posts, as a subquery.
type PostIdsOfAuthor =
    dsl::Select<dsl::Filter<posts::table, dsl::Eq<posts::author_id, i32>>, posts::id>;

/// The comments on one author's posts, by id: the last level of one user's
/// eager load, selected by the author rather than by the posts' ids, so
/// that it can be sent together with the levels above it on tokio-postgres
/// (see [`Pipeline`](crate::Pipeline)). PostgreSQL only: the posts' ids are
/// gathered into an array first (`post_id = ANY(ARRAY(SELECT ...))`), one
/// index scan of the comments for all of them. Written as `IN (SELECT ...)`,
/// PostgreSQL plans a nested loop that scans the comments' index once per
/// post, and spent about 30% more CPU on it (BENCHMARKS.md, "HTTP, ninth
/// session"). Not for SQLite: there the equality on a bound value makes
/// SQLite, which plans with its ANALYZE samples, prepare the statement again
/// on every call.
#[dsl::auto_type]
pub fn comments_on_posts_of_author(author_id: i32) -> _ {
    let select: AsSelect<Comment, Pg> = Comment::as_select();
    let post_ids: dsl::array<Integer, PostIdsOfAuthor> = dsl::array(
        posts::table
            .filter(posts::author_id.eq(author_id))
            .select(posts::id),
    );
    comments::table
        .filter(comments::post_id.eq_any(post_ids))
        .order(comments::id.asc())
        .select(select)
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

/// The post a comment is on: one statement, comments joined to posts
/// (many-to-one, joined form).
#[dsl::auto_type]
pub fn post_of_comment<DB: Backend>(comment_id: i32) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    comments::table
        .inner_join(posts::table)
        .filter(comments::id.eq(comment_id))
        .select(select)
}

/// Posts by id, many at once: the select-in form of comment → post.
#[dsl::auto_type]
pub fn posts_by_ids<'a, DB: Backend>(post_ids: &'a [i32]) -> _ {
    let select: AsSelect<Post, DB> = Post::as_select();
    let wanted: InIdList<posts::id> = InIdList::new(posts::id, post_ids);
    posts::table
        .filter(wanted)
        .order(posts::id.asc())
        .select(select)
}

/// Comments by id, many at once: the select-in form of reply → parent.
#[dsl::auto_type]
pub fn comments_by_ids<'a, DB: Backend>(comment_ids: &'a [i32]) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    let wanted: InIdList<comments::id> = InIdList::new(comments::id, comment_ids);
    comments::table
        .filter(wanted)
        .order(comments::id.asc())
        .select(select)
}

/// The direct replies to many comments at once: parent → replies, on
/// `ix_comments_parent_id`.
#[dsl::auto_type]
pub fn replies_to<'a, DB: Backend>(parent_ids: &'a [i32]) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    let parents: InIdList<comments::parent_id> = InIdList::new(comments::parent_id, parent_ids);
    comments::table
        .filter(parents)
        .order(comments::id.asc())
        .select(select)
}

/// A post's comments down to `max_depth` levels of replies, as one
/// `WITH RECURSIVE` statement: the top-level comments, then each level's
/// replies. Written once for both backends: SQLite reads `$1` and `$2` as
/// its first and second parameters, as PostgreSQL does.
///
/// The recursion ends: a reply's parent always has a smaller id
/// (`ck_comments_parent_before_reply`, and the parent must exist first), so
/// no chain of replies loops; and the depth is bounded besides.
const THREAD_SQL: &str = "\
    WITH RECURSIVE thread (id, body, post_id, author_id, created_at, parent_id, depth) AS ( \
        SELECT id, body, post_id, author_id, created_at, parent_id, 1 FROM comments \
        WHERE post_id = $1 AND parent_id IS NULL \
        UNION ALL \
        SELECT c.id, c.body, c.post_id, c.author_id, c.created_at, c.parent_id, thread.depth + 1 \
        FROM comments c JOIN thread ON c.parent_id = thread.id WHERE thread.depth < $2 \
    ) \
    SELECT id, body, post_id, author_id, created_at, parent_id FROM thread ORDER BY id";

/// [`THREAD_SQL`] with its arguments bound, for either backend.
pub fn comment_thread<DB>(post_id: i32, max_depth: i32) -> BoxedSqlQuery<'static, DB, SqlQuery>
where
    DB: Backend + HasSqlType<Integer>,
    i32: ToSql<Integer, DB>,
{
    diesel::sql_query(THREAD_SQL)
        .into_boxed::<DB>()
        .bind::<Integer, _>(post_id)
        .bind::<Integer, _>(max_depth)
}

/// How many comments there are, and the highest id.
#[dsl::auto_type]
pub fn comment_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<comments::id> = dsl::max(comments::id);
    comments::table.select((dsl::count_star(), highest))
}

/// The rows of a [`CommentsQuery`], before their order. Every refinement
/// is a bound value (an absent author is the whole id range, an absent
/// cursor the lowest id, an absent limit the largest), so the statement is
/// the same for every query: prepared once, on the post's index.
#[dsl::auto_type]
fn comments_filtered(post_id: i32, first_author: i32, last_author: i32, after: i32) -> _ {
    comments::table
        .filter(comments::post_id.eq(post_id))
        .filter(comments::author_id.between(first_author, last_author))
        .filter(comments::id.gt(after))
}

/// [`comments_filtered`], oldest first.
#[dsl::auto_type]
fn comments_oldest_first<DB: Backend>(filtered: comments_filtered, limit: i64) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    filtered
        .order(comments::id.asc())
        .limit(limit)
        .select(select)
}

/// [`comments_filtered`], newest first.
#[dsl::auto_type]
fn comments_newest_first<DB: Backend>(filtered: comments_filtered, limit: i64) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    filtered
        .order(comments::id.desc())
        .limit(limit)
        .select(select)
}

/// All of a post's comments, oldest first: a [`CommentsQuery`] with no
/// refinement, the common case (an N+1 loop, a post page).
#[dsl::auto_type]
pub(crate) fn all_comments_oldest_first<DB: Backend>(post_id: i32) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table
        .filter(comments::post_id.eq(post_id))
        .order(comments::id.asc())
        .select(select)
}

/// All of a post's comments, newest first.
#[dsl::auto_type]
fn all_comments_newest_first<DB: Backend>(post_id: i32) -> _ {
    let select: AsSelect<Comment, DB> = Comment::as_select();
    comments::table
        .filter(comments::post_id.eq(post_id))
        .order(comments::id.desc())
        .select(select)
}

/// Runs a [`CommentsQuery`]: 1 statement. Without refinements it is the
/// plain statement (one bind, no limit): PostgreSQL runs the refined one's
/// extra bounds and `LIMIT` on every call, which cost the N+1 step (B3)
/// measurably against a hand-written `WHERE post_id = $1`.
pub(crate) async fn comments_matching(
    conn: &mut Conn<'_>,
    query: &CommentsQuery,
) -> diesel::QueryResult<Vec<Comment>> {
    if query.author_id.is_none() && query.after.is_none() && query.limit.is_none() {
        return if query.newest_first {
            run!(conn, load(all_comments_newest_first(query.post_id)))
        } else {
            run!(conn, load(all_comments_oldest_first(query.post_id)))
        };
    }
    let authors = query.author_id.map_or((i32::MIN, i32::MAX), |a| (a, a));
    let after = query.after.unwrap_or(i32::MIN);
    let limit = query.limit.unwrap_or(i64::MAX);
    let filtered = comments_filtered(query.post_id, authors.0, authors.1, after);
    if query.newest_first {
        run!(conn, load(comments_newest_first(filtered, limit)))
    } else {
        run!(conn, load(comments_oldest_first(filtered, limit)))
    }
}

/// A post's comments as a query to refine before it runs (the "dynamic
/// relationship"): from `PostRepository::comments_query`, run by
/// `PostRepository::load_comments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentsQuery {
    pub(crate) post_id: i32,
    pub(crate) author_id: Option<i32>,
    pub(crate) after: Option<i32>,
    pub(crate) newest_first: bool,
    pub(crate) limit: Option<i64>,
}

impl CommentsQuery {
    /// All comments of a post, oldest first.
    pub fn new(post_id: i32) -> Self {
        Self {
            post_id,
            author_id: None,
            after: None,
            newest_first: false,
            limit: None,
        }
    }

    /// Only comments written by this user.
    #[must_use]
    pub fn by_author(mut self, author_id: i32) -> Self {
        self.author_id = Some(author_id);
        self
    }

    /// Only comments with an id above this one.
    #[must_use]
    pub fn after(mut self, id: i32) -> Self {
        self.after = Some(id);
        self
    }

    /// Newest first (the default is oldest first).
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// At most `n` comments.
    #[must_use]
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = Some(n);
        self
    }
}

// ---- operations -------------------------------------------------------------

/// Rows in the table and the highest id.
pub(crate) async fn size(conn: &mut Conn<'_>) -> diesel::QueryResult<TableSize> {
    let (rows, max_id) = run!(conn, get_result(comment_count_and_max_id()))?;
    Ok(TableSize { rows, max_id })
}

async fn insert_comment(conn: &mut Conn<'_>, comment: &NewComment) -> diesel::QueryResult<Comment> {
    conn.durable_write(async |c| {
        run!(
            c,
            get_result(
                diesel::insert_into(comments::table)
                    .values(comment)
                    .returning(Comment::as_returning())
            )
        )
    })
    .await
}

async fn delete_comment(conn: &mut Conn<'_>, id: i32) -> diesel::QueryResult<usize> {
    conn.durable_write(async |c| run!(c, execute(diesel::delete(comments::table.find(id)))))
        .await
}

// The comments table once more, as the parents of replies (a self-join).
diesel::alias!(comments as parent_comments: ParentComments);

/// A reply's parent: one statement, comments joined to themselves
/// (many-to-one, joined form). `None` for a top-level or missing comment.
async fn parent_joined(
    conn: &mut Conn<'_>,
    comment_id: i32,
) -> diesel::QueryResult<Option<Comment>> {
    run!(
        conn,
        get_result(
            comments::table
                .inner_join(
                    parent_comments.on(parent_comments
                        .field(comments::id)
                        .nullable()
                        .eq(comments::parent_id)),
                )
                .filter(comments::id.eq(comment_id))
                // `Comment`'s columns, in its field order, from the parent's side.
                .select(parent_comments.fields((
                    comments::id,
                    comments::body,
                    comments::post_id,
                    comments::author_id,
                    comments::created_at,
                    comments::parent_id,
                )))
        )
    )
    .optional()
}

/// Each comment with the comment it replies to: 1 statement for all the
/// parents (many-to-one, select-in form).
async fn comments_with_parents(
    conn: &mut Conn<'_>,
    comments: Vec<Comment>,
) -> diesel::QueryResult<Vec<CommentWithParent>> {
    let parents: Vec<Comment> = match distinct_ids(&comments, |c| c.parent_id) {
        Some(ids) => run!(conn, load(comments_by_ids(&ids)))?,
        None => Vec::new(),
    };
    let parents = by_id(parents, |c| c.id);
    Ok(comments
        .into_iter()
        .filter_map(|comment| {
            let parent = match comment.parent_id {
                // A parent deleted between the two statements took its
                // replies with it: such a reply is gone, not top-level.
                Some(id) => Some(parents.get(&id)?.clone()),
                None => None,
            };
            Some(CommentWithParent { comment, parent })
        })
        .collect())
}

/// What [`insert_reply`] found.
enum Replied {
    /// The reply, stored.
    Stored(Comment),
    /// No comment has the parent's id.
    ParentMissing,
    /// The parent is on another post.
    ParentElsewhere,
}

/// Stores `comment` as a reply to `parent_id`, which must be on the same
/// post: 2 statements.
async fn insert_reply(
    conn: &mut Conn<'_>,
    parent_id: i32,
    comment: &NewComment,
) -> diesel::QueryResult<Replied> {
    let Some(parent) = run!(conn, get_result(comment_by_id(parent_id))).optional()? else {
        return Ok(Replied::ParentMissing);
    };
    if parent.post_id != comment.post_id {
        return Ok(Replied::ParentElsewhere);
    }
    let reply = conn
        .durable_write(async |c| {
            run!(
                c,
                get_result(
                    diesel::insert_into(comments::table)
                        .values((comment, comments::parent_id.eq(parent_id)))
                        .returning(Comment::as_returning())
                )
            )
        })
        .await?;
    Ok(Replied::Stored(reply))
}

/// A post's comments as trees, `max_depth` levels deep: 1 statement.
async fn load_thread(
    conn: &mut Conn<'_>,
    post_id: i32,
    max_depth: i32,
) -> diesel::QueryResult<Vec<CommentThread>> {
    let rows: Vec<Comment> = run!(conn, load(comment_thread(post_id, max_depth)))?;
    Ok(CommentThread::assemble(rows))
}

/// Each comment with the post it is on: 1 statement for all of them.
async fn comments_with_posts(
    conn: &mut Conn<'_>,
    comments: Vec<Comment>,
) -> diesel::QueryResult<Vec<CommentWithPost>> {
    let posts: Vec<Post> = match distinct_ids(&comments, |c| Some(c.post_id)) {
        Some(ids) => run!(conn, load(posts_by_ids(&ids)))?,
        None => Vec::new(),
    };
    let posts = by_id(posts, |p| p.id);
    Ok(comments
        .into_iter()
        .filter_map(|comment| {
            // A post deleted between the two statements takes its comments
            // with it: such a comment is gone, not orphaned.
            let post = posts.get(&comment.post_id)?.clone();
            Some(CommentWithPost { comment, post })
        })
        .collect())
}

fn copy_comments(
    conn: &mut diesel::pg::PgConnection,
    rows: &[NewComment],
) -> diesel::QueryResult<usize> {
    diesel::ExecuteCopyFromDsl::execute(
        diesel::copy_from(comments::table).from_insertable(rows),
        conn,
    )
}

/// Inserts `rows` and reads them back, one multi-row `INSERT … RETURNING`
/// per chunk, in one transaction.
async fn insert_comments(
    conn: &mut Conn<'_>,
    rows: &[NewComment],
) -> diesel::QueryResult<Vec<Comment>> {
    bulk::insert_returning_chunks(conn, rows, (CHUNK, PG_CHUNK), async |c, chunk| {
        let insert = diesel::insert_into(comments::table).values(chunk);
        run!(c, get_results(insert.returning(Comment::as_returning())))
    })
    .await
}

/// Rows per multi-row `INSERT` of `NewComment` (3 columns), on SQLite and on PostgreSQL.
const CHUNK: usize = bulk::sqlite_rows_per_statement(3);
const PG_CHUNK: usize = bulk::postgres_rows_per_statement(3);

// ---- eager-loading results ----------------------------------------------------

/// Deepest a thread load goes: replies to replies, this many levels.
pub const MAX_THREAD_DEPTH: i32 = 32;

/// A comment with its replies, and theirs, as deep as the load went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommentThread {
    /// The comment.
    pub comment: Comment,
    /// Its direct replies, oldest first, each with its own.
    pub replies: Vec<CommentThread>,
}

impl CommentThread {
    /// Trees from the rows of a thread load: comments without a parent in
    /// `rows` are the roots; replies hang under their parents, oldest first.
    pub fn assemble(rows: Vec<Comment>) -> Vec<CommentThread> {
        let present: std::collections::HashSet<i32> = rows.iter().map(|c| c.id).collect();
        let mut replies: std::collections::HashMap<i32, Vec<Comment>> =
            std::collections::HashMap::new();
        let mut roots = Vec::new();
        for comment in rows {
            match comment.parent_id.filter(|parent| present.contains(parent)) {
                Some(parent) => replies.entry(parent).or_default().push(comment),
                None => roots.push(comment),
            }
        }
        roots
            .into_iter()
            .map(|root| Self::grow(root, &mut replies))
            .collect()
    }

    /// `comment` with its replies taken from `replies`. Recursion depth is
    /// the thread's, at most [`MAX_THREAD_DEPTH`].
    fn grow(
        comment: Comment,
        replies: &mut std::collections::HashMap<i32, Vec<Comment>>,
    ) -> CommentThread {
        let children = replies.remove(&comment.id).unwrap_or_default();
        CommentThread {
            comment,
            replies: children
                .into_iter()
                .map(|child| Self::grow(child, replies))
                .collect(),
        }
    }

    /// This comment and every reply under it.
    pub fn len(&self) -> usize {
        1 + self.replies.iter().map(CommentThread::len).sum::<usize>()
    }

    /// Always false: a thread holds at least its own comment.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Levels from this comment down to its deepest reply (1 for none).
    pub fn depth(&self) -> usize {
        1 + self
            .replies
            .iter()
            .map(CommentThread::depth)
            .max()
            .unwrap_or(0)
    }
}

/// A comment with the comment it replies to, loaded (`None`: top level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommentWithParent {
    /// The comment.
    pub comment: Comment,
    /// What it replies to.
    pub parent: Option<Comment>,
}

/// A comment with the post it is on, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommentWithPost {
    /// The comment.
    pub comment: Comment,
    /// The post it is on.
    pub post: Post,
}

/// The foreign keys a comment's write may violate (SQLite does not say which).
const FOREIGN_KEYS: &str = "post_id or author_id";
/// The same for a reply.
const FOREIGN_KEYS_OF_REPLY: &str = "post_id, author_id or parent_id";

fn check_new_comment(comment: &NewComment) -> Result<(), RepoError> {
    validate::required_text("body", &comment.body, None)?;
    validate::id("post_id", comment.post_id)?;
    validate::id("author_id", comment.author_id)
}

// ---- repository -------------------------------------------------------------------

/// Comments: writes, a post's comments page by page, an author's comments.
pub struct CommentRepository<'a, E> {
    db: &'a E,
}

/// `comments()` on every executor.
pub trait CommentsExt: Executor + Sized {
    /// Comments, on this executor's connections.
    fn comments(&self) -> CommentRepository<'_, Self> {
        CommentRepository { db: self }
    }
}

impl<E: Executor> CommentsExt for E {}

impl<'a, E: Executor> CommentRepository<'a, E> {
    /// Inserts a comment; a post or author that does not exist is `RelatedMissing`.
    pub fn create<'s>(&self, comment: &'s NewComment) -> Out<'s, E, Comment>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            check_new_comment(comment)?;
            call(db, async |conn| insert_comment(conn, comment).await)
                .await
                .map_err(|e| e.naming_related(FOREIGN_KEYS))
        })
    }

    /// Stores `comment` as a reply to the comment `parent_id`. The parent
    /// must be on the same post (else `Validation` on `parent_id`); a
    /// missing parent is `RelatedMissing`. 2 statements.
    pub fn reply<'s>(&self, parent_id: i32, comment: &'s NewComment) -> Out<'s, E, Comment>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::id("parent_id", parent_id)?;
            check_new_comment(comment)?;
            let replied = call(db, async |conn| {
                insert_reply(conn, parent_id, comment).await
            })
            .await
            .map_err(|e| e.naming_related(FOREIGN_KEYS_OF_REPLY))?;
            match replied {
                Replied::Stored(reply) => Ok(reply),
                Replied::ParentMissing => Err(RepoError::RelatedMissing {
                    field: "parent_id".to_owned(),
                }),
                Replied::ParentElsewhere => Err(RepoError::validation(
                    "parent_id",
                    format!("comment {parent_id} is on another post"),
                )),
            }
        })
    }

    /// A post's comments as threads: top-level comments, each with its
    /// replies down to `max_depth` levels (1 = top level only, at most
    /// [`MAX_THREAD_DEPTH`]). One `WITH RECURSIVE` statement, whatever the
    /// number of comments; a missing post has none.
    pub fn thread(&self, post_id: i32, max_depth: i32) -> Out<'a, E, Vec<CommentThread>> {
        let db = self.db;
        db.output(async move {
            validate::id("post_id", post_id)?;
            if !(1..=MAX_THREAD_DEPTH).contains(&max_depth) {
                return Err(RepoError::validation(
                    "depth",
                    format!("{max_depth} is out of range: 1 to {MAX_THREAD_DEPTH} levels"),
                ));
            }
            read(db, async |conn| load_thread(conn, post_id, max_depth).await).await
        })
    }

    /// The direct replies to a comment, oldest first. 1 statement.
    pub fn replies(&self, comment_id: i32) -> Out<'a, E, Vec<Comment>> {
        let db = self.db;
        db.output(async move {
            validate::id("comment_id", comment_id)?;
            read(db, async |conn| run!(conn, load(replies_to(&[comment_id])))).await
        })
    }

    /// The comment this one replies to: 1 statement, a self-join
    /// (many-to-one, joined form). `None` for a top-level comment; a
    /// missing comment is `NotFound`.
    pub fn parent_of(&self, comment_id: i32) -> Out<'a, E, Option<Comment>> {
        let db = self.db;
        db.output(async move {
            validate::id("comment_id", comment_id)?;
            let found_parent = read(db, async |conn| {
                match parent_joined(conn, comment_id).await? {
                    Some(parent) => Ok(Some(Some(parent))),
                    // No parent: a top-level comment, or no comment at all.
                    None => run!(conn, get_result(comment_by_id(comment_id)))
                        .optional()
                        .map(|comment| comment.map(|_| None)),
                }
            })
            .await?;
            found(found_parent, "comment", || format!("id {comment_id}"))
        })
    }

    /// A post's comments, oldest first, each with the comment it replies to
    /// (many-to-one, select-in form): 2 statements, whatever the number.
    pub fn for_post_with_parents(&self, post_id: i32) -> Out<'a, E, Vec<CommentWithParent>> {
        let db = self.db;
        db.output(async move {
            validate::id("post_id", post_id)?;
            read(db, async |conn| {
                let comments = run!(conn, load(comments_of_posts(&[post_id])))?;
                comments_with_parents(conn, comments).await
            })
            .await
        })
    }

    /// The post a comment is on: 1 statement, a join (many-to-one, joined
    /// form). A missing comment is `NotFound`.
    pub fn post_of(&self, comment_id: i32) -> Out<'a, E, Post> {
        let db = self.db;
        db.output(async move {
            validate::id("comment_id", comment_id)?;
            let post = read(db, async |conn| {
                run!(conn, get_result(post_of_comment(comment_id))).optional()
            })
            .await?;
            found(post, "comment", || format!("id {comment_id}"))
        })
    }

    /// Every comment a user wrote, each with the post it is on (many-to-one,
    /// select-in form): 2 statements, whatever the number of comments.
    pub fn by_author_with_posts(&self, author_id: i32) -> Out<'a, E, Vec<CommentWithPost>> {
        let db = self.db;
        db.output(async move {
            validate::id("author_id", author_id)?;
            read(db, async |conn| {
                let comments = run!(conn, load(comments_by_author(author_id)))?;
                comments_with_posts(conn, comments).await
            })
            .await
        })
    }

    /// Inserts many comments in one transaction, one multi-row `INSERT` per
    /// chunk that fits the bind limit. All or nothing.
    pub fn create_many<'s>(&self, comments: &'s [NewComment]) -> Out<'s, E, Vec<Comment>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            comments.iter().try_for_each(check_new_comment)?;
            if comments.is_empty() {
                return Ok(Vec::new());
            }
            call(db, async |conn| insert_comments(conn, comments).await)
                .await
                .map_err(|e| e.naming_related(FOREIGN_KEYS))
        })
    }

    /// Loads many comments without reading them back; see
    /// `UserRepository::insert_many`.
    pub fn insert_many<'s>(&self, comments: &'s [NewComment]) -> Out<'s, E, usize>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            comments.iter().try_for_each(check_new_comment)?;
            bulk::insert_many::<E, comments::table, NewComment, CHUNK, PG_CHUNK>(
                db,
                comments::table,
                comments,
                copy_comments,
            )
            .await
            .map_err(|e| e.naming_related(FOREIGN_KEYS))
        })
    }

    /// The comment with this id. 1 statement.
    pub fn get_by_id(&self, id: i32) -> Out<'a, E, Comment> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let comment = read(db, async |conn| {
                run!(conn, get_result(comment_by_id(id))).optional()
            })
            .await?;
            found(comment, "comment", || format!("id {id}"))
        })
    }

    /// A keyset page of a post's comments, oldest first. 1 statement; a
    /// paging loop is not an N+1.
    pub fn for_post(
        &self,
        post_id: i32,
        after: Option<i32>,
        limit: i64,
    ) -> Out<'a, E, Page<Comment>> {
        let db = self.db;
        db.output(QueryScope::repeats_intended_in(async move {
            validate::id("post_id", post_id)?;
            validate::limit(limit, MAX_PAGE_SIZE)?;
            let after = after.unwrap_or(0);
            let comments = read(db, async |conn| {
                run!(conn, load(comments_for_post(post_id, after, limit)))
            })
            .await?;
            Ok(Page::new(comments, limit, |c| c.id))
        }))
    }

    /// Every comment a user wrote, oldest first. 1 statement.
    pub fn by_author(&self, author_id: i32) -> Out<'a, E, Vec<Comment>> {
        let db = self.db;
        db.output(async move {
            validate::id("author_id", author_id)?;
            read(db, async |conn| {
                run!(conn, load(comments_by_author(author_id)))
            })
            .await
        })
    }

    /// Deletes a comment.
    pub fn delete(&self, id: i32) -> Out<'a, E, ()> {
        let db = self.db;
        db.output(async move {
            validate::id("id", id)?;
            let rows = call(db, async |conn| delete_comment(conn, id).await).await?;
            deleted(rows, "comment", id)
        })
    }

    /// Rows in the table and the highest id: 1 statement.
    pub fn size(&self) -> Out<'a, E, TableSize> {
        let db = self.db;
        db.output(async move {
            let (rows, max_id) = read(db, async |conn| {
                run!(conn, get_result(comment_count_and_max_id()))
            })
            .await?;
            Ok(TableSize { rows, max_id })
        })
    }
}

// ---- registrations -----------------------------------------------------------------

/// The queries `keel explain` shows for this table, with sample arguments.
pub(crate) fn explained_queries() -> Vec<ExplainedQuery> {
    vec![
        ExplainedQuery {
            name: "comments_of_posts",
            description: "eager load level 3: comments of many posts",
            needs_index: true,
            explain: |conn| explain::explain!(conn, comments_of_posts(&[1, 2, 3])),
        },
        ExplainedQuery {
            name: "replies_to",
            description: "the replies to many comments (a thread's next level)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, replies_to(&[1, 2, 3])),
        },
        ExplainedQuery {
            name: "comment_thread",
            description: "a post's comment thread, one WITH RECURSIVE statement",
            needs_index: true,
            explain: |conn| explain::explain!(conn, comment_thread(1, MAX_THREAD_DEPTH)),
        },
    ]
}
