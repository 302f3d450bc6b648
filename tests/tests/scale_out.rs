//! Scale-out on PostgreSQL against a real primary and hot standby of the
//! test's own (initdb, `pg_basebackup -R -X stream -C -S`): reads routed to
//! the replica with read-your-writes by LSN, a replica stopped or lagging
//! under a read load, a write that reaches a standby, and a failover with
//! synchronous replication that loses no acknowledged write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use keel_models::NewUser;
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::prelude::*;
use keel_repo::sync::Database;
use keel_repo::{DatabaseConfig, DatabaseUrl, PostgresUrl, QueryScope, ReplicaRole, RetryPolicy};
use keel_tests::PgCluster;

const CYCLES: u32 = 1000;

/// A primary with keel's schema and one streaming standby; `None` (after a
/// loud message) only where `PgCluster` may skip.
fn primary_and_standby() -> Option<(PgCluster, PgCluster)> {
    let primary = PgCluster::start_primary()?;
    keel_migrations::Migrator::connect(&url_of(&primary))
        .and_then(|mut m| m.run_pending())
        .expect("migrate the primary");
    let standby = primary.start_standby();
    Some((primary, standby))
}

fn url_of(cluster: &PgCluster) -> DatabaseUrl {
    DatabaseUrl::parse(&cluster.url("postgres")).expect("cluster URL")
}

fn config(primary: &PgCluster, standby: &PgCluster) -> DatabaseConfig {
    let mut config = keel_tests::config(url_of(primary));
    config.pool_size = 4;
    config.replica_urls = vec![PostgresUrl::parse(&standby.url("postgres")).expect("standby URL")];
    config.replica_check_interval = Duration::from_millis(50);
    config.replica_wait = Duration::from_millis(100);
    config.checkout_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    config
}

fn new_user(tag: &str, n: u64) -> NewUser {
    NewUser {
        email: format!("{tag}-{n}@example.com"),
        full_name: format!("{tag} {n}"),
        first_name: None,
        last_name: None,
        is_active: true,
    }
}

/// 2,000-row INSERTs on the primary until `stop`, on a connection of its
/// own: the write load that makes the standby fall behind.
fn background_writer(primary: &PgCluster, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let url = primary.url("postgres");
    std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).expect("background writer connects");
        let mut batches = 0;
        while !stop.load(Ordering::Relaxed) {
            conn.batch_execute(
                "INSERT INTO users (email, full_name, is_active) \
                 SELECT 'load-' || md5(random()::text) || '-' || g || '@example.com', 'load', false \
                 FROM generate_series(1, 2000) AS g",
            )
            .expect("background batch");
            batches += 1;
        }
        batches
    })
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

mod read_your_writes {
    use super::*;

    /// Stale reads without the LSN check (a write outside any scope, then a
    /// read in a new scope), and with it (write and read in one scope).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_reads_on_the_replica_see_their_writes() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let db = AsyncDatabase::connect(&config(&primary, &standby))
            .await
            .expect("connect with a replica");
        assert_eq!(db.replica_status()[0].role, ReplicaRole::Standby);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = background_writer(&primary, stop.clone());

        let mut stale_without = 0;
        for n in 0..u64::from(CYCLES) {
            let user = db
                .users()
                .create(&new_user("plain", n))
                .await
                .expect("create");
            let read = QueryScope::new()
                .run_async(db.users().get_by_id(user.id))
                .await;
            match read {
                Ok(found) => assert_eq!(found, user),
                Err(RepoError::NotFound { .. }) => stale_without += 1,
                Err(other) => panic!("read without LSN: {other:?}"),
            }
        }
        let reads_before = db.replica_status()[0].reads;

