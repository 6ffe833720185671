//! Exactly once across processes: callers in separate processes, one
//! database file, one key, forced to overlap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::child::{self, Role};
use super::on_both_backends;
use super::{World, keyed, within};

const PARTIES: usize = 5;

/// Five processes start together through a file barrier and contend for one
/// key of a slow side-effecting tool: exactly one execution, every caller
/// gets the outcome, and (what proves the overlap) every caller asked while
/// the one execution was still running.
#[test]
fn processes_released_by_a_barrier_share_one_execution() {
    child::act_if_child();
    let world = World::new();
    let barrier = world.path().join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    let input = json!({"file": "multi.txt", "text": "from many", "sleep_ms": 1500}).to_string();
    let test = child::test_path(
        module_path!(),
        "processes_released_by_a_barrier_share_one_execution",
    );
    let role = Role {
        world: world.path().to_path_buf(),
        tool: "append".into(),
        input,
        key: "multi-1".into(),
        barrier: Some((barrier, PARTIES)),
        tools_dir: None,
    };
    let done = child::race(&test, &role, PARTIES, Duration::from_secs(60));

    let lines = world.lines("multi.txt");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(done.iter().all(|d| d["ok"] == true), "{done:?}");
    let key = done[0]["key"].as_str().unwrap();
    assert_eq!(lines[0], format!("{key} from many"));
    for d in &done {
        assert_eq!(d["key"], key);
        assert_eq!(d["output"], json!({"appended": true, "attempt": 1}));
    }
    child::assert_one_execution(&done);
}

on_both_backends! {
/// Two executors over one database file (two claim owners, so neither
/// in-process lock helps), 200 callers released together on one key: one
/// execution, found through the database claim alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_on_one_file_200_callers_one_execution(world) {
    let a = Arc::new(world.append_executor().await);
    let b = Arc::new(world.append_executor().await);
    assert_ne!(a.store().owner_id(), b.store().owner_id());
    let input = json!({"file": "two.txt", "text": "both", "sleep_ms": 200}).to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ex = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (input, barrier) = (input.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ex.call("append", &input, keyed("two-1")).await
        }));
    }
    let mut outputs = Vec::new();
    for t in tasks {
        outputs.push(within(60, "a caller", t).await.unwrap().unwrap());
    }
    assert_eq!(world.lines("two.txt").len(), 1);
    assert_eq!(a.sandbox().runs() + b.sandbox().runs(), 1);
    assert_eq!(outputs.iter().filter(|o| !o.cached).count(), 1);
    let keys: BTreeMap<_, usize> = outputs.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(o.key.clone()).or_default() += 1;
        m
    });
    assert_eq!(keys.len(), 1, "{keys:?}");
}
}
