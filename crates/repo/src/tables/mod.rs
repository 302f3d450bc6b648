//! keel's own tables, each one module written on the public core the way a
//! service writes its own: queries, operations, repository, eager-loading
//! types and input checks. Nothing below this module knows these tables.

pub mod comments;
pub mod posts;
pub mod tags;
pub mod users;

use serde::Serialize;

use crate::catalog::ColumnInfo;
use crate::executor::read;
use crate::explain::ExplainedQuery;
use crate::{Executor, Out, TableSize};

/// The size of each of keel's tables: what a resumable load needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSizes {
    /// `users`.
    pub users: TableSize,
    /// `posts`.
    pub posts: TableSize,
    /// `comments`.
    pub comments: TableSize,
}

/// Rows and highest id of each of keel's tables: 3 statements.
pub fn table_sizes<E: Executor>(db: &E) -> Out<'_, E, TableSizes> {
    db.output(async move {
        Ok(TableSizes {
            users: read(db, async |conn| users::size(conn).await).await?,
            posts: read(db, async |conn| posts::size(conn).await).await?,
            comments: read(db, async |conn| comments::size(conn).await).await?,
        })
    })
}

/// Every query keel's tables show to `keel explain`, in order.
pub fn explained_queries() -> Vec<ExplainedQuery> {
    let mut queries = users::explained_queries();
    queries.extend(posts::explained_queries());
    queries.extend(comments::explained_queries());
    queries.extend(tags::explained_queries());
    queries
}

/// The columns the compiled schema (`keel-schema`) expects, for `keel doctor`'s
/// drift check.
pub fn compiled_columns() -> Vec<ColumnInfo> {
    use diesel::QueryDsl;
    use keel_schema::{comments, post_tags, posts, tags, users};
    let mut columns = crate::doctor::columns_of("users", &users::table.select(users::all_columns));
    columns.extend(crate::doctor::columns_of(
        "posts",
        &posts::table.select(posts::all_columns),
    ));
    columns.extend(crate::doctor::columns_of(
        "comments",
        &comments::table.select(comments::all_columns),
    ));
    columns.extend(crate::doctor::columns_of(
        "tags",
        &tags::table.select(tags::all_columns),
    ));
    columns.extend(crate::doctor::columns_of(
        "post_tags",
        &post_tags::table.select(post_tags::all_columns),
    ));
    columns.sort();
    columns
}