        let mut stale_with = 0;
        for n in 0..u64::from(CYCLES) {
            let scope = QueryScope::new();
            let read = scope
                .run_async(async {
                    let user = db.users().create(&new_user("scoped", n)).await?;
                    assert!(QueryScope::current().and_then(|s| s.write_lsn()).is_some());
                    let found = db.users().get_by_id(user.id).await;
                    Ok::<_, RepoError>((user, found))
                })
                .await
                .expect("create");
            match read {
                (user, Ok(found)) => assert_eq!(found, user),
                (_, Err(RepoError::NotFound { .. })) => stale_with += 1,
                (_, Err(other)) => panic!("read with LSN: {other:?}"),
            }
            assert_eq!(
                scope.statements(),
                2,
                "the LSN bookkeeping is not the scope's"
            );
        }
        stop.store(true, Ordering::Relaxed);
        let batches = writer.join().expect("background writer");
        let status = db.replica_status()[0].clone();
        let on_replica = status.reads - reads_before;
        println!(
            "{CYCLES} write-then-read cycles under {batches} background batches: without the \
             LSN check {stale_without} stale ({:.1}%); with it {stale_with} stale, {on_replica} \
             answered by the replica, {} fell back to the primary",
            f64::from(stale_without) * 100.0 / f64::from(CYCLES),
            status.fallbacks
        );
        assert_eq!(
            stale_with, 0,
            "a read in the writer's scope missed its write"
        );
        assert!(
            stale_without > 0,
            "no stale read without the LSN check: the replica was never behind, so this run \
             proves nothing"
        );
        assert!(
            on_replica > 0,
            "no scoped read went to the replica: everything fell back to the primary"
        );
    }

    #[test]
    fn sync_reads_on_the_replica_see_their_writes() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let db = Database::connect(&config(&primary, &standby)).expect("connect with a replica");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = background_writer(&primary, stop.clone());
        let mut stale = 0;
        for n in 0..u64::from(CYCLES / 4) {
            let scope = QueryScope::new();
            let found = scope.run(|| {
                let user = db.users().create(&new_user("sync", n)).expect("create");
                db.users().get_by_id(user.id).map(|found| (user, found))
            });
            match found {
                Ok((user, found)) => assert_eq!(found, user),
                Err(RepoError::NotFound { .. }) => stale += 1,
                Err(other) => panic!("sync read: {other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("background writer");
        let status = db.replica_status()[0].clone();
        assert_eq!(stale, 0);
        assert!(status.reads > 0, "no read went to the replica: {status:?}");
    }

    /// `db.primary()` and a scope's flag keep reads off the replica; a
    /// service's own read goes where `with_read_conn` routes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_caller_chooses_the_primary_explicitly() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let db = AsyncDatabase::connect(&config(&primary, &standby))
            .await
            .expect("connect");
        let user = db
            .users()
            .create(&new_user("explicit", 1))
            .await
            .expect("create");
        let reads = || db.replica_status()[0].reads;

        let before = reads();
        db.primary()
            .users()
            .get_by_id(user.id)
            .await
            .expect("on the primary");
        let scope = QueryScope::new();
        scope.read_from_primary(true);
        scope
            .run_async(db.users().get_by_id(user.id))
            .await
            .expect("scope on the primary");
        assert_eq!(
            reads(),
            before,
            "a read forced to the primary reached the replica"
        );

        let in_recovery: bool = db
            .with_read_conn(async |conn| {
                run!(
                    conn,
                    get_result(diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "pg_is_in_recovery()"
                    )))
                )
            })
            .await
            .expect("a read of the service's own");
        assert!(
            in_recovery,
            "with_read_conn did not run on the standby: {:?}",
            db.replica_status()
        );
        let on_primary: bool = db
            .with_conn(async |conn| {
                run!(
                    conn,
                    get_result(diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "pg_is_in_recovery()"
                    )))
                )
            })
            .await
            .expect("with_conn");
        assert!(!on_primary, "with_conn did not run on the primary");
    }
}

mod replica_health {
    use super::*;

