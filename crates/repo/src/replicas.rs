//! Read replicas of a PostgreSQL primary: which one a read goes to, whether
//! it has replayed the caller's last write (read-your-writes by LSN), and
//! which ones are healthy enough to take reads at all.
//!
//! A pool built with [`crate::DatabaseConfig::replica_urls`] keeps one pool
//! per replica beside the primary's, in a [`ReplicaSet`]. Reads sent with
//! [`crate::executor::read`] (every repository read, and a service's
//! `with_read_conn`) ask it for a connection:
//!
//! 1. The current [`QueryScope`] may say "primary" ([`QueryScope::read_from_primary`]).
//! 2. Otherwise the next healthy replica in round-robin order is taken.
//! 3. When the scope holds a write's commit LSN, the replica must have
//!    replayed it (`pg_last_wal_replay_lsn() >= lsn`). The position last
//!    seen is cached per replica, so most reads ask nothing; otherwise the
//!    replica is asked again until [`crate::DatabaseConfig::replica_wait`]
//!    runs out, and then the read goes to the primary.
//!
//! After a write on such a pool commits, keel reads the primary's WAL
//! position (`pg_current_wal_insert_lsn()`, which is at or past the commit
//! record even when `synchronous_commit = off` lets COMMIT return before its
//! WAL is written) on the same connection and raises the scope's LSN to it. These bookkeeping
//! statements run outside the caller's scope: they count in the pool's
//! [`crate::StatementCounter`], never in a scope or its N+1 guard.
//!
//! A background check (every [`crate::DatabaseConfig::replica_check_interval`])
//! reads each replica's role, replay position and lag. A replica that is
//! unreachable, fails, is no longer a standby, or lags more than
//! [`crate::DatabaseConfig::max_replica_lag`] takes no reads until a later
//! check finds it well. A read whose replica connection is lost, or whose
//! query a standby cancels for a recovery conflict, runs again on the primary.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::dsl::sql;
use diesel::result::QueryResult;
use diesel::sql_types::{Bool, Double, Nullable, Text};

use crate::conn::Conn;
use crate::error::ErrorClass;
use crate::executor::{ConnGuard, Mode, complete_now};
use crate::{DatabaseConfig, QueryScope, RepoError, run};

/// A position in PostgreSQL's write-ahead log (`pg_lsn`), as PostgreSQL
/// writes it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// The LSN with this numeric value; `None` for 0, which PostgreSQL
    /// uses for "no position".
    pub fn new(value: u64) -> Option<Self> {
        (value != 0).then_some(Self(value))
    }

    /// Its numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Text that is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PostgreSQL LSN (expected two hexadecimal numbers like 16/B374D848)")]
pub struct LsnParseError;

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(text: &str) -> Result<Self, LsnParseError> {
        let (high, low) = text.trim().split_once('/').ok_or(LsnParseError)?;
        let half = |part: &str| {
            (!part.is_empty() && part.len() <= 8)
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or(LsnParseError)
        };
        let value = (u64::from(half(high)?) << 32) | u64::from(half(low)?);
        Self::new(value).ok_or(LsnParseError)
    }
}

/// What a replica is, as the last check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaRole {
    /// Not checked yet.
    Unknown,
    /// A hot standby replaying the primary's log: it takes reads.
    Standby,
    /// It accepts writes (it was promoted): it is no replica of this
    /// primary any more and takes no reads.
    Primary,
    /// It could not be reached or failed the check.
    Unreachable,
}

impl ReplicaRole {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Standby,
            2 => Self::Primary,
            3 => Self::Unreachable,
            _ => Self::Unknown,
        }
    }

    /// Its name, as `/healthz` and `/metrics` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Standby => "standby",
            Self::Primary => "primary",
            Self::Unreachable => "unreachable",
        }
    }
}

