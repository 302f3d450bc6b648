//! A throwaway PgBouncer of a test's own, in front of one test database on
//! the test server: its config in a temporary directory, listening on a free
//! port of 127.0.0.1, in transaction or session pooling, with only 2 server
//! connections per database so that clients must share them. Stopped on
//! drop, also when the test panics.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::{free_port, server_dir};
use crate::{PgTestDatabase, in_ci};

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's life.
    Session,
    /// A server connection per transaction (or per statement outside one).
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

/// A running PgBouncer fronting one database, with trust authentication and
/// the server's user as its admin (`admin_users`), so its console answers.
pub struct PgBouncer {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    database: String,
    version: String,
    /// PgBouncer refuses to run as root: as root it runs as this user.
    run_as: Option<String>,
}

impl PgBouncer {
    /// Starts a PgBouncer in `mode` in front of `database`. Returns `None`
    /// after a loud message when the `pgbouncer` program is not installed
    /// (Debian: `apt-get install pgbouncer`), unless `CI` is set: then it
    /// panics. On PgBouncer 1.21 or newer `max_prepared_statements` is set
    /// to 0, so that every version behaves as the oldest one keel supports
    /// in sync mode and must refuse in async mode.
    pub fn start(database: &PgTestDatabase, mode: PoolMode) -> Option<Self> {
        let Some(program) = program() else {
            let reason = "the pgbouncer program was not found (Debian: apt-get install pgbouncer); \
                          set KEEL_TEST_PGBOUNCER to its path";
            assert!(!in_ci(), "CI is set and {reason}");
            eprintln!("\n!!! SKIPPED: {reason}.\n!!! With CI set this test fails.\n");
            return None;
        };
        let version = version(&program);
        let server = Server::parse(&PgTestDatabase::server_url());
        let (dir, run_as) = server_dir("keel-pgbouncer-");
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let password = server
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(" password={p}"));
        let mut ini = format!(
            "[databases]\n\
             {name} = host={host} port={server_port} dbname={name} user={user}{password}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir = {dir}\n\
             auth_type = trust\n\
             auth_file = {auth_file}\n\
             admin_users = {user}\n\
             pool_mode = {mode}\n\
             ; small on purpose: clients must share server connections\n\
             default_pool_size = 2\n\
             max_client_conn = 200\n\
             logfile = {logfile}\n\
             pidfile = {pidfile}\n",
            name = database.name(),
            host = server.host,
            server_port = server.port,
            user = server.user,
            dir = dir.path().display(),
            auth_file = path("userlist.txt"),
            mode = mode.as_str(),
            logfile = path("pgbouncer.log"),
            pidfile = path("pgbouncer.pid"),
        );
        if parse_version(&version) >= Some((1, 21)) {
            ini.push_str("max_prepared_statements = 0\n");
        }
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"{}\" \"\"\n", server.user),
        )
        .expect("write userlist.txt");
        let bouncer = Self {
            dir,
            port,
            user: server.user,
            database: database.name().to_owned(),
            version,
            run_as,
        };
        let ini = bouncer
            .dir
            .path()
            .join("pgbouncer.ini")
            .display()
            .to_string();
        let output = bouncer
            .command(&program.display().to_string(), &["-d", &ini])
            .output()
            .expect("run pgbouncer");
        assert!(
            output.status.success(),
            "pgbouncer -d failed: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            bouncer.log()
        );
        bouncer.wait_until_listening();
        Some(bouncer)
    }

    /// The port PgBouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database through PgBouncer.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.user, self.port, self.database
        )
    }

    /// What `pgbouncer --version` says first, e.g. `PgBouncer 1.18.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The version number alone, e.g. `1.18.0`.
    pub fn version_number(&self) -> &str {
        self.version
            .split_whitespace()
            .nth(1)
            .unwrap_or(&self.version)
    }

    /// PgBouncer's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PgBouncer did not listen on port {} within 10 s; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.pid"))
            .ok()
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", program]);
                c
            }
            None => Command::new(program),
        };
        // As another user the test's working directory may be unreadable.
        command.args(args).current_dir(self.dir.path());
        command
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else {
            eprintln!("warning: PgBouncer on port {} left no pid file", self.port);
            return;
        };
        // SIGINT: PgBouncer closes its connections and exits at once.
        let _ = self.command("kill", &["-INT", &pid]).output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .command("kill", &["-0", &pid])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            if Instant::now() > deadline {
                eprintln!(
                    "warning: PgBouncer (pid {pid}) on port {} did not stop",
                    self.port
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `KEEL_TEST_PGBOUNCER`, else `pgbouncer` on `PATH`, else Debian's
/// `/usr/sbin/pgbouncer` (not on a normal user's `PATH`).
fn program() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("KEEL_TEST_PGBOUNCER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
}

fn version(program: &Path) -> String {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .expect("run pgbouncer --version");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `(1, 18)` from `PgBouncer 1.18.0`.
fn parse_version(line: &str) -> Option<(u32, u32)> {
    let number = line.split_whitespace().nth(1)?;
    let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Where the test server is, from its URL, for PgBouncer's `[databases]`.
struct Server {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

impl Server {
    /// `postgres://[user[:password]@]host[:port][/...]`, the form of
    /// `KEEL_TEST_PG_URL` these fixtures support (no percent-escapes).
    fn parse(url: &str) -> Self {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| {
                panic!(
                    "the PgBouncer fixture needs KEEL_TEST_PG_URL in the form \
                     postgres://user@host:port"
                )
            });
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((user, password)) => (user, (!password.is_empty()).then(|| password.to_owned())),
            None => ("postgres", None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse().expect("a port number in KEEL_TEST_PG_URL"),
            ),
            None => (hostport, 5432),
        };
        Self {
            host: if host.is_empty() { "127.0.0.1" } else { host }.to_owned(),
            port,
            user: if user.is_empty() { "postgres" } else { user }.to_owned(),
            password,
        }
    }
}
