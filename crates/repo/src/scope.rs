//! Statement scopes: everything a unit of work (a request, a test, a job)
//! ran on the database, counted on the connections it used, and the N+1
//! guard built on them.
//!
//! A scope is entered with [`QueryScope::run`] (sync: for the current
//! thread) or [`QueryScope::run_async`] (async: it follows the task, across
//! awaits and worker threads, and into the blocking lane keel-repo hops to
//! for `COPY` and `run_blocking`). Pooled connections carry the hook ([`crate::StatementCounter`]),
//! so every checkout inside a scope is counted without the caller doing
//! anything, and a scope never sees another task's statements.
//!
//! Within a scope statements are grouped by shape (the SQL without its bind
//! values). When one `SELECT` shape runs more than the repeat threshold
//! (default 10, `KEEL_REPEAT_THRESHOLD`), that is a likely N+1: a `tracing`
//! warning names the statement, the count and the scope, and in strict mode
//! (`KEEL_STRICT=1`, or [`QueryScope::strict`]) the next repository call in
//! the scope fails with [`RepoError::RepeatedStatement`]. Repetition that is
//! meant (a paging loop) runs inside [`QueryScope::repeats_intended`];
//! keel-repo's own paging methods do that already, and writes never count.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use smallvec::SmallVec;

use crate::RepoError;
use crate::replicas::Lsn;

/// Statements kept per scope for failure messages.
const LOG_CAPACITY: usize = 200;

/// A `SELECT` shape that ran more often than the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedStatement {
    /// The SQL, without bind values.
    pub statement: String,
    /// How often it had run when it crossed the threshold.
    pub count: u32,
}

/// The statements run inside one unit of work. Clones share the record.
#[derive(Clone)]
pub struct QueryScope {
    state: Arc<ScopeState>,
}

struct ScopeState {
    /// Borrowed when it is a literal: a scope per request should not have
    /// to copy a fixed name.
    name: Cow<'static, str>,
    strict: bool,
    repeat_threshold: u32,
    statements: AtomicU64,
    /// Set once `record.repeated` is: the check after every repository call
    /// reads this flag instead of taking the lock.
    flagged: AtomicBool,
    record: Mutex<Record>,
    /// Reads go to the primary, not to replicas ([`QueryScope::read_from_primary`]).
    on_primary: AtomicBool,
    /// The highest commit LSN of a write seen in this scope (0: none), for
    /// read-your-writes on replicas.
    write_lsn: AtomicU64,
}

/// `KEEL_STRICT` and `KEEL_REPEAT_THRESHOLD`, read at the first scope of the
/// process. A service opens a scope per request; reading the environment
/// each time (a process-wide lock and two allocations) was a good part of
/// the guard's cost on a one-statement request.
fn settings_from_env() -> (bool, u32) {
    static SETTINGS: OnceLock<(bool, u32)> = OnceLock::new();
    *SETTINGS.get_or_init(|| {
        let strict =
            std::env::var("KEEL_STRICT").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let repeat_threshold = std::env::var("KEEL_REPEAT_THRESHOLD")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(10);
        (strict, repeat_threshold)
    })
}

/// What a scope saw. A scope usually lives for one request of a few
/// statements, so its log and its shape counts start inline: a scope of up
/// to four statements allocates nothing but itself.
#[derive(Default)]
struct Record {
    log: SmallVec<[Arc<str>; 4]>,
    /// Shapes of statements known only by their text. Made on first use:
    /// most scopes see only noted statements, and an empty `HashMap` still
    /// seeds its hasher (a thread-local read) when the scope is created.
    select_shapes: Option<HashMap<String, u32>>,
    /// `SELECT`s known by their static identity (see [`shapes`]), with how
    /// often each ran. A list, not a map: a scope sees few shapes, and a scan
    /// of a few keys costs less than hashing one.
    noted_selects: SmallVec<[(shapes::ShapeKey, u32); 4]>,
    repeated: Option<RepeatedStatement>,
}

