//! Exactly once across processes: four `toolhost` processes, one database
//! file, one key.

use std::process::{Command, Stdio};

use serde_json::json;

use super::World;

#[test]
fn four_processes_one_key_one_effect() {
    let world = World::new();
    let config = world.write_config();
    let input = json!({"file": "multi.txt", "text": "from many", "sleep_ms": 300}).to_string();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_toolhost"))
                .args([
                    "--config",
                    config.to_str().unwrap(),
                    "--json",
                    "call",
                    "append",
                ])
                .args(["--input", &input, "--idempotency-key", "multi-1"])
                .current_dir(world.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            crate::support::stdout_json(&out)
        })
        .collect();

    let lines = world.lines("multi.txt");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let key = outputs[0]["key"].as_str().unwrap();
    assert_eq!(lines[0], format!("{key} from many"));
    for o in &outputs {
        assert_eq!(o["key"], key);
        assert_eq!(o["output"], json!({"appended": true, "attempt": 1}));
    }
    let ran = outputs.iter().filter(|o| o["cached"] == false).count();
    assert_eq!(ran, 1, "exactly one process ran the tool: {outputs:?}");
}
