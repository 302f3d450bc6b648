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
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

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
    /// A noted statement's SQL is its shape's, borrowed; others own theirs.
    log: SmallVec<[Cow<'static, str>; 4]>,
    /// Shapes of statements known only by their text. Made on first use:
    /// most scopes see only noted statements, and an empty `HashMap` still
    /// seeds its hasher (a thread-local read) when the scope is created.
    /// Boxed, as is `repeated`: every scope allocates its record, and the
    /// rare parts kept inline would make that allocation larger.
    #[allow(clippy::box_collection)]
    select_shapes: Option<Box<HashMap<String, u32>>>,
    /// `SELECT`s known by their static identity (see [`shapes`]), with how
    /// often each ran. A list, not a map: a scope sees few shapes, and a scan
    /// of a few keys costs less than hashing one. A shape is one value per
    /// process, so its address is its key.
    noted_selects: SmallVec<[(&'static shapes::Shape, u32); 4]>,
    repeated: Option<Box<RepeatedStatement>>,
}

thread_local! {
    /// The scope current on this thread. An async scope is lent to it for
    /// each poll of its future ([`QueryScope::run_async`]), which is what
    /// tokio's task-locals do too, without their `RefCell` and checks: the
    /// hook reads this on every statement.
    static THREAD_SCOPE: Cell<Option<QueryScope>> = const { Cell::new(None) };
    static THREAD_INTENDED: Cell<bool> = const { Cell::new(false) };
    static THREAD_OUTSIDE: Cell<bool> = const { Cell::new(false) };
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
    pub(crate) fn outside_in<F: Future>(f: F) -> EachPoll<F, Outside> {
        EachPoll::new(f, Outside)
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Statements counted so far (transaction control excluded).
    pub fn statements(&self) -> u64 {
        self.state.statements.load(Ordering::Relaxed)
    }

    /// The statements run so far, in order (the first 200), as their SQL
    /// without bind values (which may hold secrets, and whose formatting
    /// would cost a statement with thousands of them more than it).
    pub fn statement_log(&self) -> Vec<String> {
        self.lock().log.iter().map(|s| s.to_string()).collect()
    }

    /// The first `SELECT` shape that ran more often than the threshold.
    #[inline]
    pub fn repeated(&self) -> Option<RepeatedStatement> {
        // The flag is set with the record: a scope without a repeat (most
        // of them) answers without taking the lock.
        if !self.state.flagged.load(Ordering::Acquire) {
            return None;
        }
        self.lock().repeated.as_deref().cloned()
    }

    /// Runs `f` with this scope current on this thread.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        lend(&mut Some(self.clone()), f)
    }

    /// Runs the future `f` with this scope current for its whole life: on
    /// whichever thread polls it, during each poll. In async mode the scope
    /// follows the task across awaits and worker threads; in sync mode
    /// (operations are `async fn`s there too) it works the same.
    pub fn run_async<F: Future>(&self, f: F) -> impl Future<Output = F::Output> + use<F> {
        EachPoll::new(f, Lent(Some(self.clone())))
    }

    /// The scope current here.
    pub fn current() -> Option<Self> {
        if THREAD_OUTSIDE.get() {
            return None;
        }
        THREAD_SCOPE.with(|current| {
            let scope = current.take();
            let copy = scope.clone();
            current.set(scope);
            copy
        })
    }

    /// Runs `f` with repeated statements marked as intended (a paging loop):
    /// they are counted, but never reported as an N+1.
    pub fn repeats_intended<T>(f: impl FnOnce() -> T) -> T {
        with_thread_flag(&THREAD_INTENDED, f)
    }

    /// [`QueryScope::repeats_intended`] for a future, in either mode: the
    /// mark holds during each poll of `f` (where keel's statements run).
    pub fn repeats_intended_in<F: Future>(f: F) -> impl Future<Output = F::Output> {
        EachPoll::new(f, Intended)
    }

    /// [`QueryScope::repeats_intended`] for a future: the same as
    /// [`QueryScope::repeats_intended_in`].
    pub fn repeats_intended_async<F: Future>(f: F) -> impl Future<Output = F::Output> {
        Self::repeats_intended_in(f)
    }

    fn intended_here() -> bool {
        THREAD_INTENDED.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        // A panic while holding the lock leaves a record still worth reading.
        self.state
            .record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one statement (called by the connection hook) from its SQL,
    /// without bind values.
    pub(crate) fn record_statement(&self, keyword: &str, text: String) {
        self.state.statements.fetch_add(1, Ordering::Relaxed);
        let mut record = self.lock();
        if keyword == "SELECT" && !Self::intended_here() {
            let shape = text.as_str();
            // A shape is copied once, when first seen, not per statement.
            let shapes = record.select_shapes.get_or_insert_default();
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
            record.log.push(Cow::Owned(text));
        }
    }

    /// Records one statement known by its static identity: no rendering,
    /// one map lookup.
    pub(crate) fn record_noted(&self, shape: &'static shapes::Shape) {
        self.state.statements.fetch_add(1, Ordering::Relaxed);
        let mut record = self.lock();
        if shape.select && !Self::intended_here() {
            let count = match record
                .noted_selects
                .iter_mut()
                .find(|(seen, _)| std::ptr::eq(*seen, shape))
            {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    record.noted_selects.push((shape, 1));
                    1
                }
            };
            self.flag_if_repeated(&mut record, count, &shape.sql);
        }
        if record.log.len() < LOG_CAPACITY {
            record.log.push(Cow::Borrowed(&shape.sql));
        }
    }

    /// Warns, and flags the scope, when a `SELECT` shape's count just went
    /// past the threshold.
    #[inline]
    fn flag_if_repeated(&self, record: &mut Record, count: u32, shape: &str) {
        if count == self.state.repeat_threshold.saturating_add(1) {
            self.flag_repeated(record, count, shape);
        }
    }

    #[cold]
    fn flag_repeated(&self, record: &mut Record, count: u32, shape: &str) {
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
            .get_or_insert_with(|| Box::new(RepeatedStatement { statement, count }));
        self.state.flagged.store(true, Ordering::Release);
    }

    /// In strict mode, the repeated statement as an error.
    #[inline]
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
    use diesel::backend::Backend;
    use diesel::query_builder::{QueryFragment, QueryId};
    use std::any::TypeId;
    use std::cell::Cell;
    use std::marker::PhantomData;

    use crate::interned::{Interned, Remembered};

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
        pub sql: Box<str>,
    }

    /// A statement's identity, noted by [`run!`](crate::run) for the hook.
    #[derive(Clone, Copy)]
    pub(crate) struct Noted {
        key: ShapeKey,
        site: &'static Site,
    }

    thread_local! {
        static NOTED: Cell<Option<Noted>> = const { Cell::new(None) };
    }

    /// What one `run!` call site remembers of the statement it sends, kept
    /// next to it so that the next statement from there finds it without a
    /// process-wide map's lock and hash: its shape (for a scope) and, on
    /// tokio-postgres, its SQL ([`crate::asynchronous::SqlOnce`]). A call
    /// site inside a generic function can send several query types; the
    /// first one it sends stays here and the others use the maps.
    pub struct Site {
        shape: Remembered<ShapeKey, Shape>,
        /// Used by [`crate::asynchronous::SqlOnce`].
        #[cfg_attr(not(feature = "async"), allow(dead_code))]
        pub(crate) sql: Remembered<TypeId, str>,
    }

    impl Site {
        /// An empty site, for a `static`.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Self {
                shape: Remembered::new(),
                sql: Remembered::new(),
            }
        }
    }

    /// Notes a statement of type `query` about to be sent on `DB` from
    /// `site`, for the hook.
    pub(crate) fn note<DB: 'static>(query: TypeId, site: &'static Site) {
        NOTED.set(Some(Noted {
            key: ShapeKey::new(query, TypeId::of::<DB>()),
            site,
        }));
    }

    /// A query about to be sent on backend `DB`, from call site `site`.
    pub struct Probe<'q, Q, DB> {
        query: &'q Q,
        site: &'static Site,
        backend: PhantomData<DB>,
    }

    impl<'q, Q, DB> Probe<'q, Q, DB> {
        /// Wraps the query.
        pub fn new(query: &'q Q, site: &'static Site) -> Self {
            Self {
                query,
                site,
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
                note::<DB>(query, self.site);
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
    pub(crate) fn take() -> Option<Noted> {
        NOTED.take()
    }

    /// Every shape seen by the process.
    pub(crate) static KNOWN: Interned<ShapeKey, Shape> = Interned::new();

    /// The shape of the noted statement `query`: its call site's, else the
    /// process-wide map's.
    pub(crate) fn shape_of(noted: Noted, query: &dyn std::fmt::Display) -> &'static Shape {
        let Ok(shape) = noted.site.shape.get_or_make(noted.key, &KNOWN, || {
            let sql = crate::instrumentation::sql_text(query);
            let keyword = crate::instrumentation::leading_keyword(&sql);
            Ok::<_, std::convert::Infallible>(Box::new(Shape {
                select: keyword == "SELECT",
                control: crate::instrumentation::is_transaction_control(&keyword),
                sql: sql.into(),
            }))
        });
        shape
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A call site inside a generic function sends several query types:
        /// each gets its own shape, though the site keeps only the first.
        #[test]
        fn a_site_keeps_its_first_type_and_the_others_use_the_map() {
            static SITE: Site = Site::new();
            struct First;
            struct Second;
            let noted = |query| Noted {
                key: ShapeKey::new(query, TypeId::of::<diesel::sqlite::Sqlite>()),
                site: &SITE,
            };
            let first = noted(TypeId::of::<First>());
            let second = noted(TypeId::of::<Second>());
            let first_shape = shape_of(first, &"SELECT first FROM t -- binds: []");
            let second_shape = shape_of(second, &"SELECT second FROM t");
            assert_eq!(&*first_shape.sql, "SELECT first FROM t");
            assert_eq!(&*second_shape.sql, "SELECT second FROM t");
            assert!(first_shape.select && !first_shape.control);
            // Known now: neither is rendered again, each is its own.
            assert!(std::ptr::eq(shape_of(first, &"not rendered"), first_shape));
            assert!(std::ptr::eq(
                shape_of(second, &"not rendered"),
                second_shape
            ));
        }
    }
}

/// What runs around each poll of a future wrapped in [`EachPoll`].
pub(crate) trait AroundPoll {
    fn around<T>(&mut self, poll: impl FnOnce() -> T) -> T;
}

pin_project_lite::pin_project! {
    /// `future`, each of its polls run inside `around`. A type of its own
    /// rather than an `async fn` over `poll_fn`: that form holds the future
    /// twice (the argument, then its pinned copy) and copies it on the first
    /// poll, and what it wraps is often large (a whole request's handler).
    pub(crate) struct EachPoll<F, A> {
        #[pin]
        future: F,
        around: A,
    }
}

impl<F, A> EachPoll<F, A> {
    pub(crate) fn new(future: F, around: A) -> Self {
        Self { future, around }
    }
}

impl<F: Future, A: AroundPoll> Future for EachPoll<F, A> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        this.around.around(|| future.poll(cx))
    }
}