thread_local! {
    static THREAD_SCOPE: RefCell<Option<QueryScope>> = const { RefCell::new(None) };
    static THREAD_INTENDED: Cell<bool> = const { Cell::new(false) };
    static THREAD_OUTSIDE: Cell<bool> = const { Cell::new(false) };
}

#[cfg(feature = "async")]
tokio::task_local! {
    static TASK_SCOPE: QueryScope;
    static TASK_INTENDED: bool;
}

impl fmt::Debug for QueryScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryScope")
            .field("name", &self.state.name)
            .field("statements", &self.statements())
            .field("strict", &self.state.strict)
            .finish()
    }
}

impl Default for QueryScope {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryScope {
    /// A new, empty scope named `scope`; strict when `KEEL_STRICT=1`, with
    /// the threshold from `KEEL_REPEAT_THRESHOLD` (default 10). Both are read
    /// once per process, at the first scope.
    pub fn new() -> Self {
        Self::named("scope")
    }

    /// A new scope with a name for warnings (e.g. `GET /users/{id}`): a
    /// literal, or a `String` built for it.
    pub fn named(name: impl Into<Cow<'static, str>>) -> Self {
        let (strict, repeat_threshold) = settings_from_env();
        Self::build(name.into(), strict, repeat_threshold)
    }

    fn build(name: Cow<'static, str>, strict: bool, repeat_threshold: u32) -> Self {
        Self {
            state: Arc::new(ScopeState {
                name,
                strict,
                repeat_threshold,
                statements: AtomicU64::new(0),
                flagged: AtomicBool::new(false),
                record: Mutex::new(Record::default()),
                on_primary: AtomicBool::new(false),
                write_lsn: AtomicU64::new(0),
            }),
        }
    }