    /// A read load while the standby dies and comes back: no read fails,
    /// the replica leaves the rotation and rejoins it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_the_standby_mid_load_fails_no_read() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let db = Arc::new(
            AsyncDatabase::connect(&config(&primary, &standby))
                .await
                .expect("connect"),
        );
        // Written in a scope: its LSN is what a client would send back in
        // `X-Keel-Lsn`, so every read below sees the user.
        let written = QueryScope::new();
        let user = written
            .run_async(db.users().create(&new_user("health", 1)))
            .await
            .expect("create");
        let lsn = written.write_lsn().expect("the write's LSN");
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (db, stop, failures, reads) =
                (db.clone(), stop.clone(), failures.clone(), reads.clone());
            readers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let scope = QueryScope::new();
                    scope.observe_lsn(lsn);
                    match scope.run_async(db.users().get_by_id(user.id)).await {
                        Ok(_) => reads.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            eprintln!("read failed: {error:?}");
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let on_replica_before = db.replica_status()[0].reads;
        assert!(
            on_replica_before > 0,
            "the replica took no reads before it stopped"
        );
        let standby = Arc::new(standby);
        let killer = standby.clone();
        tokio::task::spawn_blocking(move || killer.kill())
            .await
            .expect("stop the standby");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let while_down = db.replica_status()[0].clone();
        assert!(
            !while_down.in_rotation,
            "a dead standby stayed in rotation: {while_down:?}"
        );
        assert_eq!(while_down.role, ReplicaRole::Unreachable);
        let restarter = standby.clone();
        tokio::task::spawn_blocking(move || restarter.start_again())
            .await
            .expect("start the standby again");
        let started = Instant::now();
        while !db.replica_status()[0].in_rotation {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the standby did not rejoin: {:?}",
                db.replica_status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.await.expect("reader");
        }
        println!(
            "standby stopped mid-load: {} reads, {} failed, {} answered by the replica",
            reads.load(Ordering::Relaxed),
            failures.load(Ordering::Relaxed),
            db.replica_status()[0].reads
        );
        assert_eq!(failures.load(Ordering::Relaxed), 0, "reads failed");
        assert!(reads.load(Ordering::Relaxed) > 100);
        assert!(
            db.replica_status()[0].reads > while_down.reads,
            "no read after the rejoin"
        );
    }

    /// A replica that is down when the pool opens keeps nothing from
    /// starting: it is out of rotation, reads go to the primary, and it
    /// joins once it is up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_down_at_start_joins_when_it_comes_up() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        standby.stop();
        let db = AsyncDatabase::connect(&config(&primary, &standby))
            .await
            .expect("the pool opens without its replica");
        let status = db.replica_status()[0].clone();
        assert!(!status.in_rotation, "{status:?}");
        assert_eq!(status.role, ReplicaRole::Unreachable);
        let user = db
            .users()
            .create(&new_user("late", 1))
            .await
            .expect("write");
        assert_eq!(db.users().get_by_id(user.id).await.expect("read"), user);
        assert!(db.reads_without_replica() > 0);
        let standby = Arc::new(standby);
        let starter = standby.clone();
        tokio::task::spawn_blocking(move || starter.start_again())
            .await
            .expect("start the standby");
        let started = Instant::now();
        while !db.replica_status()[0].in_rotation {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                db.replica_status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let position: String = db
            .with_conn(async |conn| {
                run!(
                    conn,
                    get_result(diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                        "pg_current_wal_lsn()::text"
                    )))
                )
            })
            .await
            .expect("the primary's position");
        let position: keel_repo::Lsn = position.parse().expect("an LSN");
        // The checks see the replica replay it (on a loaded machine that can
        // take longer than a read's wait); then the read needs no wait.
        let started = Instant::now();
        while db.replica_status()[0]
            .replay_lsn
            .as_deref()
            .and_then(|lsn| lsn.parse::<keel_repo::Lsn>().ok())
            .is_none_or(|replayed| replayed < position)
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                db.replica_status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let scope = QueryScope::new();
        scope.observe_lsn(position);
        let reads = db.replica_status()[0].reads;
        scope
            .run_async(db.users().get_by_id(user.id))
            .await
            .expect("read on the replica");
        assert_eq!(db.replica_status()[0].reads, reads + 1);
    }

    /// A standby whose replay is paused falls behind: over the lag limit it
    /// takes no reads; resumed, it is back.
    #[test]
    fn a_lagging_replica_leaves_the_rotation_until_it_catches_up() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let mut config = config(&primary, &standby);
        config.max_replica_lag = Duration::from_millis(200);
        let db = Database::connect(&config).expect("connect");
        assert!(db.replica_status()[0].in_rotation);
        let mut on_standby =
            PgConnection::establish(&standby.url("postgres")).expect("connect to the standby");
        on_standby
            .batch_execute("SELECT pg_wal_replay_pause()")
            .expect("pause replay");
        // Writes keep coming; the last replayed commit grows old.
        wait_until(
            "the replica leaves the rotation",
            Duration::from_secs(10),
            || {
                db.users()
                    .create(&new_user("lag", rand_suffix()))
                    .expect("write");
                !db.replica_status()[0].in_rotation
            },
        );
        let status = db.replica_status()[0].clone();
        assert!(status.lag_ms.is_some_and(|lag| lag >= 200), "{status:?}");
        let reads = status.reads;
        db.users().get_by_id(1).expect("a read goes to the primary");
        assert_eq!(
            db.replica_status()[0].reads,
            reads,
            "a lagging replica took a read"
        );
        on_standby
            .batch_execute("SELECT pg_wal_replay_resume()")
            .expect("resume replay");
        wait_until("the replica rejoins", Duration::from_secs(10), || {
            db.replica_status()[0].in_rotation
        });
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