/// One replica as it stands: for health endpoints, metrics and `keel doctor`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplicaStatus {
    /// The replica's URL, password hidden.
    pub url: String,
    /// Its role at the last check.
    pub role: ReplicaRole,
    /// Whether it takes reads now.
    pub in_rotation: bool,
    /// How far it was behind the primary at the last check (`None`: unknown).
    pub lag_ms: Option<u64>,
    /// The last replay position seen.
    pub replay_lsn: Option<String>,
    /// Reads it answered.
    pub reads: u64,
    /// Reads meant for it that went to the primary: it had not replayed the
    /// caller's write in time, or it failed.
    pub fallbacks: u64,
    /// Why it is out of rotation, when it is.
    pub last_error: Option<String>,
}

/// The shared, lock-free state of one replica.
struct ReplicaState {
    url: String,
    in_rotation: AtomicBool,
    role: AtomicU8,
    /// Milliseconds; `u64::MAX` when unknown.
    lag_ms: AtomicU64,
    replay_lsn: AtomicU64,
    reads: AtomicU64,
    fallbacks: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ReplicaState {
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }

    /// Takes the replica out of rotation after `error`. Its cached replay
    /// position is forgotten: a standby that restarts after a crash
    /// resumes from its last restart point, which may be below it.
    fn out(&self, role: ReplicaRole, error: impl fmt::Display) {
        let was_in = self.in_rotation.swap(false, Ordering::AcqRel);
        self.role.store(role as u8, Ordering::Release);
        self.replay_lsn.store(0, Ordering::Release);
        let message = error.to_string();
        if was_in {
            tracing::warn!(replica = %self.url, error = %message, "replica out of rotation");
        }
        self.set_error(Some(message));
    }

    /// Whether the replica is known to have replayed `lsn`. One replica
    /// URL must mean one server: behind a load balancer over several
    /// standbys, one's position says nothing about another's.
    fn replayed(&self, lsn: Lsn) -> bool {
        self.replay_lsn.load(Ordering::Acquire) >= lsn.get()
    }

    /// Raises the cached position to one a read just saw (replay only
    /// moves forward while the server runs).
    fn saw_replay(&self, lsn: Option<Lsn>) {
        if let Some(lsn) = lsn {
            self.replay_lsn.fetch_max(lsn.get(), Ordering::AcqRel);
        }
    }
}

/// Longest wait for a free connection of a replica's pool before a read
/// goes to the primary instead.
const BUSY_REPLICA_WAIT: Duration = Duration::from_millis(250);

/// A pool of one mode, as the replica set uses it.
pub(crate) trait ReplicaPool: Sync {
    /// The checked-out connection.
    type Guard: ConnGuard;

    /// A connection, waiting at most `limit` (`None`: the configured
    /// checkout timeout).
    fn checkout_within(
        &self,
        config: &DatabaseConfig,
        limit: Option<Duration>,
    ) -> impl Future<Output = Result<Self::Guard, RepoError>> + Send;
}

/// One replica: its pool, its configuration (its URL in `url`, for error
/// messages) and its state.
pub(crate) struct Replica<P> {
    pub(crate) pool: P,
    pub(crate) config: DatabaseConfig,
    state: ReplicaState,
}

/// The replicas of one pool, and the routing settings.
pub(crate) struct ReplicaSet<P> {
    replicas: Vec<Replica<P>>,
    next: AtomicUsize,
    wait: Duration,
    max_lag: Duration,
    interval: Duration,
    /// Reads that went to the primary because no replica was in rotation.
    unrouted: AtomicU64,
    /// The primary's position at recent checks, oldest first: a replica
    /// that has replayed the position of time `t` lags `now - t` at most.
    history: Mutex<VecDeque<(Lsn, Instant)>>,
}

/// A connection checked out for a read, and the replica it came from
/// (`None`: the primary).
#[doc(hidden)]
pub struct ReadGuard<'r, G> {
    pub(crate) guard: G,
    pub(crate) replica: Option<ReplicaTicket<'r>>,
}

impl<G> ReadGuard<'_, G> {
    /// A read on the primary.
    pub fn primary(guard: G) -> Self {
        Self {
            guard,
            replica: None,
        }
    }
}

/// The replica a read went to, to count it or take it out of rotation.
#[doc(hidden)]
pub struct ReplicaTicket<'r>(&'r ReplicaState);