    /// The same scope, but strict (or not): a repeated shape fails the next
    /// repository call instead of only warning. Call before running anything.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        match Arc::get_mut(&mut self.state) {
            Some(state) => {
                state.strict = strict;
                self
            }
            None => Self::build(self.state.name.clone(), strict, self.state.repeat_threshold),
        }
    }

    /// The same scope with another repeat threshold. Call before running anything.
    #[must_use]
    pub fn repeat_threshold(mut self, threshold: u32) -> Self {
        match Arc::get_mut(&mut self.state) {
            Some(state) => {
                state.repeat_threshold = threshold;
                self
            }
            None => Self::build(self.state.name.clone(), self.state.strict, threshold),
        }
    }

    /// From now on, reads in this scope go to the primary (`true`) or, as
    /// by default, to a replica that has replayed the scope's writes.
    /// [`crate::sync::Database::primary`] and its async twin do the same
    /// for single calls.
    pub fn read_from_primary(&self, on_primary: bool) {
        self.state.on_primary.store(on_primary, Ordering::Relaxed);
    }

    /// Whether reads in this scope go to the primary.
    pub fn reads_from_primary(&self) -> bool {
        self.state.on_primary.load(Ordering::Relaxed)
    }

    /// The highest commit LSN the scope has seen: keel records it after
    /// every write on a pool with replicas, and a service adds one it got
    /// from elsewhere (`keel serve` takes the `X-Keel-Lsn` request header)
    /// with [`QueryScope::observe_lsn`]. A read in the scope uses a replica
    /// only once the replica has replayed it.
    pub fn write_lsn(&self) -> Option<Lsn> {
        Lsn::new(self.state.write_lsn.load(Ordering::Acquire))
    }

    /// Raises the scope's LSN to `lsn` (a lower one changes nothing).
    pub fn observe_lsn(&self, lsn: Lsn) {
        self.state.write_lsn.fetch_max(lsn.get(), Ordering::AcqRel);
    }

    /// Runs `f` outside any scope: keel's own bookkeeping statements (a
    /// replica's replay position, a commit's LSN) are not the caller's,
    /// and count in neither its statements nor its N+1 guard.
    pub(crate) fn outside<T>(f: impl FnOnce() -> T) -> T {
        with_thread_flag(&THREAD_OUTSIDE, f)
    }

    /// [`QueryScope::outside`] for a future: each of its polls runs outside.
    pub(crate) async fn outside_in<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| Self::outside(|| f.as_mut().poll(cx))).await
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Statements counted so far (transaction control excluded).
    pub fn statements(&self) -> u64 {
        self.state.statements.load(Ordering::Relaxed)
    }

    /// The statements run so far, in order (the first 200): those sent with
    /// [`run!`](crate::run) as their SQL, others with their bind values.
    pub fn statement_log(&self) -> Vec<String> {
        self.lock().log.iter().map(|s| s.to_string()).collect()
    }

    /// The first `SELECT` shape that ran more often than the threshold.
    pub fn repeated(&self) -> Option<RepeatedStatement> {
        // The flag is set with the record: a scope without a repeat (most
        // of them) answers without taking the lock.
        if !self.state.flagged.load(Ordering::Acquire) {
            return None;
        }
        self.lock().repeated.clone()
    }

    /// Runs `f` with this scope current on this thread.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let previous = THREAD_SCOPE.with(|s| s.replace(Some(self.clone())));
        struct Restore(Option<QueryScope>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                THREAD_SCOPE.with(|s| *s.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }

    /// Runs the future `f` with this scope current for its whole life.
    #[cfg(feature = "async")]
    pub async fn run_async<F: Future>(&self, f: F) -> F::Output {
        TASK_SCOPE.scope(self.clone(), f).await
    }

    /// The scope current here: this thread's, else this task's.
    pub fn current() -> Option<Self> {
        if THREAD_OUTSIDE.with(Cell::get) {
            return None;
        }
        if let Some(scope) = THREAD_SCOPE.with(|s| s.borrow().clone()) {
            return Some(scope);
        }
        #[cfg(feature = "async")]
        if let Ok(scope) = TASK_SCOPE.try_with(Clone::clone) {
            return Some(scope);
        }
        None
    }

    /// Runs `f` with repeated statements marked as intended (a paging loop):
    /// they are counted, but never reported as an N+1.
    pub fn repeats_intended<T>(f: impl FnOnce() -> T) -> T {
        with_thread_flag(&THREAD_INTENDED, f)
    }

    /// [`QueryScope::repeats_intended`] for a future, in either mode: the
    /// mark holds during each poll of `f` (where keel's statements run).
    pub async fn repeats_intended_in<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| Self::repeats_intended(|| f.as_mut().poll(cx))).await
    }

    /// [`QueryScope::repeats_intended`] for a future (a task-local mark).
    #[cfg(feature = "async")]
    pub async fn repeats_intended_async<F: Future>(f: F) -> F::Output {
        TASK_INTENDED.scope(true, f).await
    }

    fn intended_here() -> bool {
        if THREAD_INTENDED.with(Cell::get) {
            return true;
        }
        #[cfg(feature = "async")]
        if TASK_INTENDED.try_with(|i| *i).unwrap_or(false) {
            return true;
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        // A panic while holding the lock leaves a record still worth reading.
        self.state
            .record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one statement (called by the connection hook) from its
    /// rendered text.
    pub(crate) fn record_statement(&self, keyword: &str, text: String) {
        self.state.statements.fetch_add(1, Ordering::Relaxed);
        let mut record = self.lock();
        if keyword == "SELECT" && !Self::intended_here() {
            let shape = text.split(" -- binds:").next().unwrap_or_default().trim();
            // A shape is copied once, when first seen, not per statement.
            let shapes = record.select_shapes.get_or_insert_with(HashMap::new);
            let count = match shapes.get_mut(shape) {
                Some(count) => {
                    *count += 1;
                    *count
                }
                None => {
                    shapes.insert(shape.to_owned(), 1);
                    1
                }
            };
            self.flag_if_repeated(&mut record, count, shape);
        }
        if record.log.len() < LOG_CAPACITY {
            record.log.push(text.into());
        }
    }

    /// Records one statement known by its static identity: no rendering,
    /// one map lookup.
    pub(crate) fn record_noted(&self, key: shapes::ShapeKey, shape: &shapes::Shape) {
        self.state.statements.fetch_add(1, Ordering::Relaxed);
        let mut record = self.lock();
        if shape.select && !Self::intended_here() {
            let count = match record
                .noted_selects
                .iter_mut()
                .find(|(seen, _)| *seen == key)
            {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    record.noted_selects.push((key, 1));
                    1
                }
            };
            self.flag_if_repeated(&mut record, count, &shape.sql);
        }
        if record.log.len() < LOG_CAPACITY {
            record.log.push(shape.sql.clone());
        }
    }

    /// Warns, and flags the scope, when a `SELECT` shape's count just went
    /// past the threshold.
    fn flag_if_repeated(&self, record: &mut Record, count: u32, shape: &str) {
        if count == self.state.repeat_threshold.saturating_add(1) {
            tracing::warn!(
                scope = %self.state.name,
                count,
                statement = %shape,
                "likely N+1: the same query ran more than {} times in one scope; load the relation eagerly",
                self.state.repeat_threshold
            );
            let statement = shape.to_owned();
            record
                .repeated
                .get_or_insert(RepeatedStatement { statement, count });
            self.state.flagged.store(true, Ordering::Release);
        }
    }

    /// In strict mode, the repeated statement as an error.
    pub(crate) fn check(&self) -> Result<(), RepoError> {
        if !self.state.strict || !self.state.flagged.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.repeated() {
            Some(RepeatedStatement { statement, count }) => Err(RepoError::RepeatedStatement {
                scope: self.state.name.to_string(),
                statement,
                count,
            }),
            None => Ok(()),
        }
    }
}

