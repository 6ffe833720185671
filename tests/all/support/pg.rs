//! Throwaway PostgreSQL 15 clusters for the PostgreSQL store's tests.
//!
//! One cluster is shared by the whole test binary ([`shared`]), started on
//! first use; each test gets a fresh database in it ([`fresh_db`]). Tests
//! that stop or restart the server take a cluster of their own
//! ([`Cluster::start`]), so they never disturb the others.
//!
//! How a cluster is made: `initdb` and `pg_ctl` from
//! `/usr/lib/postgresql/15/bin` (or `$TOOLHOST_PG_BIN`), run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses to run as
//! root), in a temporary directory that user owns; trust authentication;
//! listening on 127.0.0.1 on a free port, and on a unix socket in that
//! directory. `fsync = off` for tests (they prove logic, not durability);
//! the store bench (`host/benches/store.rs`, which includes this file)
//! starts a durable one ([`Cluster::start_durable`]: fsync on,
//! `synchronous_commit = on`).
//!
//! How it goes away: a `static` is never dropped, so each cluster has a
//! reaper: a small shell process in its own session that blocks reading a
//! pipe whose write end only this test process holds. When the test process
//! exits, however it exits (SIGKILL included), the pipe closes, and the
//! reaper stops the server (`pg_ctl stop -m immediate`) and removes the
//! directory. A private cluster is also stopped by its `Drop`.
//!
//! When a cluster cannot be started, the test fails and says why (the
//! server's log included): PostgreSQL tests are never skipped.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The PostgreSQL binaries: `$TOOLHOST_PG_BIN`, else version 15's, else
/// the newest the distribution installed.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOOLHOST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let fifteen = root.join("15/bin");
    if fifteen.join("initdb").exists() {
        return fifteen;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or(fifteen)
}

/// The user the server runs as: `postgres` when we are root, else ourselves.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam reads a static buffer; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "the tests run as root and there is no `postgres` user to run PostgreSQL as (install the postgresql package)"
    );
    // SAFETY: pw is non-null and points at a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid))
}

fn as_server(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn run(cmd: &mut Command, what: &str, log: Option<&Path>) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({}): {e}", bin_dir().display()));
    if !out.status.success() {
        let log = log
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        panic!(
            "{what} failed ({}): {}{}\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running PostgreSQL cluster in a temporary directory.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    /// The reaper's stdin: closing it (our exit) stops the server.
    _reaper: Mutex<(Child, ChildStdin)>,
}

impl Cluster {
    /// Creates and starts a new cluster for tests (fsync off); panics with
    /// the reason if it cannot.
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// A cluster that syncs every commit, as production would: for the bench.
    #[allow(
        dead_code,
        reason = "used by host/benches/store.rs, which includes this file"
    )]
    pub fn start_durable() -> Cluster {
        Cluster::start_with(true)
    }

    fn start_with(durable: bool) -> Cluster {
        let bin = bin_dir();
        assert!(
            bin.join("initdb").exists(),
            "PostgreSQL is not installed: {} is missing (apt-get install postgresql)",
            bin.join("initdb").display()
        );
        let dir = tempfile::Builder::new()
            .prefix("toolhost-pg-")
            .tempdir()
            .expect("a temp dir for PostgreSQL")
            .keep();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the cluster dir");
        }
        let data = dir.join("data");
        run(
            as_server(Command::new(bin.join("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])),
            "initdb",
            None,
        );
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = {fsync}\nfull_page_writes = {fsync}\nsynchronous_commit = on\nmax_connections = 300\n\
             shared_buffers = 32MB\nlog_min_messages = warning\n",
            dir.display(),
            fsync = if durable { "on" } else { "off" },
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("configure the cluster");
        // The reaper first, so a panic below still cleans up.
        let mut reaper = Command::new("sh");
        reaper
            .arg("-c")
            .arg(format!(
                "read _ignored; {pg_ctl} -D {data} stop -m immediate -w >/dev/null 2>&1; rm -rf {dir}",
                pg_ctl = bin.join("pg_ctl").display(),
                data = data.display(),
                dir = dir.display(),
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some((uid, gid)) = server_user() {
            // The reaper stops the server as its user; `rm -rf` of a dir
            // that user owns works as that user too.
            reaper.uid(uid).gid(gid);
        }
        let mut reaper = reaper.spawn().expect("start the cluster's reaper");
        let stdin = reaper.stdin.take().expect("the reaper's stdin");
        let cluster = Cluster {
            dir,
            port,
            _reaper: Mutex::new((reaper, stdin)),
        };
        cluster.pg_ctl("start");
        cluster
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let mut cmd = Command::new(bin_dir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60"]);
        match action {
            "start" => cmd.arg("start"),
            "restart" => cmd.args(["restart", "-m", "fast"]),
            "stop" => cmd.args(["stop", "-m", "fast"]),
            other => panic!("unknown pg_ctl action {other}"),
        };
        run(as_server(&mut cmd), &format!("pg_ctl {action}"), Some(&log));
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts a stopped server.
    pub fn resume(&self) {
        self.pg_ctl("start");
    }

    /// Restarts the server (every connection drops).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// The URL of database `db` over TCP on 127.0.0.1.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` against database `db` (blocking; from any context).
    pub fn execute(&self, db: &str, sql: &str) -> u64 {
        let url = self.url(db);
        let sql = sql.to_string();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
                let conn = tokio::spawn(conn);
                let rows = client
                    .query(sql.as_str(), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                drop(client);
                let _ = conn.await;
                rows.len() as u64
            })
        })
        .join()
        .expect("the SQL thread")
    }

    /// A new, empty database; its URL.
    pub fn fresh_db(&self) -> String {
        let name = format!("t_{:016x}", rand::random::<u64>());
        self.execute("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Drops every connection to database `db` but ours
    /// (`pg_terminate_backend`): what a failover or an operator does.
    pub fn terminate_backends(&self, db: &str) -> u64 {
        self.execute(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A private cluster: stop it now (the reaper then finds it stopped
        // and removes the directory when its pipe closes with ours).
        let data = self.dir.join("data");
        let _ = as_server(
            Command::new(bin_dir().join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["stop", "-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .status();
        if let Ok(mut reaper) = self._reaper.lock() {
            let (child, stdin) = &mut *reaper;
            let _ = stdin.write_all(b"\n");
            let _ = child.wait_timeout_or_kill(Duration::from_secs(10));
        }
    }
}

/// Waiting for the reaper, bounded.
trait WaitTimeout {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> std::io::Result<()>;
}

impl WaitTimeout for Child {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> std::io::Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }
}

/// The cluster shared by the whole test binary.
pub fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// A fresh database in the shared cluster; its URL.
pub fn fresh_db() -> String {
    shared().fresh_db()
}

/// The database name in a URL made by [`Cluster::url`].
pub fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}
