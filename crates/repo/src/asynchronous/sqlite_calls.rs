//! Async mode's SQLite calls: each operation runs in place, on the calling
//! thread, with tokio told that it blocks.
//!
//! SQLite is a C library in this process, and most calls take a few µs. A
//! trip to tokio's blocking pool and back is two thread wake-ups, tens of µs
//! on a small machine, 5-10x the call itself. On a multi-thread runtime,
//! `block_in_place` runs the call here: for as long as it takes, the worker's
//! other tasks move to another thread, so a slow statement or a
//! `busy_timeout` wait does not stall the runtime. A whole operation (every
//! statement of an eager load, say) is one such call: its future completes
//! on its first poll, since every SQLite statement is a plain blocking call.
//!
//! Where tokio forbids `block_in_place` (a current-thread runtime, and a
//! `LocalSet` driven by `block_on`), the call runs directly on the thread,
//! as in sync mode: the thread's other tasks wait for it. tokio offers no
//! way to ask about the `LocalSet` case. The first such call on a thread
//! therefore tries, catches tokio's refusal (a panic raised before the call
//! starts, which the panic hook prints once), and remembers it for that
//! thread.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::scope::{AroundPoll, EachPoll};

thread_local! {
    /// Set once tokio has refused `block_in_place` on this thread.
    static IN_PLACE_REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// `operation`, each poll of it inside [`blocking`].
pub(crate) fn in_place<F: Future>(operation: F) -> EachPoll<F, InPlace> {
    EachPoll::new(operation, InPlace)
}

/// [`blocking`] around each poll ([`in_place`]).
pub(crate) struct InPlace;

impl AroundPoll for InPlace {
    fn around<T>(&mut self, poll: impl FnOnce() -> T) -> T {
        blocking(poll)
    }
}

/// Runs `call`, which blocks, on this thread: inside `block_in_place` where
/// tokio allows it, directly where it does not.
pub(crate) fn blocking<R>(call: impl FnOnce() -> R) -> R {
    let allowed = Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
        && !IN_PLACE_REFUSED.get();
    if !allowed {
        return call();
    }
    let mut call = Some(call);
    let mut started = false;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        tokio::task::block_in_place(|| {
            started = true;
            call.take().map(|call| call())
        })
    }));
    match outcome {
        Ok(Some(result)) => result,
        // A panic of the call itself goes on to the caller.
        Err(panic) if started => resume_unwind(panic),
        // tokio refused before the call started: run it here, and remember.
        _ => {
            IN_PLACE_REFUSED.set(true);
            tracing::debug!(
                "tokio refused block_in_place on this thread (a LocalSet?): \
                 its SQLite calls run directly on it"
            );
            match call.take() {
                Some(call) => call(),
                None => unreachable_call(),
            }
        }
    }
}

/// The call was taken but neither ran nor panicked: impossible, since
/// `block_in_place` either runs its closure or panics before it.
#[cold]
fn unreachable_call<R>() -> R {
    resume_unwind(Box::new("a SQLite call was lost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `call` through [`blocking`] from a task on a runtime worker.
    async fn call_from_a_worker<R: Send + 'static>(
        call: impl FnOnce() -> R + Send + 'static,
    ) -> (std::thread::ThreadId, R) {
        tokio::spawn(async move {
            let caller = std::thread::current().id();
            (caller, blocking(call))
        })
        .await
        .expect("the task runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_thread_runtime_the_call_runs_on_the_calling_thread() {
        let (caller, ran_on) = call_from_a_worker(|| std::thread::current().id()).await;
        assert_eq!(ran_on, caller);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_the_call_runs_directly() {
        let caller = std::thread::current().id();
        assert_eq!(blocking(|| std::thread::current().id()), caller);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_call_reaches_the_caller() {
        let result = tokio::spawn(async { blocking(|| -> u32 { panic!("boom") }) }).await;
        assert!(result.expect_err("the panic").is_panic());
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
        assert!(received);
    }

    /// tokio forbids `block_in_place` in a `LocalSet` driven by `block_on`
    /// (this test's body): the call still runs, directly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_a_local_set_on_the_block_on_thread_calls_run_directly() {
        let local = tokio::task::LocalSet::new();
        let caller = std::thread::current().id();
        let ran_on = local
            .run_until(async {
                let first = blocking(|| std::thread::current().id());
                let second = blocking(|| std::thread::current().id());
                (first, second)
            })
            .await;
        assert_eq!(ran_on, (caller, caller));
    }
}