/// Statement shapes known without rendering. [`run!`](crate::run) notes the
/// static identity of each statement it sends (its `QueryId` type and
/// backend: what diesel's prepared-statement cache keys it on, for a query
/// diesel would cache); the connection hook takes the note when the
/// statement starts. A shape's SQL is rendered once per process, the first
/// time it runs in a scope, not once per statement. Queries without a static
/// identity (dynamic SQL, boxed queries) are rendered per statement.
#[doc(hidden)]
pub mod shapes {
    use std::any::TypeId;
    use std::cell::Cell;
    use std::marker::PhantomData;
    use std::sync::{Arc, OnceLock, RwLock};

    use diesel::backend::Backend;
    use diesel::query_builder::{QueryFragment, QueryId};

    /// A statement's static identity.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct ShapeKey {
        query: TypeId,
        backend: TypeId,
    }

    impl ShapeKey {
        pub(crate) fn new(query: TypeId, backend: TypeId) -> Self {
            Self { query, backend }
        }
    }

    /// What the guard needs of a shape.
    #[derive(Debug)]
    pub struct Shape {
        /// A `SELECT` (only those count towards an N+1).
        pub select: bool,
        /// Transaction control (never recorded).
        pub control: bool,
        /// The SQL, without bind values.
        pub sql: Arc<str>,
    }

    thread_local! {
        static NOTED: Cell<Option<ShapeKey>> = const { Cell::new(None) };
    }

    /// A query about to be sent on backend `DB`.
    pub struct Probe<'q, Q, DB> {
        query: &'q Q,
        backend: PhantomData<DB>,
    }

    impl<'q, Q, DB> Probe<'q, Q, DB> {
        /// Wraps the query.
        pub fn new(query: &'q Q) -> Self {
            Self {
                query,
                backend: PhantomData,
            }
        }
    }

    /// Chosen by method resolution when the query has a `QueryId` and
    /// renders on `DB` (`(&probe).note()`).
    pub trait NoteStatic {
        /// Notes the statement's identity for the hook.
        fn note(&self);
    }

    impl<Q, DB> NoteStatic for Probe<'_, Q, DB>
    where
        Q: QueryId + QueryFragment<DB>,
        DB: Backend + Default + 'static,
    {
        fn note(&self) {
            // diesel caches (and keys by type) only queries whose SQL is
            // fixed for their type: the same rule makes a type a shape.
            if let Some(query) = Q::query_id()
                && self
                    .query
                    .is_safe_to_cache_prepared(&DB::default())
                    .unwrap_or(false)
            {
                NOTED.set(Some(ShapeKey::new(query, TypeId::of::<DB>())));
            }
        }
    }

    /// The fallback for every other query: nothing noted, the hook renders.
    pub trait NoteAny {
        /// Does nothing.
        fn note(&self);
    }

    impl<Q, DB> NoteAny for &Probe<'_, Q, DB> {
        fn note(&self) {}
    }

    /// Drops a note the statement did not take (it never started).
    pub fn forget() {
        NOTED.set(None);
    }

    /// The note for the statement starting now, if any.
    pub(crate) fn take() -> Option<ShapeKey> {
        NOTED.take()
    }

    /// Every shape seen by the process. Read once per statement in a scope,
    /// so hashed with foldhash: its keys are type ids, not client input.
    pub(crate) fn known() -> &'static RwLock<foldhash::HashMap<ShapeKey, Arc<Shape>>> {
        static KNOWN: OnceLock<RwLock<foldhash::HashMap<ShapeKey, Arc<Shape>>>> = OnceLock::new();
        KNOWN.get_or_init(Default::default)
    }

    /// The shape for `key`, rendered from `query` the first time.
    pub(crate) fn shape_of(key: ShapeKey, query: &dyn std::fmt::Display) -> Arc<Shape> {
        let read = known().read().map(|map| map.get(&key).cloned());
        if let Ok(Some(shape)) = read {
            return shape;
        }
        let text = query.to_string();
        let sql = text.split(" -- binds:").next().unwrap_or_default().trim();
        let keyword = crate::instrumentation::leading_keyword(&sql);
        let shape = Arc::new(Shape {
            select: keyword == "SELECT",
            control: crate::instrumentation::is_transaction_control(&keyword),
            sql: sql.into(),
        });
        if let Ok(mut map) = known().write() {
            map.entry(key).or_insert_with(|| shape.clone());
        }
        shape
    }
}

