//! Several toolhost processes on one PostgreSQL store: each a "host" with
//! its own directory (config, `data/` granted to `append`, working
//! directory) and its own owner id, sharing nothing but the database. Real
//! processes, a real PostgreSQL cluster (`support::pg`), faults injected
//! from outside (SIGSTOP, `pg_terminate_backend`, a stopped server).

mod faults;
mod hosts;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::idempotency::{TEST_LEASE, testkit_dir};

/// One host's directory and config.
pub struct HostDir {
    dir: tempfile::TempDir,
}

impl HostDir {
    /// A host on the store at `url`: its own `data/`, config and working
    /// directory. `in_doubt_retry`: `append`'s policy re-runs an in-doubt
    /// call (`in_doubt = "retry"`), so this host takes over dead claims.
    pub fn new(url: &str, in_doubt_retry: bool) -> HostDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let config = format!(
            "[sandbox]\ntools_dir = {tools:?}\ncache_dir = {cache:?}\n\n\
             [tools.append]\ndirs = [{{ host = {data:?}, guest = \"/data\", mode = \"rw\" }}]\n\
             timeout_ms = 20_000\n{retry}\n\
             [store]\nurl = {url:?}\nlease_ms = {lease}\nbusy_timeout_ms = 2_000\n",
            tools = testkit_dir(),
            cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"),
            data = dir.path().join("data"),
            retry = if in_doubt_retry {
                "in_doubt = \"retry\"\n"
            } else {
                ""
            },
            lease = TEST_LEASE.as_millis(),
        );
        std::fs::write(dir.path().join("toolhost.toml"), config).unwrap();
        HostDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The lines the host's `append` wrote to `data/<file>`.
    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join("data").join(file))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `toolhost --config <its config> ARGS`, started in its directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
        cmd.arg("--config")
            .arg(self.path().join("toolhost.toml"))
            .args(args)
            .current_dir(self.path())
            .env_remove("TOOLHOST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

/// A `toolhost serve --http 127.0.0.1:0` process: an MCP endpoint on a host.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts the server and waits (bounded) for its URL on stderr.
    pub fn start(host: &HostDir) -> Server {
        let mut child = host
            .command(&["serve", "--http", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start toolhost serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("toolhost: serving MCP at ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its URL");
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 10 ms until it holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `world`'s `append` has written its first line:
/// the call it started is running.
pub async fn running(world: &crate::idempotency::World) {
    crate::idempotency::within(30, "the call starts", async {
        while world.lines("log.txt").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}
