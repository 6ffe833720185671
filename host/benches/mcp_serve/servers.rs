//! The servers under test, each its own process, each on both transports:
//! `toolhost serve`, the bare rmcp echo (`bare.rs`) and FastMCP's echo
//! (`support/fastmcp_echo.py`).
//!
//! A stdio server is the direct child of the client's transport and an
//! HTTP server the direct child of this process (Python is started by its
//! real interpreter path, not a version manager's shim), so the pid whose
//! CPU is read is the server's own.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;

use super::bare;
use super::load::Client;

/// The FastMCP release the bench was written against.
pub const FASTMCP_INSTALL: &str = "pip install fastmcp==4.1.6";

/// How long a server may take to start: the first `toolhost serve` of a
/// cold artifact cache compiles every built-in tool.
const START_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Toolhost,
    Bare,
    FastMcp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Toolhost => "toolhost",
            Kind::Bare => "bare rmcp",
            Kind::FastMcp => "FastMCP",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Stdio,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "HTTP",
        }
    }
}

/// One running server.
pub struct Server {
    pub kind: Kind,
    pub transport: Transport,
    pub pid: u32,
    pub conn: Conn,
}

pub enum Conn {
    /// The one session a stdio server has, for the whole run.
    Stdio(Client),
    /// Where to open sessions; the child is killed when this is dropped.
    Http { url: String, _child: KillOnDrop },
}

pub struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `toolhost serve` runs with: scratch HOME and XDG directories, a
/// config granting `notes` a data directory, a store per transport, and
/// the tests' artifact cache (compiled once, shared by later runs).
pub struct ToolhostHome {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl ToolhostHome {
    pub fn new() -> ToolhostHome {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the notes directory");
        let cache = artifacts_dir();
        let config = dir.path().join("toolhost.toml");
        let text = format!(
            "[sandbox]\ncache_dir = {:?}\nkey_dir = {:?}\n\n[tools.notes]\ndirs = [{{ host = {:?}, guest = \"/data\", mode = \"rw\" }}]\n",
            cache.display().to_string(),
            cache.with_extension("key").display().to_string(),
            data.display().to_string(),
        );
        std::fs::write(&config, text).expect("write the config");
        ToolhostHome { dir, config }
    }

    /// `toolhost --config C --db D serve ARGS` with this home's directories.
    fn command(&self, db: &str, serve: &[&str]) -> tokio::process::Command {
        let root = self.dir.path();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--db")
            .arg(root.join(db))
            .arg("serve")
            .args(serve)
            .current_dir(root)
            .env("HOME", root.join("home"))
            .env("XDG_CACHE_HOME", root.join(".xdg/cache"))
            .env("XDG_CONFIG_HOME", root.join(".xdg/config"))
            .env("XDG_DATA_HOME", root.join(".xdg/data"))
            .env("XDG_STATE_HOME", root.join(".xdg/state"))
            .env_remove("TOOLHOST_CONFIG")
            .env_remove("TOOLHOST_LOG")
            .env_remove("TOOLHOST_LOG_FORMAT");
        cmd
    }
}

/// Compiled components, shared with the test suite's runs.
pub fn artifacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}

pub async fn toolhost(home: &ToolhostHome, transport: Transport) -> Server {
    match transport {
        Transport::Stdio => stdio(Kind::Toolhost, home.command("stdio.db", &["--stdio"])).await,
        Transport::Http => {
            let cmd = home.command("http.db", &["--http", "127.0.0.1:0"]);
            http(Kind::Toolhost, cmd, |line| {
                let rest = line.strip_prefix("toolhost: serving MCP at ")?;
                Some(rest.split_whitespace().next()?.to_string())
            })
        }
    }
}

pub async fn bare(transport: Transport) -> Server {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut cmd = tokio::process::Command::new(exe);
    match transport {
        Transport::Stdio => {
            cmd.env(bare::ROLE_VAR, "bare-stdio");
            stdio(Kind::Bare, cmd).await
        }
        Transport::Http => {
            cmd.env(bare::ROLE_VAR, "bare-http");
            http(Kind::Bare, cmd, listening_url)
        }
    }
}

/// A Python interpreter that has FastMCP.
pub struct Python {
    /// Its real path (`sys.executable`), past any version manager's shim.
    pub exe: PathBuf,
    /// FastMCP's version there.
    pub fastmcp: String,
}

/// The interpreter named by `TOOLHOST_BENCH_PYTHON` (default `python3`) if
/// it has FastMCP; `None`, and a line saying how to install it, if not.
pub fn fastmcp_python() -> Option<Python> {
    let python = std::env::var("TOOLHOST_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, fastmcp; print(sys.executable); print(fastmcp.__version__)",
        ])
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = out
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        if let (Some(exe), Some(version)) = (lines.next(), lines.next()) {
            return Some(Python {
                exe: PathBuf::from(exe.trim()),
                fastmcp: version.trim().to_string(),
            });
        }
    }
    println!("FastMCP is not installed for {python} (`{FASTMCP_INSTALL}`): its rows are left out");
    None
}

pub async fn fastmcp(python: &Python, transport: Transport) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/support/fastmcp_echo.py");
    let mut cmd = tokio::process::Command::new(&python.exe);
    cmd.arg(script);
    match transport {
        Transport::Stdio => {
            cmd.arg("stdio");
            stdio(Kind::FastMcp, cmd).await
        }
        Transport::Http => {
            cmd.arg("http");
            http(Kind::FastMcp, cmd, listening_url)
        }
    }
}

fn listening_url(line: &str) -> Option<String> {
    let port = line.strip_prefix(bare::LISTENING)?.trim();
    Some(format!("http://127.0.0.1:{port}/mcp"))
}

async fn stdio(kind: Kind, cmd: tokio::process::Command) -> Server {
    // stderr goes nowhere: toolhost logs a line per call there.
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {} over stdio: {e}", kind.name()));
    let pid = transport.id().expect("a running child");
    let client = match tokio::time::timeout(START_WAIT, ().serve(transport)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => panic!("initialize {} over stdio: {e}", kind.name()),
        Err(_) => panic!("{} did not initialize over stdio", kind.name()),
    };
    Server {
        kind,
        transport: Transport::Stdio,
        pid,
        conn: Conn::Stdio(client),
    }
}

/// Starts `cmd` and waits for the stderr line `url_of` reads a URL from;
/// the rest of stderr is read and dropped (the last lines are kept for a
/// failure message).
fn http(kind: Kind, cmd: tokio::process::Command, url_of: fn(&str) -> Option<String>) -> Server {
    let mut cmd = cmd.into_std();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {} over HTTP: {e}", kind.name()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = tail.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = url_of(&line) {
                let _ = tx.send(url);
            }
            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() < 20 {
                kept.push(line);
            }
        }
    });
    let child = KillOnDrop(child);
    let url = rx.recv_timeout(START_WAIT).unwrap_or_else(|_| {
        panic!(
            "{} printed no URL: {:#?}",
            kind.name(),
            tail.lock().unwrap_or_else(|e| e.into_inner())
        )
    });
    Server {
        kind,
        transport: Transport::Http,
        pid: child.0.id(),
        conn: Conn::Http { url, _child: child },
    }
}
