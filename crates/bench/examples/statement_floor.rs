//! What one diesel statement costs on async PostgreSQL, four ways, for
//! counting under callgrind: how much of keel's per-statement work a
//! connection type of keel's own (issue 15's second route) would save.
//!
//! The statement is B4's point lookup (a user by email, `Selectable` into
//! `User`), run `N` times on one connection in a single-threaded runtime:
//!
//! - `diesel-async`: diesel-async's `AsyncPgConnection`, the query as written;
//! - `sql-once`: the same, wrapped in keel-repo's `SqlOnce`, as `run!` sends
//!   it (the SQL rendered once per statement type): keel's path today;
//! - `own`: [`MinimalPg`] below, a connection implementing diesel-async's
//!   traits directly over tokio-postgres: SQL rendered only to prepare,
//!   statements found by the query's static type, rows collected into a
//!   `Vec` in the load future, no error-channel subscription, no locks;
//! - `tokio-postgres`: the hand-written floor (a prepared statement, the row
//!   read by index), as keel-bench's baseline does it.
//!
//! None of them runs keel's N+1 guard (the instrumentation), which costs the
//! same on any connection. [`MinimalPg`] is a measurement, not a connection
//! to ship: no custom types, no notifications, no cancel token, and errors
//! carry only their message.
//!
//! ```text
//! cargo build --release -p keel-bench --example statement_floor
//! valgrind --tool=callgrind --toggle-collect='statement_floor::lookups*' \
//!     target/release/examples/statement_floor own 10000
//! ```
//!
//! The count over the run divided by `N` is one statement's instructions,
//! the email's `format!` included on all four. Results: BENCHMARKS.md,
//! "HTTP, ninth session".

use std::collections::HashMap;
use std::error::Error;
use std::num::NonZeroU32;

use diesel::connection::{CacheSize, Instrumentation, InstrumentationEvent};
use diesel::pg::{Pg, PgMetadataLookup, PgQueryBuilder, PgTypeMetadata, PgValue};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AsQuery, QueryBuilder as _, QueryFragment, QueryId};
use diesel::result::{ConnectionError, ConnectionResult, DatabaseErrorKind, QueryResult};
use diesel::row::{Field, PartialRow, RowIndex, RowSealed};
use diesel::{
    ExpressionMethods as _, OptionalExtension as _, QueryDsl as _, SelectableHelper as _,
};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncConnectionCore, AsyncPgConnection, RunQueryDsl,
    SimpleAsyncConnection,
};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, StreamExt as _};
use keel_models::User;
use keel_repo::asynchronous::SqlOnce;
use keel_repo::scope::shapes::Site;
use keel_schema::users;
use keel_tests::{PgTestDatabase, TestDatabase as _};
use tokio_postgres::types::private::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

/// A diesel-async connection written directly over tokio-postgres (see the
/// module doc for what it leaves out).
pub struct MinimalPg {
    client: Client,
    /// Prepared statements by the query's static type.
    statements: HashMap<std::any::TypeId, Statement>,
    transactions: AnsiTransactionManager,
    instrumentation: Box<dyn Instrumentation>,
}

/// Instrumentation that records nothing.
struct Silent;

impl Instrumentation for Silent {
    fn on_connection_event(&mut self, _event: InstrumentationEvent<'_>) {}
}

/// The metadata lookup for built-in types only: this statement has no other.
struct BuiltInTypesOnly;

impl PgMetadataLookup for BuiltInTypesOnly {
    fn lookup_type(&mut self, _type_name: &str, _schema: Option<&str>) -> PgTypeMetadata {
        PgTypeMetadata::new(0, 0)
    }
}

/// A bind value diesel has already serialized.
#[derive(Debug)]
struct Serialized(Option<Vec<u8>>);

impl ToSql for Serialized {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A tokio-postgres row, read by diesel.
pub struct MinimalRow(tokio_postgres::Row);

impl RowSealed for MinimalRow {}

impl<'a> diesel::row::Row<'a, Pg> for MinimalRow {
    type InnerPartialRow = Self;
    type Field<'f>
        = MinimalField<'f>
    where
        Self: 'f,
        'a: 'f;

    fn field_count(&self) -> usize {
        self.0.len()
    }

    fn get<'f, I>(&'f self, idx: I) -> Option<Self::Field<'f>>
    where
        'a: 'f,
        Self: RowIndex<I>,
    {
        let idx = self.idx(idx)?;
        let oid = NonZeroU32::new(self.0.columns()[idx].type_().oid())?;
        Some(MinimalField {
            row: &self.0,
            idx,
            oid,
        })
    }

    fn partial_row(&self, range: std::ops::Range<usize>) -> PartialRow<'_, Self> {
        PartialRow::new(self, range)
    }
}

impl RowIndex<usize> for MinimalRow {
    fn idx(&self, idx: usize) -> Option<usize> {
        (idx < self.0.len()).then_some(idx)
    }
}

