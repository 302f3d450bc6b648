//! The N+1 guard's cost (issue 5 item 6): keel's B2 and B4 run again with
//! every unit of work inside a [`QueryScope`], as `keel serve` runs each
//! request, so the guard's recording (SQL text formatted, shapes grouped,
//! strict check after each repository call) is paid in the timed step.
//!
//! Units of work, chosen to match one request each:
//! - B2: the whole step is one unit (one request loading 1000 users with
//!   their posts and comments: 3 statements in one scope).
//! - B4: each lookup is one unit (one request per user by email: 10,000
//!   scopes of 1 statement). One scope around all 10,000 lookups would be
//!   the N+1 the guard exists to catch (one `SELECT` shape 10,000 times),
//!   and strict mode would rightly fail it at the 11th lookup.
//!
//! Scopes are strict, so a false alarm fails the step; and after each run
//! the statements the scopes recorded must equal the statements keel's
//! counter saw, so a guard that missed statements cannot look cheap.

use std::future::Future;

use keel_repo::QueryScope;
use serde::Serialize;

/// B2's unit of work, named as `keel serve` names a request's scope.
pub const B2_UNIT: &str = "GET /users?include=posts.comments";
/// B4's unit of work.
pub const B4_UNIT: &str = "GET /users/by-email/{email}";

/// What the scopes of one guarded run recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScopeTally {
    /// Scopes opened (units of work).
    pub scopes: u64,
    /// Statements the scopes recorded, summed.
    pub statements: u64,
    /// Scopes that saw a repeated `SELECT` shape (a likely N+1).
    pub repeated: u64,
}

impl ScopeTally {
    /// Adds what `scope` recorded, read as `keel serve` reads it when a
    /// request ends.
    fn close(&mut self, scope: &QueryScope) {
        self.scopes += 1;
        self.statements += scope.statements();
        if scope.repeated().is_some() {
            self.repeated += 1;
        }
    }
}

/// A unit of work's scope: strict, so a likely N+1 fails the call.
fn unit_scope(name: &'static str) -> QueryScope {
    QueryScope::named(name).strict(true)
}

/// Runs `f` as one unit of work: inside a new scope when `tally` is given
/// (the guard on), else directly (plain keel, the same code path).
pub fn sync_unit<T>(
    tally: Option<&mut ScopeTally>,
    name: &'static str,
    f: impl FnOnce() -> T,
) -> T {
    match tally {
        None => f(),
        Some(tally) => {
            let scope = unit_scope(name);
            let value = scope.run(f);
            tally.close(&scope);
            value
        }
    }
}

/// [`sync_unit`] for a future: the scope follows the task.
pub async fn async_unit<F: Future>(
    tally: Option<&mut ScopeTally>,
    name: &'static str,
    unit: F,
) -> F::Output {
    match tally {
        None => unit.await,
        Some(tally) => {
            let scope = unit_scope(name);
            let value = scope.run_async(unit).await;
            tally.close(&scope);
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tally_means_no_scope() {
        let seen = sync_unit(None, B2_UNIT, QueryScope::current);
        assert!(seen.is_none());
        let mut tally = ScopeTally::default();
        let seen = sync_unit(Some(&mut tally), B2_UNIT, QueryScope::current);
        assert_eq!(seen.map(|s| s.name().to_owned()).as_deref(), Some(B2_UNIT));
        assert_eq!(
            tally,
            ScopeTally {
                scopes: 1,
                statements: 0,
                repeated: 0
            }
        );
    }
}
