//! Exactly once across hosts, and fencing of a paused one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use toolhost::store::CallState;

use super::{HostDir, Server, wait_until};
use crate::idempotency::World;
use crate::mcp::harness::{connect, idempotency_meta, meta, params, text};
use crate::support::stdout_json;

const HOSTS: usize = 4;
const KEYS: [&str; 3] = ["order-1", "order-2", "order-3"];

/// Four toolhost servers, each with its own directory and owner id, share
/// one PostgreSQL store. A barrier releases, on every host at once, one
/// call of a slow side-effecting tool for each of three keys (twelve
/// callers). Each key executes exactly once over all the hosts' data
/// directories, every caller gets that one outcome, exactly one caller per
/// key ran it, and the others were answered from its record while they
/// overlapped it (each waited for the running claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hosts_contend_for_the_same_keys_and_each_runs_once() {
    let url = crate::support::pg::fresh_db();
    let hosts: Vec<HostDir> = (0..HOSTS).map(|_| HostDir::new(&url, false)).collect();
    let servers: Vec<Server> = std::thread::scope(|s| {
        let started: Vec<_> = hosts.iter().map(|h| s.spawn(|| Server::start(h))).collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut clients = Vec::new();
    for server in &servers {
        clients.push(Arc::new(connect(&server.url, None).await));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(HOSTS * KEYS.len()));
    let mut calls = Vec::new();
    for (h, client) in clients.iter().enumerate() {
        for key in KEYS {
            let (client, barrier) = (client.clone(), barrier.clone());
            calls.push(tokio::spawn(async move {
                let input = json!({"file": "paid.txt", "text": key, "sleep_ms": 2_500});
                let mut p = params("append", input);
                p.meta = Some(idempotency_meta(key));
                barrier.wait().await;
                let started = std::time::Instant::now();
                let result = tokio::time::timeout(Duration::from_secs(60), client.call_tool(p))
                    .await
                    .expect("every caller is answered within 60 s")
                    .expect("no protocol error");
                (h, key, result, started.elapsed())
            }));
        }
    }
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }

    for key in KEYS {
        let executions: usize = hosts
            .iter()
            .map(|h| {
                h.lines("paid.txt")
                    .iter()
                    .filter(|l| l.ends_with(&format!(" {key}")))
                    .count()
            })
            .sum();
        assert_eq!(executions, 1, "{key} ran {executions} times over all hosts");
        let mine: Vec<_> = results.iter().filter(|r| r.1 == key).collect();
        assert_eq!(mine.len(), HOSTS);
        let idem = meta(&mine[0].2, "toolhost/key");
        for (h, _, result, _) in &mine {
            assert_ne!(
                result.is_error,
                Some(true),
                "host {h}, {key}: {}",
                text(result)
            );
            let output: Value = serde_json::from_str(&text(result)).unwrap();
            assert_eq!(
                output,
                json!({"appended": true, "attempt": 1}),
                "host {h}, {key}"
            );
            assert_eq!(
                meta(result, "toolhost/key"),
                idem,
                "one key for one operation"
            );
        }
        let ran: Vec<_> = mine
            .iter()
            .filter(|r| meta(&r.2, "toolhost/cached") == json!(false))
            .collect();
        assert_eq!(ran.len(), 1, "exactly one host ran {key}");
        // The callers answered from the record waited for the running
        // claim: released together, they finished after the 2.5 s run.
        for (h, _, result, took) in &mine {
            assert!(
                *took >= Duration::from_millis(1_000),
                "host {h} answered {key} in {took:?}: it did not overlap the run ({})",
                text(result)
            );
        }
        // And the line came from the key the callers were told.
        let line = hosts
            .iter()
            .flat_map(|h| h.lines("paid.txt"))
            .find(|l| l.ends_with(&format!(" {key}")))
            .unwrap();
        assert_eq!(line, format!("{} {key}", idem.as_str().unwrap()));
    }
}

