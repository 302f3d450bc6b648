//! Retrying whole transactions that lost a race with another: the policy
//! (bounded attempts, jittered exponential backoff) and which errors qualify.
//!
//! Used by `transaction_with_retry` on [`crate::sync::Database`] and
//! `crate::asynchronous::AsyncDatabase`, which run the caller's closure again
//! from the start, in a new transaction, after each retryable failure.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

use crate::RepoError;

/// How often, and how patiently, a transaction is run again after a
/// retryable failure ([`RetryableError`]).
///
/// After failed attempt `n` the caller waits a random time between half and
/// all of `min(max_delay, base_delay * 2^(n-1))` ("equal jitter": two
/// transactions that conflicted do not retry in lockstep, and each waits at
/// least half the ceiling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most times the transaction runs, the first included. 0 counts as 1.
    pub max_attempts: u32,
    /// The ceiling of the first pause; it doubles after each further failure.
    pub base_delay: Duration,
    /// No pause is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, pauses from 10 ms up to at most 1 s.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// A policy with these bounds.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts,
            base_delay,
            max_delay,
        }
    }

    /// The pause after failed attempt `attempt` (1 for the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            random_u64() % (spread + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// The pause before running again after attempt `attempt` failed with
    /// `error`, or `None` when the error is final or the attempts are spent.
    pub(crate) fn retry_after<E: RetryableError>(
        &self,
        attempt: u32,
        error: &E,
    ) -> Option<Duration> {
        (error.is_retryable() && attempt < self.max_attempts.max(1)).then(|| self.backoff(attempt))
    }
}

/// An error that says whether running the whole transaction again may
/// succeed. Implemented for [`RepoError`]; a service whose transactions
/// return its own error type implements it by asking the `RepoError` inside.
pub trait RetryableError {
    /// True when the transaction failed only because a concurrent one won.
    fn is_retryable(&self) -> bool;
}

impl RetryableError for RepoError {
    /// Serialization failures and deadlocks (PostgreSQL), a write lock
    /// that stayed taken past the busy timeout (SQLite), and a server that
    /// refused to write because it is no longer the primary (a failover:
    /// the connection was closed, and a new one finds the new primary). In
    /// each case nothing was written, so running it again is safe. Other
    /// `Unavailable` errors are not retried: a connection lost during
    /// COMMIT leaves it unknown whether the write was applied.
    fn is_retryable(&self) -> bool {
        match self {
            Self::TransactionConflict(_) | Self::Busy(_) => true,
            Self::Unavailable(message) => message.starts_with(crate::error::WRONG_NODE),
            _ => false,
        }
    }
}

/// A random number from std's per-process random hash keys (each
/// `RandomState` gets fresh ones): plenty for jitter, without a dependency.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x6b65_656c);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_inside_the_bounds() {
        let policy = RetryPolicy::new(10, Duration::from_millis(10), Duration::from_millis(50));
        for (attempt, ceiling_ms) in [(1, 10), (2, 20), (3, 40), (4, 50), (9, 50), (40, 50)] {
            let ceiling = Duration::from_millis(ceiling_ms);
            for _ in 0..50 {
                let pause = policy.backoff(attempt);
                assert!(
                    pause >= ceiling / 2 && pause <= ceiling,
                    "attempt {attempt}: {pause:?} not in [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        let pauses: std::collections::HashSet<Duration> =
            (0..20).map(|_| policy.backoff(3)).collect();
        assert!(pauses.len() > 1, "the pauses are jittered");
    }

    #[test]
    fn only_conflicts_and_busy_are_retried_and_only_within_the_attempts() {
        let policy = RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(1));
        let conflict = RepoError::TransactionConflict("could not serialize access".into());
        assert!(policy.retry_after(1, &conflict).is_some());
        assert!(policy.retry_after(2, &conflict).is_some());
        assert!(policy.retry_after(3, &conflict).is_none());
        assert!(
            policy
                .retry_after(1, &RepoError::Busy("database is locked".into()))
                .is_some()
        );
        assert!(
            policy
                .retry_after(1, &RepoError::validation("email", "bad"))
                .is_none()
        );
        assert!(
            policy
                .retry_after(1, &RepoError::Unavailable("gone".into()))
                .is_none()
        );
        let once = RetryPolicy::new(0, Duration::ZERO, Duration::ZERO);
        assert!(once.retry_after(1, &conflict).is_none());
    }
}