impl ReplicaTicket<'_> {
    /// Counts the read as answered, or, when it failed in a way the primary
    /// would not (the connection was lost, or the standby cancelled it for
    /// a recovery conflict), counts a fallback and says so.
    pub(crate) fn settle<T>(&self, result: &QueryResult<T>) -> Settled {
        match result {
            Err(error) if replica_failure(error) => {
                self.0.fallbacks.fetch_add(1, Ordering::Relaxed);
                if ErrorClass::of(error) == ErrorClass::ConnectionLost {
                    self.0.out(ReplicaRole::Unreachable, error);
                }
                Settled::RetryOnPrimary
            }
            _ => {
                self.0.reads.fetch_add(1, Ordering::Relaxed);
                Settled::Done
            }
        }
    }
}

/// What to do after a read on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    Done,
    RetryOnPrimary,
}

/// An error the same read would not meet on the primary.
fn replica_failure(error: &diesel::result::Error) -> bool {
    matches!(
        ErrorClass::of(error),
        ErrorClass::ConnectionLost | ErrorClass::TransactionConflict
    )
}

impl<P: ReplicaPool> ReplicaSet<P> {
    /// The replicas in `config`, each with the pool `open` makes for its
    /// configuration (`config` with the replica's URL).
    pub(crate) async fn open(
        config: &DatabaseConfig,
        open: impl AsyncFn(&DatabaseConfig) -> Result<P, RepoError>,
    ) -> Result<Self, RepoError> {
        let mut replicas = Vec::with_capacity(config.replica_urls.len());
        for url in &config.replica_urls {
            let mut replica_config = config.clone();
            replica_config.url = crate::DatabaseUrl::Postgres(url.clone());
            replica_config.replica_urls = Vec::new();
            replicas.push(Replica {
                pool: open(&replica_config).await?,
                state: ReplicaState {
                    url: replica_config.url.to_string(),
                    in_rotation: AtomicBool::new(false),
                    role: AtomicU8::new(ReplicaRole::Unknown as u8),
                    lag_ms: AtomicU64::new(u64::MAX),
                    replay_lsn: AtomicU64::new(0),
                    reads: AtomicU64::new(0),
                    fallbacks: AtomicU64::new(0),
                    last_error: Mutex::new(Some("not checked yet".to_owned())),
                },
                config: replica_config,
            });
        }
        Ok(Self {
            replicas,
            next: AtomicUsize::new(0),
            wait: config.replica_wait,
            max_lag: config.max_replica_lag,
            interval: config.replica_check_interval,
            unrouted: AtomicU64::new(0),
            history: Mutex::new(VecDeque::new()),
        })
    }