impl RowIndex<&str> for MinimalRow {
    fn idx(&self, name: &str) -> Option<usize> {
        self.0.columns().iter().position(|c| c.name() == name)
    }
}

/// One column of a [`MinimalRow`].
pub struct MinimalField<'r> {
    row: &'r tokio_postgres::Row,
    idx: usize,
    oid: NonZeroU32,
}

/// A column's bytes as tokio-postgres holds them.
struct RawColumn<'r>(Option<&'r [u8]>);

impl<'r> FromSql<'r> for RawColumn<'r> {
    fn from_sql(_ty: &Type, raw: &'r [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

impl<'r> Field<'r, Pg> for MinimalField<'r> {
    fn field_name(&self) -> Option<&str> {
        Some(self.row.columns()[self.idx].name())
    }

    fn value(&self) -> Option<PgValue<'_>> {
        let raw = self.row.try_get::<_, RawColumn<'_>>(self.idx).ok()?.0?;
        Some(PgValue::new(raw, &self.oid))
    }
}

fn database_error(error: tokio_postgres::Error) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(error.to_string()))
}

/// A statement's binds, serialized, with their types.
struct Binds {
    collected: QueryResult<()>,
    values: Vec<Option<Vec<u8>>>,
    metadata: Vec<PgTypeMetadata>,
}

impl MinimalPg {
    /// Collects `query`'s binds, and renders its SQL only when it has no
    /// prepared statement yet; the returned future prepares it if needed
    /// and hands the statement and binds to `send`.
    fn with_statement<'c, Q, R, F>(
        &'c mut self,
        query: &Q,
        send: impl FnOnce(&'c Client, Statement, Vec<Option<Vec<u8>>>) -> F + Send + 'c,
    ) -> BoxFuture<'c, QueryResult<R>>
    where
        Q: QueryFragment<Pg> + QueryId,
        F: Future<Output = QueryResult<R>> + Send + 'c,
    {
        let mut collector = RawBytesBindCollector::<Pg>::new();
        let collected = query.collect_binds(&mut collector, &mut BuiltInTypesOnly, &Pg);
        let binds = Binds {
            collected,
            values: collector.binds,
            metadata: collector.metadata,
        };
        let key = Q::query_id();
        // The prepared statement, or the SQL to prepare it from.
        let prepared = match key.and_then(|key| self.statements.get(&key)) {
            Some(statement) => Ok(statement.clone()),
            None => {
                let mut builder = PgQueryBuilder::default();
                Err(query.to_sql(&mut builder, &Pg).map(|()| builder.finish()))
            }
        };
        async move {
            binds.collected?;
            let statement = match prepared {
                Ok(statement) => statement,
                Err(sql) => {
                    let types: Vec<Type> = binds
                        .metadata
                        .iter()
                        .map(|m| {
                            m.oid()
                                .ok()
                                .and_then(Type::from_oid)
                                .unwrap_or(Type::UNKNOWN)
                        })
                        .collect();
                    let statement = self
                        .client
                        .prepare_typed(&sql?, &types)
                        .await
                        .map_err(database_error)?;
                    if let Some(key) = key {
                        self.statements.insert(key, statement.clone());
                    }
                    statement
                }
            };
            send(&self.client, statement, binds.values).await
        }
        .boxed()
    }
}

impl SimpleAsyncConnection for MinimalPg {
    async fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.client
            .batch_execute(query)
            .await
            .map_err(database_error)
    }
}

/// The rows of one statement, read in full by the load future.
type Rows = futures_util::stream::Iter<std::vec::IntoIter<QueryResult<MinimalRow>>>;

impl AsyncConnectionCore for MinimalPg {
    type LoadFuture<'conn, 'query> = BoxFuture<'conn, QueryResult<Rows>>;
    type ExecuteFuture<'conn, 'query> = BoxFuture<'conn, QueryResult<usize>>;
    type Stream<'conn, 'query> = Rows;
    type Row<'conn, 'query> = MinimalRow;
    type Backend = Pg;

    fn load<'conn, 'query, T>(&'conn mut self, source: T) -> Self::LoadFuture<'conn, 'query>
    where
        T: AsQuery + 'query,
        T::Query: QueryFragment<Pg> + QueryId + 'query,
    {
        self.with_statement(&source.as_query(), |client, statement, binds| async move {
            let rows = client
                .query_raw(&statement, binds.into_iter().map(Serialized))
                .await
                .map_err(database_error)?;
            let rows: Vec<_> = rows
                .map(|row| row.map(MinimalRow).map_err(database_error))
                .collect()
                .await;
            Ok(futures_util::stream::iter(rows))
        })
    }

    fn execute_returning_count<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> Self::ExecuteFuture<'conn, 'query>
    where
        T: QueryFragment<Pg> + QueryId + 'query,
    {
        self.with_statement(&source, |client, statement, binds| async move {
            let count = client
                .execute_raw(&statement, binds.into_iter().map(Serialized))
                .await
                .map_err(database_error)?;
            usize::try_from(count)
                .map_err(|e| diesel::result::Error::DeserializationError(e.into()))
        })
    }
}

impl AsyncConnection for MinimalPg {
    type TransactionManager = AnsiTransactionManager;