mod failover {
    use super::*;

    /// A pool pointed at a standby as if it were the primary: the write is
    /// refused with `Unavailable` (retryable: nothing was written), and
    /// the connection is closed, not pooled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_reaches_a_standby_is_unavailable_and_its_connection_dropped() {
        let Some((_primary, standby)) = primary_and_standby() else {
            return;
        };
        let mut config = keel_tests::config(url_of(&standby));
        config.pool_size = 1;
        let db = AsyncDatabase::connect(&config).await.expect("connect");
        let backend_pid = async || {
            db.with_conn(async |conn| {
                run!(
                    conn,
                    get_result(diesel::select(
                        diesel::dsl::sql::<diesel::sql_types::Integer>("pg_backend_pid()")
                    ))
                )
            })
            .await
            .expect("backend pid")
        };
        let pid_before: i32 = backend_pid().await;
        let error = db
            .users()
            .create(&new_user("standby", 1))
            .await
            .expect_err("a standby refuses writes");
        assert!(
            matches!(&error, RepoError::Unavailable(m) if m.contains("cannot write")),
            "{error:?}"
        );
        assert!(keel_repo::RetryableError::is_retryable(&error));
        let pid_after: i32 = backend_pid().await;
        assert_ne!(
            pid_before, pid_after,
            "the connection that reached a standby was reused"
        );