/// Host A claims a side-effecting call and is SIGSTOPped mid-run, past its
/// lease. Host B (whose policy re-runs in-doubt calls) sees the lease
/// expire, takes the claim over with a new fencing token, runs it and
/// records it. A is SIGCONTed: its tool finishes, but its outcome write
/// presents the old token and is refused: A reports `in_doubt`, saying it
/// was fenced off, and B's record stands.
#[test]
fn a_paused_host_that_lost_its_lease_cannot_record_its_outcome() {
    let url = crate::support::pg::fresh_db();
    let (a, b) = (HostDir::new(&url, false), HostDir::new(&url, true));
    let input = json!({"file": "paid.txt", "text": "pay", "sleep_ms": 1_000}).to_string();
    let args = [
        "--json",
        "call",
        "append",
        "--input",
        input.as_str(),
        "--idempotency-key",
        "fence-1",
    ];
    let first = a
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A's tool is running once its line is written.
    wait_until(Duration::from_secs(30), "A starts the call", || {
        !a.lines("paid.txt").is_empty()
    });
    let pid = first.id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);

    // B waits out A's lease, takes over and records attempt 2.
    let out = crate::support::output_within(b.command(&args), Duration::from_secs(90));
    assert!(out.status.success(), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["cached"], false, "{v}");
    assert_eq!(v["attempt"], 2, "{v}");
    assert_eq!(b.lines("paid.txt").len(), 1);

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let out = crate::support::wait_within(first, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "in_doubt", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("fenced"), "{message}");
    assert!(message.contains("taken over"), "{message}");

    // The store holds B's outcome, under B's token.
    let world = World::postgres_at(url);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = world.store().await;
        let key = v["key"].as_str().unwrap();
        let row = store.get(key).await.unwrap().unwrap();
        assert_eq!(row.state, CallState::Done);
        assert_eq!(row.attempt, 2);
        assert_eq!(
            row.outcome.unwrap().output.unwrap(),
            json!({"appended": true, "attempt": 2})
        );
        // A flushed its counters as it exited: the refusal is counted.
        let counters = store.counters().await.unwrap();
        assert!(
            counters.contains(&("fenced".to_string(), 1)),
            "{counters:?}"
        );
    });
}

/// `--db postgres://...` selects the shared store from the command line
/// (the config names no store): the call is recorded in PostgreSQL, and a second
/// process with `--db` replays it; `cache list` reads it from there too.
#[test]
fn the_cli_selects_the_shared_store_with_db() {
    let url = crate::support::pg::fresh_db();
    let dir = tempfile::tempdir().unwrap();
    // Only the shared compile cache: the store comes from `--db` alone.
    crate::support::write_trusted_config(
        dir.path(),
        &format!(
            "[sandbox]\ncache_dir = {:?}\n",
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
        ),
    );
    let call = [
        "--db",
        url.as_str(),
        "--json",
        "call",
        "calc",
        "--input",
        r#"{"expr":"6*7"}"#,
        "--idempotency-key",
        "cli-1",
    ];
    let first = crate::support::toolhost(dir.path(), &call);
    assert!(first.status.success(), "{first:?}");
    let first = stdout_json(&first);
    assert_eq!(first["cached"], false, "{first}");
    let second = stdout_json(&crate::support::toolhost(dir.path(), &call));
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["output"], first["output"]);
    let list = crate::support::toolhost(dir.path(), &["--db", &url, "--json", "cache", "list"]);
    assert!(list.status.success(), "{list:?}");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains(first["key"].as_str().unwrap()), "{text}");
    assert!(
        !dir.path().join(".toolhost/toolhost.db").exists(),
        "no SQLite file was made"
    );
}

/// A call that runs for three leases is not taken for dead: its owner's
/// heartbeat renews the claim while it runs, so another owner waiting on
/// the key (whose policy would re-run an in-doubt call) waits for the
/// outcome instead of taking over, and the claim keeps its fencing token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_keeps_its_lease_by_heartbeat() {
    use crate::idempotency::{TEST_LEASE, keyed, within};
    use toolhost::config::InDoubtPolicy;

    let world = World::postgres();
    let runner = Arc::new(world.append_executor().await);
    let mut policies = world.testkit_policies();
    policies.get_mut("append").unwrap().in_doubt = Some(InDoubtPolicy::Retry);
    let waiter = world
        .executor(&crate::idempotency::testkit_dir(), policies, None)
        .await;
    let sleep_ms = 3 * TEST_LEASE.as_millis() as u64;
    let input = json!({"file": "log.txt", "text": "long", "sleep_ms": sleep_ms}).to_string();
    let running = {
        let (runner, input) = (runner.clone(), input.clone());
        tokio::spawn(async move { runner.call("append", &input, keyed("long-1")).await })
    };
    super::running(&world).await;
    let key = runner.store().list(1).await.unwrap()[0].key.clone();
    let fence = runner.store().get(&key).await.unwrap().unwrap().fence;
    let waited = within(
        30,
        "the waiter",
        waiter.call("append", &input, keyed("long-1")),
    )
    .await
    .unwrap();
    let ran = within(30, "the runner", running).await.unwrap().unwrap();
    assert!(!ran.cached);
    assert!(
        waited.cached,
        "the waiter got the outcome, it did not take over"
    );
    assert_eq!(waited.output, json!({"appended": true, "attempt": 1}));
    assert_eq!(world.lines("log.txt").len(), 1);
    let row = runner.store().get(&key).await.unwrap().unwrap();
    assert_eq!((row.attempt, row.fence), (1, fence));
}