/// Runs `f` with a thread-local flag set, restoring its previous value
/// afterwards, also when `f` panics.
pub(crate) fn with_thread_flag<T>(
    flag: &'static std::thread::LocalKey<Cell<bool>>,
    f: impl FnOnce() -> T,
) -> T {
    struct Restore(&'static std::thread::LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.1;
            self.0.with(|flag| flag.set(previous));
        }
    }
    let _restore = Restore(flag, flag.with(|f| f.replace(true)));
    f()
}

/// After a repository call: fails it when the current scope is strict and
/// has seen a likely N+1.
pub(crate) fn check_current<T>(result: Result<T, RepoError>) -> Result<T, RepoError> {
    let value = result?;
    if let Some(scope) = QueryScope::current() {
        scope.check()?;
    }
    Ok(value)
}

/// The scope and intent of the caller, carried into a blocking hop.
#[cfg(all(feature = "async", feature = "sync"))]
pub(crate) struct ScopeContext {
    scope: Option<QueryScope>,
    intended: bool,
}

#[cfg(all(feature = "async", feature = "sync"))]
impl ScopeContext {
    pub(crate) fn capture() -> Self {
        Self {
            scope: QueryScope::current(),
            intended: QueryScope::intended_here(),
        }
    }

    pub(crate) fn enter<T>(self, f: impl FnOnce() -> T) -> T {
        let in_scope = || match self.scope {
            Some(scope) => scope.run(f),
            None => f(),
        };
        if self.intended {
            QueryScope::repeats_intended(in_scope)
        } else {
            in_scope()
        }
    }
}