        // A transaction is refused at BEGIN (SERIALIZABLE on a hot
        // standby): the same, connection closed included.
        let before_transaction: i32 = backend_pid().await;
        let policy = RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        };
        let error = db
            .transaction_with_retry(&policy, async |tx| {
                tx.users().create(&new_user("standby", 3)).await
            })
            .await
            .expect_err("a standby refuses transactions that write");
        assert!(
            matches!(&error, RepoError::Unavailable(m) if m.contains("cannot write")),
            "{error:?}"
        );
        assert_ne!(
            before_transaction,
            backend_pid().await,
            "the refused connection was reused"
        );

        let sync_db = Database::connect(&config).expect("connect sync");
        let error = sync_db
            .users()
            .create(&new_user("standby", 2))
            .expect_err("a standby refuses writes");
        assert!(matches!(&error, RepoError::Unavailable(_)), "{error:?}");
    }

    /// A multi-host URL whose first host is the standby reaches the primary
    /// with `target_session_attrs=read-write`, in both modes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_host_url_finds_the_primary_in_both_modes() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let url = format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            standby.port(),
            primary.port()
        );
        let config = keel_tests::config(DatabaseUrl::parse(&url).expect("multi-host URL"));
        let db = AsyncDatabase::connect(&config)
            .await
            .expect("async connect");
        db.users()
            .create(&new_user("multi-async", 1))
            .await
            .expect("async write");
        let sync_config = config.clone();
        tokio::task::spawn_blocking(move || {
            let db = Database::connect(&sync_config).expect("sync connect");
            db.users()
                .create(&new_user("multi-sync", 1))
                .expect("sync write");
        })
        .await
        .expect("sync mode");
    }

    /// Synchronous replication, a writer loop on a multi-host URL, the
    /// primary stopped and the standby promoted: every write that returned
    /// `Ok` is on the new primary, and writes resume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_synchronous_replication_no_acknowledged_write_is_lost() {
        let Some((primary, standby)) = primary_and_standby() else {
            return;
        };
        let mut conn = PgConnection::establish(&primary.url("postgres")).expect("primary");
        conn.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .and_then(|()| conn.batch_execute("SELECT pg_reload_conf()"))
            .expect("synchronous standby");
        drop(conn);
        let multi_host = format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            primary.port(),
            standby.port()
        );
        let mut config = keel_tests::config(DatabaseUrl::parse(&multi_host).expect("multi-host"));
        config.pool_size = 2;
        config.connect_timeout = Duration::from_secs(1);
        config.checkout_timeout = Duration::from_secs(2);
        let db = AsyncDatabase::connect(&config).await.expect("connect");
        let primary = Arc::new(primary);
        let standby = Arc::new(standby);
        let (old, new) = (primary.clone(), standby.clone());
        let failover = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tokio::task::spawn_blocking(move || {
                let stopping = Instant::now();
                old.kill();
                let stopped = Instant::now();
                new.promote();
                (stopping, stopped, Instant::now())
            })
            .await
            .expect("fail over")
        });
        let policy = RetryPolicy::default();
        let mut acknowledged = Vec::new();
        let mut errors = 0u32;
        let mut n = 0;
        let mut finished_at = None;
        // Writes go on until a second after the promote returned.
        while finished_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(1)) {
            if finished_at.is_none() && failover.is_finished() {
                finished_at = Some(Instant::now());
            }
            n += 1;
            let user = new_user("failover", n);
            let result = db
                .transaction_with_retry(&policy, async |tx| tx.users().create(&user).await)
                .await;
            match result {
                Ok(user) => acknowledged.push((user.id, Instant::now())),
                Err(_) => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        let (stopping, stopped, promoted) = failover.await.expect("failover task");
        let before = acknowledged.iter().filter(|(_, at)| *at < stopping).count();
        let during = acknowledged
            .iter()
            .filter(|(_, at)| *at >= stopping && *at < promoted)
            .count();
        let first_after = acknowledged
            .iter()
            .map(|(_, at)| *at)
            .find(|at| *at >= promoted)
            .expect("no write succeeded after the promote");
        // The outage a writer saw: from the moment the primary began to stop
        // to the first write acknowledged by the new primary; keel's part of
        // it starts when the promote returns.
        let outage = first_after - stopping;
        let keel_part = first_after - promoted;
        println!(
            "failover: {} writes acknowledged ({before} before the primary was stopped, {during} \
             while it stopped and the standby was promoted, the rest after), {errors} failed; \
             stopping took {:?}, the promote {:?}; writes resumed {outage:?} after the primary \
             began to stop, {keel_part:?} after the promote returned",
            acknowledged.len(),
            stopped - stopping,
            promoted - stopped,
        );
        assert!(
            keel_part < Duration::from_secs(3),
            "writes resumed only {keel_part:?} after the promote"
        );
        let mut conn = PgConnection::establish(&standby.url("postgres")).expect("new primary");
        let stored: Vec<i32> = keel_schema::users::table
            .select(keel_schema::users::id)
            .load(&mut conn)
            .expect("read the new primary");
        let stored: std::collections::HashSet<i32> = stored.into_iter().collect();
        let lost: Vec<i32> = acknowledged
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !stored.contains(id))
            .collect();
        println!(
            "failover: {} of {} acknowledged writes missing on the new primary",
            lost.len(),
            acknowledged.len()
        );
        assert!(
            lost.is_empty(),
            "acknowledged writes lost in the failover: {lost:?}"
        );
    }

    use diesel::QueryDsl as _;
}
