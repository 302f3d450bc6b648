//! Where async mode runs a SQLite call ([`SqliteCalls`]): by default on the
//! calling thread, with tokio told that it blocks.
//!
//! SQLite is a C library in this process, and most calls take a few µs.
//! diesel-async's default runtime for `SyncConnectionWrapper` sends every call
//! to tokio's blocking pool and back. Each trip is two thread wake-ups, tens
//! of µs on a small machine, and costs 5-10x the call itself. On a
//! multi-thread runtime, `block_in_place` runs the call here. For as long as
//! the call takes, the worker's other tasks move to another thread, so a slow
//! statement or a `busy_timeout` wait still does not stall the runtime.
//!
//! Where tokio forbids `block_in_place`, calls go to the blocking pool as
//! before: on a current-thread runtime, and in a `LocalSet` driven by
//! `block_on`. tokio offers no way to ask about the second case. The first
//! such call on a thread therefore tries, catches tokio's refusal (a panic,
//! raised before the call starts, which the panic hook prints once), and
//! remembers it for that thread.

use std::cell::Cell;
use std::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};

use diesel_async::sync_connection_wrapper::SpawnBlocking;
use futures_core::future::BoxFuture;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::SqliteCalls;

type CallError = Box<dyn Error + Send + Sync + 'static>;

thread_local! {
    /// Set once tokio has refused `block_in_place` on this thread.
    static IN_PLACE_REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// keel's [`SpawnBlocking`] for async SQLite connections.
pub struct SqliteCallRunner(pub(crate) SqliteCalls);

impl SpawnBlocking for SqliteCallRunner {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, CallError>>
    where
        R: Send + 'static,
    {
        let handle = match Handle::try_current() {
            Ok(handle) => handle,
            // Outside any runtime nothing else can be stalled.
            Err(_) => return Box::pin(std::future::ready(run_caught(task))),
        };
        let mut task = Some(task);
        if self.0 == SqliteCalls::InPlace
            && handle.runtime_flavor() == RuntimeFlavor::MultiThread
            && !IN_PLACE_REFUSED.get()
        {
            let mut result = None;
            let refused = catch_unwind(AssertUnwindSafe(|| {
                tokio::task::block_in_place(|| result = task.take().map(run_caught));
            }))
            .is_err();
            if let Some(result) = result {
                return Box::pin(std::future::ready(result));
            }
            if refused {
                IN_PLACE_REFUSED.set(true);
                tracing::debug!(
                    "tokio refused block_in_place on this thread (a LocalSet?): \
                     its SQLite calls go to the blocking pool"
                );
            }
        }
        match task {
            Some(task) => {
                Box::pin(async move { handle.spawn_blocking(task).await.map_err(CallError::from) })
            }
            // Unreachable: the task either ran (and returned above) or is still here.
            None => Box::pin(std::future::ready(Err("the SQLite call was lost".into()))),
        }
    }

    fn get_runtime() -> Self {
        SqliteCallRunner(SqliteCalls::default())
    }
}

/// Runs `task`; a panic becomes an error, as a panicking blocking-pool task
/// becomes a `JoinError`, so one bad call cannot take the caller's task down.
fn run_caught<R>(task: impl FnOnce() -> R) -> Result<R, CallError> {
    catch_unwind(AssertUnwindSafe(task)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a SQLite call panicked".to_owned());
        CallError::from(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `task` through [`SqliteCallRunner`] from a task on a runtime worker.
    async fn call_from_a_worker<R: Send + 'static>(
        task: impl FnOnce() -> R + Send + 'static,
    ) -> (std::thread::ThreadId, Result<R, String>) {
        tokio::spawn(async move {
            let caller = std::thread::current().id();
            let result = SqliteCallRunner(SqliteCalls::InPlace)
                .spawn_blocking(task)
                .await;
            (caller, result.map_err(|e| e.to_string()))
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_thread_runtime_the_call_runs_on_the_calling_thread() {
        let (caller, ran_on) = call_from_a_worker(|| std::thread::current().id()).await;
        assert_eq!(ran_on.unwrap(), caller);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_the_call_goes_to_the_blocking_pool() {
        let caller = std::thread::current().id();
        let ran_on = SqliteCallRunner(SqliteCalls::InPlace)
            .spawn_blocking(|| std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(ran_on, caller);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_call_is_an_error_not_a_crash() {
        let (_, result) = call_from_a_worker(|| -> u32 { panic!("boom") }).await;
        assert_eq!(result.unwrap_err(), "boom");
    }

    /// With one worker, a call that waits for another task's message would
    /// wait forever if the worker's tasks were not handed over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_on_the_same_worker_keep_running_while_a_call_blocks() {
        let (_, received) = call_from_a_worker(|| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            tokio::spawn(async move { tx.send(()) });
            rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok()
        })
        .await;
        assert_eq!(received, Ok(true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_pool_calls_run_on_another_thread() {
        let caller = std::thread::current().id();
        let ran_on = SqliteCallRunner(SqliteCalls::BlockingPool)
            .spawn_blocking(|| std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(ran_on, caller);
    }

    /// tokio forbids `block_in_place` in a `LocalSet` driven by `block_on`
    /// (this test's body): the call still runs, on the blocking pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_a_local_set_on_the_block_on_thread_calls_go_to_the_blocking_pool() {
        let local = tokio::task::LocalSet::new();
        let caller = std::thread::current().id();
        let ran_on = local
            .run_until(async {
                let first = SqliteCallRunner(SqliteCalls::InPlace)
                    .spawn_blocking(|| std::thread::current().id())
                    .await;
                let second = SqliteCallRunner(SqliteCalls::InPlace)
                    .spawn_blocking(|| std::thread::current().id())
                    .await;
                (first.unwrap(), second.unwrap())
            })
            .await;
        assert_ne!(ran_on.0, caller);
        assert_ne!(ran_on.1, caller);
    }
}
