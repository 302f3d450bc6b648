//! An example of a service extending keel-repo the way keel's own tables do,
//! with nothing but keel-repo's public API:
//!
//! - a query of its own, [`posts_per_author`] (a `GROUP BY`), built once
//!   with `#[diesel::dsl::auto_type]`;
//! - an operation of its own, [`hand_over_posts`]: two statements in one
//!   transaction, written once as an `async fn` over keel's [`Conn`];
//! - a repository of its own, [`BlogStats`], over any keel executor (pool,
//!   session or transaction, sync or async), reached as `db.blog_stats()`
//!   through the extension trait [`BlogStatsExt`].
//!
//! The same code runs on SQLite and PostgreSQL, in sync and async mode:
//! `run!` sends each statement on whichever connection the URL chose, and
//! the executor decides whether a method returns its `Result` or a future.
//! Its statements are counted, scoped, checked by the N+1 guard and mapped
//! to [`RepoError`] like keel's own.

use diesel::dsl::{self, count_star};
use diesel::{ExpressionMethods, QueryDsl, Queryable};
use keel_repo::prelude::*;
use keel_schema::posts;

/// How many posts one author has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct AuthorPostCount {
    /// The author's user id.
    pub author_id: i32,
    /// Their posts.
    pub posts: i64,
}

/// What [`hand_over_posts`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// Posts that changed author.
    pub moved: usize,
    /// Posts the new author has now.
    pub now_owned: i64,
}

// ---- queries ----------------------------------------------------------------

/// Posts per author, by author id; authors without posts are left out.
#[dsl::auto_type]
pub fn posts_per_author() -> _ {
    posts::table
        .group_by(posts::author_id)
        .select((posts::author_id, count_star()))
        .order_by(posts::author_id)
}

/// How many posts one author has.
#[dsl::auto_type]
pub fn post_count_of(author_id: i32) -> _ {
    posts::table
        .filter(posts::author_id.eq(author_id))
        .select(count_star())
}

// ---- operations ---------------------------------------------------------------

/// Gives every post of `from` to `to`, and counts what `to` has now: two
/// statements, in one transaction, so the count is the one the move left. A
/// `to` that is no user is a foreign-key violation (`RelatedMissing`), and
/// nothing moves.
pub async fn hand_over_posts(
    conn: &mut Conn<'_>,
    from: i32,
    to: i32,
) -> diesel::QueryResult<Handover> {
    conn.transaction(async |tx| {
        let moved = run!(
            tx,
            execute(
                diesel::update(posts::table.filter(posts::author_id.eq(from)))
                    .set(posts::author_id.eq(to))
            )
        )?;
        let now_owned = run!(tx, get_result(post_count_of(to)))?;
        Ok(Handover { moved, now_owned })
    })
    .await
}

// ---- repository -----------------------------------------------------------------

/// The blog's statistics, on any keel executor.
pub struct BlogStats<'a, E> {
    db: &'a E,
}

/// `blog_stats()` on every keel pool, session and transaction, both modes.
pub trait BlogStatsExt: Executor + Sized {
    /// The statistics, on this executor's connections.
    fn blog_stats(&self) -> BlogStats<'_, Self> {
        BlogStats { db: self }
    }
}

impl<E: Executor> BlogStatsExt for E {}

impl<'a, E: Executor> BlogStats<'a, E> {
    /// Posts per author: one statement.
    pub fn posts_per_author(&self) -> Out<'a, E, Vec<AuthorPostCount>> {
        let db = self.db;
        db.output(async move { read(db, async |conn| run!(conn, load(posts_per_author()))).await })
    }

    /// One author's post count: one statement. Called once per author, it
    /// is the N+1 that [`BlogStats::posts_per_author`] avoids.
    pub fn post_count_of(&self, author_id: i32) -> Out<'a, E, i64> {
        let db = self.db;
        db.output(async move {
            read(db, async |conn| {
                run!(conn, get_result(post_count_of(author_id)))
            })
            .await
        })
    }

    /// [`hand_over_posts`]: two statements in one transaction.
    pub fn hand_over_posts(&self, from: i32, to: i32) -> Out<'a, E, Handover> {
        let db = self.db;
        db.output(async move {
            call(db, async |conn| hand_over_posts(conn, from, to).await)
                .await
                .map_err(|e| e.naming_related("author_id"))
        })
    }
}