/// Asserts that `$body` runs at most (`<=`) or exactly (`==`) `$n`
/// statements; the failure lists the statements that ran. Sync code:
///
/// ```ignore
/// keel_repo::assert_statements!(<= 3, { db.users().users_with_posts_and_comments(100).unwrap(); });
/// ```
#[macro_export]
macro_rules! assert_statements {
    ($op:tt $n:expr, $body:block) => {{
        let scope = $crate::QueryScope::named("assert_statements!");
        let value = scope.run(|| $body);
        $crate::scope::assert_budget(&scope, stringify!($op), $n);
        value
    }};
}

/// [`assert_statements!`] for async code: `$body` is awaited in the scope.
///
/// ```ignore
/// keel_repo::assert_statements_async!(<= 3, async { db.users().get_by_id(1).await.unwrap(); });
/// ```
#[cfg(feature = "async")]
#[macro_export]
macro_rules! assert_statements_async {
    ($op:tt $n:expr, $body:expr) => {{
        let scope = $crate::QueryScope::named("assert_statements_async!");
        let value = scope.run_async($body).await;
        $crate::scope::assert_budget(&scope, stringify!($op), $n);
        value
    }};
}

/// The check behind the budget macros.
#[doc(hidden)]
#[track_caller]
pub fn assert_budget(scope: &QueryScope, op: &str, budget: u64) {
    let ran = scope.statements();
    let within = match op {
        "==" => ran == budget,
        "<=" => ran <= budget,
        "<" => ran < budget,
        _ => panic!("assert_statements!: use <=, < or == (got {op})"),
    };
    if !within {
        let log = scope.statement_log();
        let listing: Vec<String> = log
            .iter()
            .enumerate()
            .map(|(i, s)| format!("  {}. {s}", i + 1))
            .collect();
        panic!(
            "expected {op} {budget} statements, {ran} ran:\n{}",
            listing.join("\n")
        );
    }
}

#[cfg(all(test, feature = "sync"))]
mod tests {
    use std::any::TypeId;

    use diesel::prelude::*;
    use diesel::query_builder::QueryId;
    use diesel::sqlite::Sqlite;
    use keel_schema::users;

    use super::shapes::{ShapeKey, known};
    use super::*;
    use crate::sync::Database;

    /// A query sent with `run!` in a scope is grouped by its type: its
    /// shape is known (rendered once) and repeats count against it.
    #[test]
    fn a_run_statement_is_grouped_by_its_type() {
        #[diesel::dsl::auto_type]
        fn query() -> _ {
            users::table
                .filter(users::full_name.eq("x"))
                .select(users::last_name)
        }
        fn key_of<Q: QueryId>(_: &Q) -> ShapeKey {
            ShapeKey::new(
                Q::query_id().expect("a static query id"),
                TypeId::of::<Sqlite>(),
            )
        }
        let key = key_of(&query());
        let db = Database::in_memory().expect("database");
        let scope = QueryScope::named("typed").repeat_threshold(2);
        let found: Vec<Option<String>> = scope
            .run(|| {
                (0..3)
                    .map(|_| db.with_conn(async |conn| crate::run!(conn, load(query()))))
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("three loads")
            .concat();
        assert!(found.is_empty());
        let shape = known().read().expect("shapes").get(&key).cloned();
        let shape = shape.expect("the shape was noted by type");
        assert!(shape.select && shape.sql.contains("full_name"), "{shape:?}");
        let repeated = scope
            .repeated()
            .expect("the third load crossed the threshold");
        assert_eq!((repeated.count, &*repeated.statement), (3, &*shape.sql));
        assert_eq!(scope.statements(), 3);
    }
}
