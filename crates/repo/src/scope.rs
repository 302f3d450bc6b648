//! Statement scopes: everything a unit of work (a request, a test, a job)
//! ran on the database, counted on the connections it used.
//!
//! A scope is entered with [`QueryScope::run`] (sync: for the current
//! thread) or [`QueryScope::run_async`] (async: it follows the task, across
//! awaits and worker threads, and into the blocking hops keel-repo makes for
//! SQLite). Pooled connections carry the hook ([`crate::StatementCounter`]),
//! so every checkout inside a scope is counted without the caller doing
//! anything, and a scope never sees another task's statements.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The statements run inside one unit of work. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct QueryScope {
    statements: Arc<AtomicU64>,
}

thread_local! {
    static THREAD_SCOPE: RefCell<Option<QueryScope>> = const { RefCell::new(None) };
}

#[cfg(feature = "async")]
tokio::task_local! {
    static TASK_SCOPE: QueryScope;
}

impl QueryScope {
    /// A new, empty scope.
    pub fn new() -> Self {
        Self::default()
    }

    /// Statements counted so far (transaction control excluded).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Runs `f` with this scope current on this thread.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let previous = THREAD_SCOPE.with(|s| s.replace(Some(self.clone())));
        // Restore on the way out, even if `f` panics.
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
        if let Some(scope) = THREAD_SCOPE.with(|s| s.borrow().clone()) {
            return Some(scope);
        }
        #[cfg(feature = "async")]
        if let Ok(scope) = TASK_SCOPE.try_with(Clone::clone) {
            return Some(scope);
        }
        None
    }

    pub(crate) fn record_statement(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }
}