/// A scope, current during each poll ([`QueryScope::run_async`]).
struct Lent(Option<QueryScope>);

impl AroundPoll for Lent {
    fn around<T>(&mut self, poll: impl FnOnce() -> T) -> T {
        lend(&mut self.0, poll)
    }
}

/// No scope during each poll ([`QueryScope::outside_in`]).
pub(crate) struct Outside;

impl AroundPoll for Outside {
    fn around<T>(&mut self, poll: impl FnOnce() -> T) -> T {
        QueryScope::outside(poll)
    }
}

/// Repeats marked as intended during each poll
/// ([`QueryScope::repeats_intended_in`]).
struct Intended;

impl AroundPoll for Intended {
    fn around<T>(&mut self, poll: impl FnOnce() -> T) -> T {
        QueryScope::repeats_intended(poll)
    }
}

/// Runs `f` with the scope in `slot` current on this thread, and puts it
/// back in `slot` afterwards, also when `f` panics. The scope is moved in
/// and out, not cloned: [`QueryScope::run_async`] does this on every poll.
fn lend<T>(slot: &mut Option<QueryScope>, f: impl FnOnce() -> T) -> T {
    struct Return<'s> {
        slot: &'s mut Option<QueryScope>,
        previous: Option<QueryScope>,
    }
    impl Drop for Return<'_> {
        fn drop(&mut self) {
            *self.slot = THREAD_SCOPE.replace(self.previous.take());
        }
    }
    let previous = THREAD_SCOPE.replace(slot.take());
    let _return = Return { slot, previous };
    f()
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

    use super::shapes::{KNOWN, ShapeKey};
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
        let shape = KNOWN.get(key);
        let shape = shape.expect("the shape was noted by type");
        assert!(shape.select && shape.sql.contains("full_name"), "{shape:?}");
        let repeated = scope
            .repeated()
            .expect("the third load crossed the threshold");
        assert_eq!((repeated.count, &*repeated.statement), (3, &*shape.sql));
        assert_eq!(scope.statements(), 3);
    }
}

