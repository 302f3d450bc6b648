//! Query plans: what the database would do for a query, and whether it
//! scans a whole table where an index should serve.
//!
//! [`explain_postgres`] runs `EXPLAIN` with sequential scans disabled for the
//! one statement (`SET LOCAL enable_seqscan = off`), so a `Seq Scan` in the
//! plan means no index *can* serve it, whatever the table's size;
//! [`explain_sqlite`] runs `EXPLAIN QUERY PLAN`, where `SCAN t` (not
//! `SEARCH t USING …`) is a full scan. Both take any diesel query, with its
//! bind parameters, so a service can explain its own queries too.

use diesel::pg::{Pg, PgConnection};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Integer, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{Connection, QueryResult, RunQueryDsl};

use crate::conn::Conn;

/// A query's plan, line by line, and the tables it reads in full.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The plan as the database prints it.
    pub lines: Vec<String>,
    /// Tables read by a full scan (no index used).
    pub full_scans: Vec<String>,
}

/// `EXPLAIN <query>` on PostgreSQL: one text row per plan line.
#[derive(Debug, Clone, Copy)]
struct ExplainPg<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for ExplainPg<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("EXPLAIN ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for ExplainPg<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for ExplainPg<Q> {
    type SqlType = Text;
}

impl<Q> RunQueryDsl<PgConnection> for ExplainPg<Q> {}

/// `EXPLAIN QUERY PLAN <query>` on SQLite: (id, parent, notused, detail).
#[derive(Debug, Clone, Copy)]
struct ExplainSqlite<Q>(Q);

impl<Q: QueryFragment<Sqlite>> QueryFragment<Sqlite> for ExplainSqlite<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("EXPLAIN QUERY PLAN ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for ExplainSqlite<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for ExplainSqlite<Q> {
    type SqlType = (Integer, Integer, Integer, Text);
}

impl<Q> RunQueryDsl<SqliteConnection> for ExplainSqlite<Q> {}

/// The plan PostgreSQL would use for `query` if it had to use an index.
pub fn explain_postgres<Q>(conn: &mut PgConnection, query: Q) -> QueryResult<Plan>
where
    Q: QueryFragment<Pg>,
{
    let lines: Vec<String> = conn.transaction(|conn| {
        diesel::sql_query("SET LOCAL enable_seqscan = off").execute(conn)?;
        ExplainPg(query).load(conn)
    })?;
    let full_scans = postgres_full_scans(&lines);
    Ok(Plan { lines, full_scans })
}