    /// Each replica as it stands.
    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|replica| {
                let state = &replica.state;
                let lag = state.lag_ms.load(Ordering::Acquire);
                ReplicaStatus {
                    url: state.url.clone(),
                    role: ReplicaRole::from_u8(state.role.load(Ordering::Acquire)),
                    in_rotation: state.in_rotation.load(Ordering::Acquire),
                    lag_ms: (lag != u64::MAX).then_some(lag),
                    replay_lsn: Lsn::new(state.replay_lsn.load(Ordering::Acquire))
                        .map(|lsn| lsn.to_string()),
                    reads: state.reads.load(Ordering::Relaxed),
                    fallbacks: state.fallbacks.load(Ordering::Relaxed),
                    last_error: state.last_error.lock().ok().and_then(|e| e.clone()),
                }
            })
            .collect()
    }

    /// Reads that found no replica in rotation and went to the primary
    /// (reported by the async pool, which `keel serve` runs).
    #[cfg(feature = "async")]
    pub(crate) fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// The next replica in rotation, round robin.
    fn pick(&self) -> Option<&Replica<P>> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.replicas[(start + offset) % count])
            .find(|replica| replica.state.in_rotation.load(Ordering::Acquire))
    }

    /// A replica connection for a read in the current scope, or `None`
    /// when the read belongs on the primary (see the module's doc).
    pub(crate) async fn checkout_read<M: Mode>(&self) -> Option<(P::Guard, ReplicaTicket<'_>)> {
        let scope = QueryScope::current();
        if scope.as_ref().is_some_and(QueryScope::reads_from_primary) {
            return None;
        }
        let Some(replica) = self.pick() else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let state = &replica.state;
        // A busy replica pool is no reason to keep a read waiting long: the
        // primary can take it. A busy pool is not a broken replica, either.
        let limit = replica.config.checkout_timeout.min(BUSY_REPLICA_WAIT);
        let mut guard = match replica
            .pool
            .checkout_within(&replica.config, Some(limit))
            .await
        {
            Ok(guard) => guard,
            Err(error) => {
                state.fallbacks.fetch_add(1, Ordering::Relaxed);
                if !matches!(error, RepoError::PoolTimeout { .. }) {
                    state.out(ReplicaRole::Unreachable, error);
                }
                return None;
            }
        };
        let required = scope.as_ref().and_then(QueryScope::write_lsn);
        match required {
            Some(lsn) if !state.replayed(lsn) => {
                match self.wait_for_replay::<M>(state, &mut guard, lsn).await {
                    Ok(true) => {}
                    Ok(false) => {
                        state.fallbacks.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    Err(error) => {
                        state.fallbacks.fetch_add(1, Ordering::Relaxed);
                        state.out(ReplicaRole::Unreachable, error);
                        return None;
                    }
                }
            }
            _ => {}
        }
        Some((guard, ReplicaTicket(state)))
    }

    /// Asks the replica for its replay position until it reaches `lsn`
    /// (`true`) or the wait runs out (`false`).
    async fn wait_for_replay<M: Mode>(
        &self,
        state: &ReplicaState,
        guard: &mut P::Guard,
        lsn: Lsn,
    ) -> Result<bool, RepoError> {
        let deadline = Instant::now() + self.wait;
        loop {
            let mut conn = guard.conn()?;
            let replayed = QueryScope::outside_in(replay_lsn(&mut conn)).await?;
            state.saw_replay(replayed);
            // This connection's own answer decides, not the cached maximum.
            if replayed.is_some_and(|replayed| replayed >= lsn) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Replay of one commit takes about a millisecond on a healthy
            // standby: ask often, but not in a tight loop.
            M::pause((deadline - now).min(Duration::from_micros(500))).await;
        }
    }

    /// One round of checks: the primary's current position, then each
    /// replica's role, position and lag. A checkout waits at most the
    /// check interval (at least a second).
    pub(crate) async fn check_round(&self, primary: &P, primary_config: &DatabaseConfig) {
        let limit = Some(self.interval.max(Duration::from_secs(1)));
        let primary_lsn = match primary.checkout_within(primary_config, limit).await {
            Ok(mut guard) => match guard.conn() {
                Ok(mut conn) => written_lsn(&mut conn).await.ok().flatten(),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let now = Instant::now();
        if let (Some(lsn), Ok(mut history)) = (primary_lsn, self.history.lock()) {
            history.push_back((lsn, now));
            // Enough samples to tell any lag up to twice the limit.
            let keep = self.max_lag.max(Duration::from_secs(1)) * 2;
            while history
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) > keep)
            {
                history.pop_front();
            }
        }
        for replica in &self.replicas {
            match replica.pool.checkout_within(&replica.config, limit).await {
                Ok(mut guard) => self.check(replica, guard.conn(), primary_lsn).await,
                Err(error) => self.check(replica, Err(error), primary_lsn).await,
            }
        }
    }

    /// Updates one replica from a check on its connection, given the
    /// primary's current position (`None` when the primary could not be
    /// asked).
    async fn check(
        &self,
        replica: &Replica<P>,
        conn: Result<Conn<'_>, RepoError>,
        primary_lsn: Option<Lsn>,
    ) {
        let state = &replica.state;
        let reading = match conn {
            Ok(mut conn) => QueryScope::outside_in(probe(&mut conn))
                .await
                .map_err(RepoError::from),
            Err(error) => Err(error),
        };
        let (in_recovery, replayed, replay_age) = match reading {
            Ok(reading) => reading,
            Err(error) => return state.out(ReplicaRole::Unreachable, error),
        };
        if !in_recovery {
            return state.out(
                ReplicaRole::Primary,
                "it is not in recovery (promoted?): no replica of this primary",
            );
        }
        let replayed = replayed
            .as_deref()
            .and_then(|text| text.parse::<Lsn>().ok());
        // A check reads the position afresh: it replaces what reads cached.
        state
            .replay_lsn
            .store(replayed.map_or(0, Lsn::get), Ordering::Release);
        state
            .role
            .store(ReplicaRole::Standby as u8, Ordering::Release);
        let Some(primary_lsn) = primary_lsn else {
            // The primary could not be asked (busy, or down): the replica
            // keeps its place in or out of rotation until it can be.
            return;
        };
        let Some(lag) = self.lag_of(replayed, primary_lsn, replay_age) else {
            return state.out(
                ReplicaRole::Standby,
                "it is behind the primary by an unknown time (nothing replayed yet)",
            );
        };
        let lag_ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX - 1);
        state.lag_ms.store(lag_ms, Ordering::Release);
        if lag > self.max_lag {
            state.out(
                ReplicaRole::Standby,
                format!(
                    "lag {lag_ms} ms is over the limit of {} ms",
                    self.max_lag.as_millis()
                ),
            );
        } else {
            state.set_error(None);
            if !state.in_rotation.swap(true, Ordering::AcqRel) {
                tracing::info!(replica = %state.url, lag_ms, "replica in rotation");
            }
        }
    }
}