#[cfg(test)]
mod lending_tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::QueryScope;

    fn current_name() -> Option<String> {
        QueryScope::current().map(|s| s.name().to_owned())
    }

    /// A future that is pending once, so it is polled twice.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    /// An async scope is current during every poll of its future, and only
    /// then: between polls the thread is back to what it was.
    #[test]
    fn an_async_scope_is_current_in_each_poll_and_only_then() {
        let outer = QueryScope::named("outer");
        let inner = QueryScope::named("inner");
        let future = outer.run(|| {
            inner.run_async(async {
                let first = current_name();
                yield_once().await;
                (first, current_name())
            })
        });
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(current_name(), None, "lent only while polled");
        let seen = outer.run(|| match future.as_mut().poll(&mut cx) {
            Poll::Ready(seen) => {
                assert_eq!(current_name().as_deref(), Some("outer"));
                seen
            }
            Poll::Pending => panic!("ready on the second poll"),
        });
        let inner_name = Some("inner".to_owned());
        assert_eq!(seen, (inner_name.clone(), inner_name));
        assert_eq!(current_name(), None);
    }

    /// A panic inside a scope puts the previous scope back.
    #[test]
    fn a_panic_restores_the_previous_scope() {
        let outer = QueryScope::named("outer");
        let inner = QueryScope::named("inner");
        outer.run(|| {
            let unwound =
                std::panic::catch_unwind(|| inner.run(|| panic!("inside the inner scope")));
            assert!(unwound.is_err());
            assert_eq!(current_name().as_deref(), Some("outer"));
        });
        assert_eq!(current_name(), None);
    }
}