/// Tables a PostgreSQL plan reads in full: a `Seq Scan`, or an index scan
/// with no `Index Cond` (it walks the whole index, e.g. the primary key
/// for its order, and filters every row).
fn postgres_full_scans(lines: &[String]) -> Vec<String> {
    struct Node {
        table: String,
        sequential: bool,
        bounded: bool,
    }
    let mut full = Vec::new();
    let mut current: Option<Node> = None;
    let finish = |node: Option<Node>, full: &mut Vec<String>| {
        if let Some(node) = node
            && (node.sequential || !node.bounded)
        {
            full.push(node.table);
        }
    };
    for line in lines {
        let text = line.trim_start().trim_start_matches("->").trim_start();
        let table_after = |marker: &str| {
            text.split(marker)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        if text.starts_with("Seq Scan on ") {
            finish(current.take(), &mut full);
            current = table_after("Seq Scan on ").map(|table| Node {
                table,
                sequential: true,
                bounded: false,
            });
        } else if (text.starts_with("Index Scan using ")
            || text.starts_with("Index Only Scan using "))
            && text.contains(" on ")
        {
            finish(current.take(), &mut full);
            current = table_after(" on ").map(|table| Node {
                table,
                sequential: false,
                bounded: false,
            });
        } else if text.starts_with("Bitmap Heap Scan on ") {
            finish(current.take(), &mut full);
            current = table_after("Bitmap Heap Scan on ").map(|table| Node {
                table,
                sequential: false,
                bounded: false,
            });
        } else if (text.starts_with("Index Cond:") || text.starts_with("Recheck Cond:"))
            && let Some(node) = current.as_mut()
        {
            node.bounded = true;
        }
    }
    finish(current, &mut full);
    full
}

/// The plan SQLite would use for `query`.
pub fn explain_sqlite<Q>(conn: &mut SqliteConnection, query: Q) -> QueryResult<Plan>
where
    Q: QueryFragment<Sqlite>,
{
    let rows: Vec<(i32, i32, i32, String)> = ExplainSqlite(query).load(conn)?;
    let lines: Vec<String> = rows.into_iter().map(|(_, _, _, detail)| detail).collect();
    Ok(Plan {
        full_scans: sqlite_full_scans(&lines),
        lines,
    })
}

/// The tables an `EXPLAIN QUERY PLAN` reads in full. A virtual table
/// (`SCAN json_each VIRTUAL TABLE …`, the bound id list of an eager load) is
/// the query's own input, not a table an index could serve; so is a common
/// table expression (`CO-ROUTINE thread` or `MATERIALIZE thread`, then
/// `SCAN thread`: a recursive query walks its own queue).
fn sqlite_full_scans(lines: &[String]) -> Vec<String> {
    let own_results: Vec<&str> = lines
        .iter()
        .filter_map(|line| {
            line.strip_prefix("CO-ROUTINE ")
                .or_else(|| line.strip_prefix("MATERIALIZE "))
        })
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("SCAN "))
        .filter(|rest| !rest.contains(" VIRTUAL TABLE"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| !own_results.contains(name))
        .map(str::to_owned)
        .collect()
}

/// A query a table module shows to `keel explain`, with sample arguments.
#[derive(Debug, Clone, Copy)]
pub struct ExplainedQuery {
    /// The name to ask for, e.g. `user_by_email`.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Whether an index must serve it (a full scan is then a finding).
    pub needs_index: bool,
    /// Explains it on a sync connection (usually `|conn| explain!(conn, query)`).
    pub explain: fn(&mut Conn<'_>) -> QueryResult<Plan>,
}

/// Explains one Diesel query on a sync `&mut Conn` ([`explain_postgres`] or
/// [`explain_sqlite`], as the connection is): the query is written once and
/// built for each backend.
#[macro_export]
macro_rules! explain {
    ($conn:expr, $query:expr) => {
        match $crate::Conn::reborrow($conn) {
            $crate::Conn::Postgres(c) => $crate::explain::explain_postgres(c, $query),
            $crate::Conn::Sqlite(c) => $crate::explain::explain_sqlite(c, $query),
            $crate::Conn::AsyncPostgres(_) => {
                Err($crate::__private::diesel::result::Error::QueryBuilderError(
                    "explain runs on a sync connection".into(),
                ))
            }
        }
    };
}
pub use crate::explain;

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn sqlite_scans_of_tables_are_full_but_not_of_a_bound_list() {
        let eager = lines(
            "SEARCH posts USING INDEX ix_posts_author_id (author_id=?)\nLIST SUBQUERY 1\nSCAN json_each VIRTUAL TABLE INDEX 1:\nUSE TEMP B-TREE FOR ORDER BY",
        );
        assert!(sqlite_full_scans(&eager).is_empty());
        let cte = lines(
            "CO-ROUTINE thread\nSETUP\nSEARCH comments USING INDEX ix_comments_post_id (post_id=?)\nRECURSIVE STEP\nSCAN thread\nSEARCH c USING INDEX ix_comments_parent_id (parent_id=?)\nSCAN thread",
        );
        assert!(
            sqlite_full_scans(&cte).is_empty(),
            "a recursive query's own queue"
        );
        let scan = lines("SCAN users\nUSE TEMP B-TREE FOR ORDER BY");
        assert_eq!(sqlite_full_scans(&scan), ["users"]);
    }

    #[test]
    fn postgres_scans_without_an_index_condition_are_full() {
        let by_index = lines(
            "Index Scan using ix_users_email on users  (cost=0.14..8.16 rows=1 width=725)\n  Index Cond: ((email)::text = 'x'::text)",
        );
        assert!(postgres_full_scans(&by_index).is_empty());
        let pkey_walk = lines(
            "Index Scan using posts_pkey on posts  (cost=0.14..47.15 rows=3 width=466)\n  Filter: (author_id = ANY ('{1,2,3}'::integer[]))",
        );
        assert_eq!(postgres_full_scans(&pkey_walk), ["posts"]);
        let seq = lines("Seq Scan on comments  (cost=0.00..1.00 rows=1 width=4)");
        assert_eq!(postgres_full_scans(&seq), ["comments"]);
        let bitmap = lines(
            "Sort\n  ->  Bitmap Heap Scan on posts\n        Recheck Cond: (author_id = ANY ('{1}'::integer[]))\n        ->  Bitmap Index Scan on ix_posts_author_id\n              Index Cond: (author_id = ANY ('{1}'::integer[]))",
        );
        assert!(postgres_full_scans(&bitmap).is_empty());
    }
}