impl<P> ReplicaSet<P> {
    /// How far behind a replica that has replayed `replayed` is: nothing
    /// when it has the primary's current position; else the age of the
    /// newest recorded primary position it has reached; else (it has
    /// reached none of them: the first check, or a lag past the recorded
    /// window) the age of its last replayed commit, `replay_age`. That age
    /// alone would mislead on an idle primary, whose last commit is old
    /// however current the replica is, hence the recorded positions first.
    fn lag_of(
        &self,
        replayed: Option<Lsn>,
        primary_lsn: Lsn,
        replay_age: Option<f64>,
    ) -> Option<Duration> {
        let replayed = replayed.map_or(0, Lsn::get);
        if replayed >= primary_lsn.get() {
            return Some(Duration::ZERO);
        }
        let history = self.history.lock().ok()?;
        let reached = history.iter().rev().find(|(lsn, _)| lsn.get() <= replayed);
        match reached {
            Some((_, at)) => Some(at.elapsed()),
            None => replay_age
                .filter(|age| age.is_finite())
                .map(|age| Duration::from_secs_f64(age.clamp(0.0, 1e9))),
        }
    }
}

/// Each replica of a pool as it stands (none without replicas).
pub(crate) fn status<P: ReplicaPool>(set: Option<&ReplicaSet<P>>) -> Vec<ReplicaStatus> {
    set.map(ReplicaSet::status).unwrap_or_default()
}

/// Each replica of `config` checked once, on connections of its own (no
/// pool, no background check): role, replay position and lag, as `keel
/// doctor` reports them. Statements go unnamed, so a transaction-pooling
/// PgBouncer in between is no problem.
pub fn inspect(config: &DatabaseConfig) -> Result<Vec<ReplicaStatus>, RepoError> {
    if config.replica_urls.is_empty() {
        return Ok(Vec::new());
    }
    let set = complete_now(ReplicaSet::open(config, async |_| Ok(Direct)))?;
    complete_now(async {
        set.check_round(&Direct, config).await;
        Ok(())
    })?;
    Ok(set.status())
}

/// A new sync PostgreSQL connection per checkout: [`inspect`]'s "pool".
struct Direct;

/// [`Direct`]'s connection.
struct DirectConn(diesel::pg::PgConnection);

impl ConnGuard for DirectConn {
    fn conn(&mut self) -> Result<Conn<'_>, RepoError> {
        Ok(Conn::Postgres(&mut self.0))
    }
}

