//! A throwaway PostgreSQL cluster of a test's own: `initdb` into a temporary
//! directory, started with `pg_ctl` on a free port, so a test can restart or
//! stop the server without disturbing anything else. Stopped and removed on
//! drop, also when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::in_ci;

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1 at a
/// port of its own, with trust authentication for the `postgres` superuser.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `initdb` and the server refuse to run as root: as root, every command
    /// runs as this (unprivileged) user instead.
    run_as: Option<String>,
}

impl PgCluster {
    /// Creates and starts a cluster. Returns `None` after a loud message when
    /// PostgreSQL's server programs are not installed, unless `CI` is set:
    /// then it panics.
    pub fn start() -> Option<Self> {
        let cluster = Self::create()?;
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.start_server();
        Some(cluster)
    }

    /// A cluster ready to be a streaming-replication primary: WAL for
    /// replicas, replication slots, hot standby on its copies. (initdb's
    /// default `pg_hba.conf` already trusts replication from loopback.)
    pub fn start_primary() -> Option<Self> {
        let cluster = Self::start()?;
        let conf = format!("{}/postgresql.auto.conf", cluster.data_dir());
        let settings = "wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
                        hot_standby = on\nwal_keep_size = 64MB\n";
        cluster.append_to(&conf, settings);
        cluster.pg_ctl(&["-m", "fast", "restart"]);
        Some(cluster)
    }

    /// A hot standby of this cluster, streaming from it: `pg_basebackup -R
    /// -X stream -C -S` (a replication slot of its own), on a port of its
    /// own. Panics when the copy or the start fails.
    pub fn start_standby(&self) -> Self {
        let standby = Self::create().expect("the server programs were found for the primary");
        let slot = format!("standby_{}", standby.port);
        standby.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &standby.data_dir(),
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                &slot,
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        // A standby whose primary died retries its WAL source only every
        // `wal_retrieve_retry_interval` (5 s by default), and a promote
        // can wait that long to be noticed.
        let conf = format!("{}/postgresql.auto.conf", standby.data_dir());
        standby.append_to(&conf, "wal_retrieve_retry_interval = 100ms\n");
        standby.start_server();
        standby
    }

    /// `pg_ctl promote`: a standby becomes a primary. Returns when it
    /// accepts writes.
    pub fn promote(&self) -> Duration {
        let started = Instant::now();
        self.pg_ctl(&["promote"]);
        started.elapsed()
    }

    /// `pg_ctl stop -m fast` (sessions are terminated, the server
    /// checkpoints and stops).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint, as
    /// in a crash.
    pub fn kill(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// Starts a stopped server again.
    pub fn start_again(&self) {
        self.start_server();
    }

    fn create() -> Option<Self> {
        let Some(bin) = server_bin_dir() else {
            let reason = "PostgreSQL's server programs (initdb, pg_ctl) were not found; \
                          set KEEL_TEST_PG_BIN to their directory";
            assert!(!in_ci(), "CI is set and {reason}");
            eprintln!("\n!!! SKIPPED: {reason}.\n!!! With CI set this test fails.\n");
            return None;
        };
        let (dir, run_as) = server_dir("keel-pg-");
        Some(Self {
            dir,
            bin,
            port: free_port(),
            run_as,
        })
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c shared_buffers=16MB -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&["-o", &options, "start"]);
    }

    /// Appends `text` to a file of the data directory (appending keeps its
    /// owner, also as root).
    fn append_to(&self, file: &str, text: &str) {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("append to {file}: {e}"));
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` on this server (`postgres` always exists).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl restart -m fast`: every session is terminated, the server
    /// checkpoints, stops and starts again. Returns when it accepts
    /// connections, with how long that took.
    pub fn restart(&self) -> Duration {
        let started = Instant::now();
        self.pg_ctl(&["-m", "fast", "restart"]);
        started.elapsed()
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let log = self.log_file().display().to_string();
        let mut full = vec!["-D", &self.data_dir(), "-l", &log, "-w", "-t", "30"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.run("pg_ctl", &full)
    }

    /// Runs one of the server programs (as `run_as` when root); panics with
    /// its output and the server log when it fails.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        output
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // The server programs chdir nowhere; as another user the test's
        // working directory may be unreadable.
        command.args(args).current_dir(self.dir.path());
        command
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !Path::new(&self.data_dir()).join("postmaster.pid").exists() {
            return; // stopped already
        }
        // Immediate: the data is thrown away with the directory anyway.
        let stopped = self
            .command(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
            )
            .output();
        if !stopped.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!(
                "warning: could not stop the throwaway cluster on port {}: {stopped:?}",
                self.port
            );
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: `KEEL_TEST_PG_BIN`, else
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn server_bin_dir() -> Option<PathBuf> {
    let has_programs = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("KEEL_TEST_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_programs(d));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_programs(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_programs(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A temporary directory for a server program, and the user to run it as:
/// as root, the unprivileged `KEEL_TEST_PG_USER` (default `postgres`), who
/// then owns the directory, since PostgreSQL's programs refuse root.
pub(crate) fn server_dir(prefix: &str) -> (tempfile::TempDir, Option<String>) {
    let run_as =
        is_root().then(|| std::env::var("KEEL_TEST_PG_USER").unwrap_or_else(|_| "postgres".into()));
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a directory for the server");
    if let Some(user) = &run_as {
        let status = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(dir.path())
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {} to {user}", dir.path().display());
    }
    (dir, run_as)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port nothing listens on right now (the OS picks it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port")
}
