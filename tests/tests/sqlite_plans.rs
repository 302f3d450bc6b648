//! keel's SQLite connections keep the plan a statement was prepared with
//! (SQLite's query planner stability guarantee), on every path that opens
//! one: the sync pool, the async pool and a single connection. Without it,
//! a database with `ANALYZE` statistics plans a statement by its bound
//! values, and prepares a cached statement again whenever they change.
//!
//! What shows it: on skewed data (one author with nearly every post), a
//! planner that looks at the bound value scans the table for that author;
//! one that keeps its plan searches the author index for every value.
//! `KEEL_SQLITE_STABLE_PLANS=0` (`sqlite_stable_plans: false`) gives SQLite's
//! default back, and the same check sees the scan.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Integer, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{QueryableByName, RunQueryDsl};
use keel_repo::{AnyConnection, Conn, DatabaseConfig};
use keel_tests::{SqliteTestDatabase, TestDatabase};

/// One author with 5,000 posts, twenty with one each, and statistics.
const SKEWED_POSTS: &str = "
    INSERT INTO users (email, full_name) VALUES ('prolific@example.com', 'Prolific');
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
    INSERT INTO users (email, full_name) SELECT 'occasional' || i || '@example.com', 'Occasional' FROM n;
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
    INSERT INTO posts (title, content, author_id)
    SELECT 'Post ' || i, 'Some content', (SELECT id FROM users WHERE email = 'prolific@example.com') FROM n;
    INSERT INTO posts (title, content, author_id)
    SELECT 'Post', 'Some content', id FROM users WHERE email LIKE 'occasional%';
    ANALYZE;";

/// The plan of posts by the prolific author, with the author's id bound.
const PLAN_OF_PROLIFIC_AUTHORS_POSTS: &str =
    "EXPLAIN QUERY PLAN SELECT id, title, content FROM posts WHERE author_id = ?";

#[derive(QueryableByName)]
struct PlanStep {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// Seeds the skewed posts on `conn` (statistics are loaded by the
/// connection that gathers them) and returns the plan for the prolific author.
fn plan_on_skewed_posts(conn: &mut SqliteConnection) -> diesel::QueryResult<String> {
    conn.batch_execute(SKEWED_POSTS)?;
    let prolific: i32 =
        diesel::sql_query("SELECT id FROM users WHERE email = 'prolific@example.com'")
            .load::<Id>(conn)?
            .first()
            .map(|row| row.id)
            .ok_or(diesel::result::Error::NotFound)?;
    let steps = diesel::sql_query(PLAN_OF_PROLIFIC_AUTHORS_POSTS)
        .bind::<Integer, _>(prolific)
        .load::<PlanStep>(conn)?;
    Ok(steps
        .into_iter()
        .map(|step| step.detail)
        .collect::<Vec<_>>()
        .join("; "))
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

fn on_sqlite(conn: &mut Conn<'_>) -> diesel::QueryResult<String> {
    match conn {
        Conn::Sqlite(conn) => plan_on_skewed_posts(conn),
        _ => panic!("a SQLite URL gave another backend"),
    }
}

/// A migrated SQLite database, and its configuration with one connection
/// (so the statements after `ANALYZE` run where it ran).
fn database(stable_plans: bool) -> (SqliteTestDatabase, DatabaseConfig) {
    let fixture = SqliteTestDatabase::create();
    fixture.migrate();
    let mut config = keel_tests::config(fixture.database_url());
    config.pool_size = 1;
    config.sqlite_stable_plans = stable_plans;
    (fixture, config)
}

fn assert_plan(plan: &str, stable_plans: bool) {
    if stable_plans {
        assert_eq!(
            plan,
            "SEARCH posts USING INDEX ix_posts_author_id (author_id=?)"
        );
    } else {
        // The check itself can fail: SQLite's default plans by the value.
        assert_eq!(plan, "SCAN posts");
    }
}

#[test]
fn sync_pool_connections_keep_their_plans() {
    for stable_plans in [true, false] {
        let (_fixture, config) = database(stable_plans);
        let db = keel_repo::sync::Database::connect(&config).expect("pool");
        let plan = db.with_conn(async |conn| on_sqlite(conn)).expect("plan");
        assert_plan(&plan, stable_plans);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pool_connections_keep_their_plans() {
    for stable_plans in [true, false] {
        let (_fixture, config) = database(stable_plans);
        let db = keel_repo::asynchronous::AsyncDatabase::connect(&config)
            .await
            .expect("pool");
        let plan = db
            .with_conn(async |conn| on_sqlite(conn))
            .await
            .expect("plan");
        assert_plan(&plan, stable_plans);
    }
}

#[test]
fn a_single_connection_keeps_its_plans() {
    for stable_plans in [true, false] {
        let (_fixture, config) = database(stable_plans);
        let plan = match AnyConnection::establish(&config).expect("connect") {
            AnyConnection::Sqlite(mut conn) => plan_on_skewed_posts(&mut conn).expect("plan"),
            _ => panic!("a SQLite URL gave another backend"),
        };
        assert_plan(&plan, stable_plans);
    }
}

#[test]
fn connections_keel_did_not_open_are_left_as_they_are() {
    // keel's hook is registered for the process once keel opens a
    // connection; a connection opened by someone else still plans by value.
    let (fixture, config) = database(true);
    drop(keel_repo::sync::Database::connect(&config).expect("pool"));
    let mut plain = fixture.connect();
    assert_plan(&plan_on_skewed_posts(&mut plain).expect("plan"), false);
}
