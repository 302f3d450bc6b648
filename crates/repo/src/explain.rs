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

use crate::queries;

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
/// the query's own input, not a table an index could serve.
fn sqlite_full_scans(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("SCAN "))
        .filter(|rest| !rest.contains(" VIRTUAL TABLE"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A repository query `keel explain` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedQuery {
    /// The name to ask for, e.g. `user_by_email`.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Whether an index must serve it (a full scan is then a finding).
    pub needs_index: bool,
}

/// Every named query, in the order `keel explain` prints them.
pub const NAMED_QUERIES: &[NamedQuery] = &[
    NamedQuery {
        name: "user_by_email",
        description: "a user by email (UserRepository::get_by_email)",
        needs_index: true,
    },
    NamedQuery {
        name: "active_users",
        description: "eager load level 1: active users by id (users_with_posts*)",
        needs_index: false,
    },
    NamedQuery {
        name: "posts_of_authors",
        description: "eager load level 2: posts of many users",
        needs_index: true,
    },
    NamedQuery {
        name: "comments_of_posts",
        description: "eager load level 3: comments of many posts",
        needs_index: true,
    },
    NamedQuery {
        name: "posts_by_author_email",
        description: "posts joined to users by email (PostRepository::by_author_email)",
        needs_index: true,
    },
    NamedQuery {
        name: "users_page",
        description: "keyset page of users (UserRepository::page)",
        needs_index: true,
    },
    NamedQuery {
        name: "users_by_name",
        description: "name search on (last_name, first_name) (UserRepository::search_by_name)",
        needs_index: true,
    },
];

/// Explains the named query with sample arguments; `None` for an unknown name.
macro_rules! explain_named {
    ($fn_name:ident, $conn:ty, $explain:ident, $backend:path) => {
        /// Explains the named query (see [`NAMED_QUERIES`]) with sample
        /// arguments; `Ok(None)` when no query has that name.
        pub fn $fn_name(conn: &mut $conn, name: &str) -> QueryResult<Option<Plan>> {
            use $backend as backend;
            let plan = match name {
                "user_by_email" => $explain(conn, queries::user_by_email("user1@example.com")),
                "active_users" => $explain(conn, queries::active_users(1000)),
                "posts_of_authors" => $explain(conn, backend::posts_of_authors(vec![1, 2, 3])),
                "comments_of_posts" => $explain(conn, backend::comments_of_posts(vec![1, 2, 3])),
                "posts_by_author_email" => {
                    $explain(conn, queries::posts_by_author_email("user1@example.com"))
                }
                "users_page" => $explain(conn, queries::users_after(100, 20)),
                "users_by_name" => $explain(conn, queries::users_by_name("Last1", "First1%")),
                _ => return Ok(None),
            };
            plan.map(Some)
        }
    };
}

explain_named!(
    explain_named_postgres,
    PgConnection,
    explain_postgres,
    queries::postgres
);
explain_named!(
    explain_named_sqlite,
    SqliteConnection,
    explain_sqlite,
    queries::sqlite
);

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
