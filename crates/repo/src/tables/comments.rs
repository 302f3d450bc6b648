//! The `comments` table: its queries, operations, repository, the refinable
//! [`CommentsQuery`] and input checks.

use diesel::backend::Backend;
use diesel::dsl::{self, AsSelect};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use keel_models::{Comment, NewComment};
use keel_schema::comments;

use crate::executor::call;
use crate::explain::{self, ExplainedQuery};
use crate::loading::InIdList;
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

/// Runs a [`CommentsQuery`]: 1 statement.
pub(crate) async fn comments_matching(
    conn: &mut Conn<'_>,
    query: &CommentsQuery,
) -> diesel::QueryResult<Vec<Comment>> {
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

/// The foreign keys a comment's write may violate (SQLite does not say which).
const FOREIGN_KEYS: &str = "post_id or author_id";

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
            let comment = call(db, async |conn| {
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
            let comments = call(db, async |conn| {
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
            call(db, async |conn| {
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
            let (rows, max_id) = call(db, async |conn| {
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
    vec![ExplainedQuery {
        name: "comments_of_posts",
        description: "eager load level 3: comments of many posts",
        needs_index: true,
        explain: |conn| explain::explain!(conn, comments_of_posts(&[1, 2, 3])),
    }]
}