    async fn establish(url: &str) -> ConnectionResult<Self> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        tokio::spawn(connection);
        Ok(Self {
            client,
            statements: HashMap::new(),
            transactions: AnsiTransactionManager::default(),
            instrumentation: Box::new(Silent),
        })
    }

    fn transaction_state(&mut self) -> &mut AnsiTransactionManager {
        &mut self.transactions
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        &mut *self.instrumentation
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.instrumentation = Box::new(instrumentation);
    }

    fn set_prepared_statement_cache_size(&mut self, _size: CacheSize) {}
}

/// The email of lookup `i` (the seeded users are `user0` .. `user999`).
fn email(i: usize) -> String {
    format!("user{}@example.com", i % 1000)
}

/// `n` lookups through diesel on `conn`, any diesel-async connection; with
/// `sql_once`, each wrapped as keel-repo's `run!` wraps it.
#[inline(never)]
async fn lookups_diesel<C>(conn: &mut C, n: usize, sql_once: bool) -> QueryResult<i64>
where
    C: AsyncConnectionCore<Backend = Pg> + Send,
{
    static SITE: Site = Site::new();
    let mut sum = 0;
    for i in 0..n {
        let email = email(i);
        let query = users::table
            .filter(users::email.eq(&email))
            .select(User::as_select());
        let user: Option<User> = if sql_once {
            SqlOnce::new(query, &SITE).get_result(conn).await
        } else {
            query.get_result(conn).await
        }
        .optional()?;
        sum += i64::from(user.map_or(0, |u| u.id));
    }
    Ok(sum)
}

/// `n` lookups by hand on tokio-postgres.
#[inline(never)]
async fn lookups_tokio_postgres(client: &Client, n: usize) -> Result<i64, tokio_postgres::Error> {
    let statement = client
        .prepare(
            "SELECT id, email, full_name, first_name, last_name, is_active, created_at \
             FROM users WHERE email = $1",
        )
        .await?;
    let mut sum = 0;
    for i in 0..n {
        if let Some(row) = client.query_opt(&statement, &[&email(i)]).await? {
            let user = User {
                id: row.try_get(0)?,
                email: row.try_get(1)?,
                full_name: row.try_get(2)?,
                first_name: row.try_get(3)?,
                last_name: row.try_get(4)?,
                is_active: row.try_get(5)?,
                created_at: row.try_get(6)?,
            };
            sum += i64::from(user.id);
        }
    }
    Ok(sum)
}

/// Runs `n` lookups the way `mode` names, after 100 to warm the statement
/// cache; returns the sum of the ids found.
async fn run(url: &str, mode: &str, n: usize) -> anyhow::Result<i64> {
    Ok(match mode {
        "diesel-async" | "sql-once" => {
            let mut conn = AsyncPgConnection::establish(url).await?;
            let sql_once = mode == "sql-once";
            lookups_diesel(&mut conn, 100, sql_once).await?;
            lookups_diesel(&mut conn, n, sql_once).await?
        }
        "own" => {
            let mut conn = MinimalPg::establish(url).await?;
            lookups_diesel(&mut conn, 100, false).await?;
            lookups_diesel(&mut conn, n, false).await?
        }
        "tokio-postgres" => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            lookups_tokio_postgres(&client, 100).await?;
            lookups_tokio_postgres(&client, n).await?
        }
        other => anyhow::bail!(
            "unknown mode `{other}`: expected diesel-async, sql-once, own or tokio-postgres"
        ),
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "own".to_owned());
    let n: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let database = PgTestDatabase::create()
        .ok_or_else(|| anyhow::anyhow!("no PostgreSQL server (see keel-tests)"))?;
    database.migrate();
    let url = database.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sum = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(
                "INSERT INTO users (email, full_name, first_name, last_name) \
                 SELECT 'user' || i || '@example.com', 'User ' || i, 'User', 'No. ' || i \
                 FROM generate_series(0, 999) i",
            )
            .await?;
        run(&url, &mode, n).await
    })?;
    // Lookup i finds user i % 1000, inserted (id) i % 1000 + 1th.
    let expected = (0..n).map(|i| i % 1000 + 1).sum::<usize>();
    anyhow::ensure!(
        usize::try_from(sum).is_ok_and(|sum| sum == expected),
        "{mode}: ids summed to {sum}, expected {expected}"
    );
    println!("{mode}: {n} lookups, ids summed to {sum}");
    Ok(())
}