impl ReplicaPool for Direct {
    type Guard = DirectConn;

    fn checkout_within(
        &self,
        config: &DatabaseConfig,
        _limit: Option<Duration>,
    ) -> impl Future<Output = Result<DirectConn, RepoError>> + Send {
        use diesel::Connection as _;
        let connected = match &config.url {
            crate::DatabaseUrl::Postgres(url) => {
                diesel::pg::PgConnection::establish(&config.postgres_url(url))
                    .map(|mut conn| {
                        conn.set_prepared_statement_cache_size(
                            diesel::connection::CacheSize::Disabled,
                        );
                        DirectConn(conn)
                    })
                    .map_err(|e| config.connection_error(e))
            }
            crate::DatabaseUrl::Sqlite(_) => Err(RepoError::Connection(
                "replicas are PostgreSQL servers".to_owned(),
            )),
        };
        std::future::ready(connected)
    }
}

/// The primary's WAL position after a commit, read outside any scope: the
/// insert position, at or past the commit record even when COMMIT returned
/// before its WAL was written (`synchronous_commit = off`).
pub(crate) async fn current_lsn(conn: &mut Conn<'_>) -> QueryResult<Option<Lsn>> {
    let text: String = QueryScope::outside_in(async {
        run!(
            conn,
            get_result(diesel::select(sql::<Text>(
                "pg_current_wal_insert_lsn()::text"
            )))
        )
    })
    .await?;
    Ok(text.parse().ok())
}

/// The primary's written WAL position, for the replica checks: what a
/// standby can have received (the insert position can sit past a page
/// header that replay never reaches, and an idle replica would look behind).
async fn written_lsn(conn: &mut Conn<'_>) -> QueryResult<Option<Lsn>> {
    let text: String = QueryScope::outside_in(async {
        run!(
            conn,
            get_result(diesel::select(sql::<Text>("pg_current_wal_lsn()::text")))
        )
    })
    .await?;
    Ok(text.parse().ok())
}

/// A standby's replay position (`None` on a primary).
async fn replay_lsn(conn: &mut Conn<'_>) -> QueryResult<Option<Lsn>> {
    let text: Option<String> = run!(
        conn,
        get_result(diesel::select(sql::<Nullable<Text>>(
            "pg_last_wal_replay_lsn()::text"
        )))
    )?;
    Ok(text.and_then(|text| text.parse().ok()))
}

/// A replica's role, replay position, and the age of its last replayed
/// commit in seconds.
async fn probe(conn: &mut Conn<'_>) -> QueryResult<(bool, Option<String>, Option<f64>)> {
    run!(
        conn,
        get_result(diesel::select((
            sql::<Bool>("pg_is_in_recovery()"),
            sql::<Nullable<Text>>("pg_last_wal_replay_lsn()::text"),
            sql::<Nullable<Double>>(
                "extract(epoch from (now() - pg_last_xact_replay_timestamp()))::float8"
            ),
        )))
    )
}

/// After a write committed on `conn` (a primary connection of a pool with
/// replicas): raises the current scope's LSN to the primary's position, so
/// the scope's later reads see the write. Without a scope there is nothing
/// to keep it in. Should the position be unreadable, the scope reads from
/// the primary from then on rather than risk a stale read.
pub(crate) async fn record_commit_lsn(conn: &mut Conn<'_>) {
    let Some(scope) = QueryScope::current() else {
        return;
    };
    match current_lsn(conn).await {
        Ok(Some(lsn)) => scope.observe_lsn(lsn),
        _ => scope.read_from_primary(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsn_reads_and_writes_as_postgresql_does() {
        let lsn: Lsn = "16/B374D848".parse().expect("an LSN");
        assert_eq!(lsn.get(), (0x16 << 32) | 0xB374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert!("0/3000060".parse::<Lsn>().expect("an LSN") < lsn);
        for bad in ["", "16", "16/", "/1", "x/1", "1/2/3", "123456789/1", "0/0"] {
            assert_eq!(bad.parse::<Lsn>(), Err(LsnParseError), "{bad:?}");
        }
    }
}
