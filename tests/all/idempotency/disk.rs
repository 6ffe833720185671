//! A full disk never strands a claim: a side-effecting call whose outcome
//! write and in-doubt mark both fail on a real, full filesystem (a 2 MiB
//! tmpfs) keeps its write pending; waiters in the process answer `in_doubt`
//! at once (not `still_running` after their limit), and once space returns
//! the row is recorded within 5 s, without a restart.
//!
//! The call is held between its claim and its outcome by a loopback server
//! that answers the tool's HTTP request only when the test says so: the
//! disk is filled in that window, so the claim lands and the outcome cannot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use toolhost::config::{EffectName, ToolPolicy};
use toolhost::idempotency::{Executor, RETRY_MAX};
use toolhost::sandbox::EgressOptions;
use toolhost::store::{CallState, Store, StoreOptions};

use super::{keyed, within};
use crate::support_http::sandbox_with;

/// A 2 MiB tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts it; `None` (the test is skipped) only off CI when mounting is
    /// impossible here (not root); on CI that is a failure.
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { dir }),
            other if std::env::var_os("CI").is_some() => {
                panic!("cannot mount a 2 MiB tmpfs (CI runs as root): {other:?}")
            }
            other => {
                eprintln!("skipped: cannot mount a tmpfs here (needs root): {other:?}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to the last byte; returns the filler's path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A loopback HTTP server that says when a request arrived and answers it
/// only once released.
struct Gate {
    addr: std::net::SocketAddr,
    arrived: Arc<Notify>,
    release: Arc<Semaphore>,
}

impl Gate {
    async fn start() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Semaphore::new(0));
        let (a, r) = (arrived.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (a, r) = (a.clone(), r.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    a.notify_one();
                    let Ok(permit) = r.acquire().await else {
                        return;
                    };
                    permit.forget();
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npaid",
                        )
                        .await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Gate {
            addr,
            arrived,
            release,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/pay", self.addr)
    }
}

/// An executor whose `http_fetch` is side-effecting and may reach `gate`,
/// on a store in `dir`.
async fn executor(dir: &Path, gate: &Gate) -> Executor {
    let policy = ToolPolicy {
        allow_hosts: vec![gate.addr.to_string()],
        effect: Some(EffectName::SideEffecting),
        timeout_ms: Some(20_000),
        ..ToolPolicy::default()
    };
    let sandbox = sandbox_with(
        &["http_fetch"],
        &[("http_fetch", policy)],
        EgressOptions::default(),
    )
    .await;
    let path = dir.join("toolhost.db");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, StoreOptions::default()))
        .await
        .unwrap()
        .unwrap();
    Executor::new(sandbox, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_strands_a_claim() {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let gate = Gate::start().await;
    let ex = Arc::new(executor(disk.path(), &gate).await);
    let input = json!({"url": gate.url()}).to_string();

    // The owner claims, and its request is held at the gate.
    let owner = {
        let (ex, input) = (ex.clone(), input.clone());
        tokio::spawn(async move { ex.call("http_fetch", &input, keyed("pay-1")).await })
    };
    within(20, "the tool's request", gate.arrived.notified()).await;
    let filler = disk.fill();
    gate.release.add_permits(1);

    // The outcome write and the in-doubt mark both fail: the owner says
    // in_doubt and keeps the write pending.
    let e = within(20, "the owner", owner).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), "in_doubt", "{e}");
    assert!(e.to_string().contains("keeps retrying"), "{e}");
    let key = e.key().unwrap().to_string();
    let row = ex.store().get(&key).await.unwrap().unwrap();
    assert_eq!(row.state, CallState::Running, "nothing could be written");

    // A waiter answers in_doubt at once, not still_running after its limit
    // (the call's 20 s timeout plus grace).
    let asked = Instant::now();
    let e = within(
        20,
        "a waiter",
        ex.call("http_fetch", &input, keyed("pay-1")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "in_doubt", "{e}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(gate.release.available_permits(), 0, "nothing ran again");

    // Space returns: the pending write lands within 5 s, no restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let state = settled_within_5s(ex.store(), &key).await;
    assert!(freed.elapsed() <= RETRY_MAX * 3, "{:?}", freed.elapsed());
    assert_eq!(state, CallState::Done, "the outcome itself was recorded");

    // The recorded outcome replays; the tool does not run again.
    let replayed = within(
        20,
        "the replay",
        ex.call("http_fetch", &input, keyed("pay-1")),
    )
    .await
    .unwrap();
    assert!(replayed.cached, "{replayed:?}");
    assert_eq!(replayed.output["body"], "paid");
    assert_eq!(ex.stats().claims, 1, "the tool ran once");
}

/// Waits (bounded: 5 s from now) until `key`'s row is no longer running,
/// and returns its state.
async fn settled_within_5s(store: &Store, key: &str) -> CallState {
    let freed = Instant::now();
    loop {
        let row = store.get(key).await.unwrap().unwrap();
        if row.state != CallState::Running {
            return row.state;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "the row is still running {:?} after space returned",
            freed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same through the MCP server `toolhost serve` runs, over HTTP on
/// loopback: the second `tools/call` with the key answers `in_doubt` at once,
/// and after space returns the server (not restarted) replays the outcome,
/// which another process (`cache show`) sees recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_strands_a_claim_under_serve() {
    use crate::mcp::harness::{connect, error_kind, idempotency_meta, meta, output, params};
    use toolhost::mcp::{HttpOptions, HttpServer, McpServer};
    use toolhost::metrics::{ServerMetrics, no_breakers};

    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let gate = Gate::start().await;
    let ex = Arc::new(executor(disk.path(), &gate).await);
    let store = ex.store().clone();
    let metrics = Arc::new(ServerMetrics::new(8, no_breakers()));
    let server = McpServer::new(ex, metrics, 8);
    let http = HttpServer::bind(
        server,
        HttpOptions::new("127.0.0.1:0".parse().unwrap(), None, Default::default()),
    )
    .await
    .unwrap();
    let request = || {
        let mut p = params("http_fetch", json!({"url": gate.url()}));
        p.meta = Some(idempotency_meta("pay-2"));
        p
    };

    let first = {
        let (url, p) = (http.url(), request());
        tokio::spawn(async move { connect(&url, None).await.call_tool(p).await })
    };
    within(20, "the tool's request", gate.arrived.notified()).await;
    let filler = disk.fill();
    gate.release.add_permits(1);
    let first = within(20, "the owner", first).await.unwrap().unwrap();
    assert_eq!(error_kind(&first), "in_doubt");
    let key = meta(&first, "toolhost/key")
        .as_str()
        .expect("the error names the key")
        .to_string();

    let client = connect(&http.url(), None).await;
    let asked = Instant::now();
    let waiter = within(20, "a waiter", client.call_tool(request()))
        .await
        .unwrap();
    assert_eq!(error_kind(&waiter), "in_doubt");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(settled_within_5s(&store, &key).await, CallState::Done);
    let replayed = within(20, "the replay", client.call_tool(request()))
        .await
        .unwrap();
    assert_eq!(output(&replayed)["body"], "paid");
    assert_eq!(meta(&replayed, "toolhost/cached"), json!(true));

    // Another process sees the recorded row (nothing to resolve).
    let dir = tempfile::tempdir().unwrap();
    let db = disk.path().join("toolhost.db");
    let out = crate::support::toolhost(
        dir.path(),
        &[
            "--db",
            db.to_str().unwrap(),
            "--json",
            "cache",
            "show",
            &key,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["state"], "done", "{shown}");
    client.cancel().await.unwrap();
}
