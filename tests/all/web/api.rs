//! The run API end to end: every endpoint and every refusal, over real
//! HTTP to a real `toolhost serve --http` process on a SQLite file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Events, Site, WAIT, script};
use crate::agent::call;
use crate::support::{stdout_json, toolhost};

/// A script whose first step calls `slow` for `ms`, then answers: a run
/// that is in a tool call for a while, and ends fast once resumed.
fn slow_script(ms: u64) -> Value {
    json!({"mode": "conversation", "turns": [
        {"tool_calls": [call("slow", json!({"ms": ms}))]},
        {"text": "all done"},
    ]})
}

/// `toolhost --config CONFIG --json ARGS...` in the site's world, which
/// must succeed; its JSON.
fn cli(site: &Site, args: &[&str]) -> Value {
    let config = site.world.path().join("toolhost.toml");
    let mut all = vec!["--config", config.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let out = toolhost(site.world.path(), &all);
    assert!(out.status.success(), "{out:?}");
    stdout_json(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitted_run_is_driven_to_its_answer_with_the_fields_of_runs_show() {
    let site = Site::start(&script(2, 0), "", None);
    let (status, v) = site
        .submit(json!({"task": "two steps", "run_id": "a1"}))
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v, json!({"run_id": "a1", "status": "running"}));
    let run = site.until("a1", |s| s != "running").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["answer"], "all done");
    let (_, view) = site.get("/v1/runs/a1", "/v1/runs/{id}").await;
    let steps = view["steps"].as_array().unwrap();
    // Two steps of a turn and two calls, then the answer's turn.
    assert_eq!(steps.len(), 7, "{view:#}");
    assert!(steps.iter().all(|s| s["ok"] == true), "{view:#}");
    // Nested JSON is JSON: the model's response and its report, a tool's output.
    assert!(steps[0]["body"]["tool_calls"].is_array(), "{:#}", steps[0]);
    assert!(steps[0]["report"].is_object(), "{:#}", steps[0]);
    assert_eq!(steps[1]["body"], json!({"value": 7}), "{:#}", steps[1]);
    // The same fields as `runs show --json`.
    let cli = cli(&site, &["runs", "show", "a1"]);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&view["run"]), keys(&cli["run"]));
    assert_eq!(keys(&steps[0]), keys(&cli["steps"][0]));
    assert_eq!(view["steps"], cli["steps"]);
    // The effects happened once each.
    assert_eq!(site.world.lines("notes.txt").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn submission_is_idempotent_on_the_run_id() {
    let site = Site::start(&slow_script(300), "", None);
    let first = site.submit(json!({"task": "same", "run_id": "idem"})).await;
    assert_eq!(first.0, 202, "{first:?}");
    let again = site.submit(json!({"task": "same", "run_id": "idem"})).await;
    assert_eq!(again.0, 200, "{again:?}");
    assert_eq!(again.1["run_id"], "idem");
    let (status, v) = site
        .submit(json!({"task": "other", "run_id": "idem"}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["kind"], "key_conflict", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("idem"),
        "{v}"
    );
    site.until("idem", |s| s == "completed").await;
    let done = site.submit(json!({"task": "same", "run_id": "idem"})).await;
    assert_eq!(
        done,
        (200, json!({"run_id": "idem", "status": "completed"}))
    );
    // One run, one session: the repeats started nothing.
    let run = site.run("idem").await;
    assert_eq!(run["sessions"], 1, "{run}");
    // Without a run_id every submission is a new run.
    let (_, a) = site.submit(json!({"task": "fresh"})).await;
    let (_, b) = site.submit(json!({"task": "fresh"})).await;
    assert_ne!(a["run_id"], b["run_id"]);
    assert!(a["run_id"].as_str().unwrap().starts_with("run-"), "{a}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_submissions_are_refused_naming_the_field_and_the_fix() {
    let site = Site::start(&script(1, 0), "[serve]\nmax_body_bytes = 2048\n", None);
    let cases: &[(&str, &[&str])] = &[
        (r#"{"task": "a", "task": "b"}"#, &["/task", "duplicate"]),
        (
            r#"{"task": "a", "max_step": 3}"#,
            &["unknown field `max_step`", "max_steps"],
        ),
        (
            r#"{"task": "a", "max_steps": "3"}"#,
            &["`max_steps`", "whole number"],
        ),
        (r#"{"task": "a", "max_steps": 0}"#, &["`max_steps`"]),
        (
            r#"{"task": "a", "time_budget_s": 1.5}"#,
            &["`time_budget_s`"],
        ),
        (r#"{"task": 7}"#, &["`task` must be a string"]),
        (r#"{"task": " "}"#, &["`task` is empty"]),
        (r#"{"run_id": "x"}"#, &["`task` is missing"]),
        (r#"{"task": "a", "run_id": "has space"}"#, &["`run_id`"]),
        (r#"["task"]"#, &["JSON object"]),
        (r#"{"task": "a""#, &["not I-JSON"]),
        (
            r#"{"task": "a", "n": 12345678901234567890123}"#,
            &["not I-JSON", "/n"],
        ),
    ];
    for (body, words) in cases {
        let (status, v) = site.send("post", "/v1/runs", "/v1/runs", Some(body)).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["kind"], "invalid_input", "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        for w in *words {
            assert!(
                message.contains(w),
                "{body}: {message:?} does not say {w:?}"
            );
        }
    }
    let big = json!({"task": "x".repeat(4096)}).to_string();
    let (status, v) = site.send("post", "/v1/runs", "/v1/runs", Some(&big)).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["kind"], "invalid_input", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes"),
        "{v}"
    );
    // Nothing was created.
    let (_, page) = site.get("/v1/runs", "/v1/runs").await;
    assert_eq!(page["runs"], json!([]), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_listed_newest_first_in_pages_that_stay_stable() {
    let site = Site::start(&script(0, 0), "", None);
    for i in 0..5 {
        let (status, v) = site
            .submit(json!({"task": "t", "run_id": format!("p{i}")}))
            .await;
        assert_eq!(status, 202, "{v}");
        site.until(&format!("p{i}"), |s| s == "completed").await;
    }
    let (status, first) = site.get("/v1/runs?limit=2", "/v1/runs").await;
    assert_eq!(status, 200);
    let ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["p4", "p3"]);
    // A run added between pages sorts before the cursor: the next pages
    // neither repeat nor skip one.
    site.submit(json!({"task": "t", "run_id": "late"})).await;
    let cursor = first["next"].as_str().unwrap().to_string();
    let (_, second) = site
        .get(&format!("/v1/runs?limit=2&after={cursor}"), "/v1/runs")
        .await;
    assert_eq!(ids(&second), ["p2", "p1"]);
    let cursor = second["next"].as_str().unwrap().to_string();
    let (_, last) = site
        .get(&format!("/v1/runs?after={cursor}&limit=2"), "/v1/runs")
        .await;
    assert_eq!(ids(&last), ["p0"]);
    assert_eq!(last["next"], Value::Null);
    let (_, all) = site.get("/v1/runs", "/v1/runs").await;
    assert_eq!(ids(&all)[0], "late");
    for (query, word) in [
        ("limit=0", "`limit`"),
        ("limit=201", "`limit`"),
        ("limit=x", "`limit`"),
        ("after=nonsense!", "`after`"),
        ("page=2", "unknown query parameter `page`"),
    ] {
        let (status, v) = site.get(&format!("/v1/runs?{query}"), "/v1/runs").await;
        assert_eq!(status, 400, "{query}: {v}");
        assert_eq!(v["error"]["kind"], "invalid_input");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(word),
            "{query}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_runs_and_endpoints_are_404_in_json() {
    let site = Site::start(&script(0, 0), "", None);
    let (status, v) = site.get("/v1/runs/nope", "/v1/runs/{id}").await;
    assert_eq!(
        (status, v["error"]["kind"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, v) = site
        .send("post", "/v1/runs/nope/cancel", "/v1/runs/{id}/cancel", None)
        .await;
    assert_eq!(
        (status, v["error"]["kind"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, v) = site
        .get("/v1/runs/nope/events", "/v1/runs/{id}/events")
        .await;
    assert_eq!(
        (status, v["error"]["kind"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let response = site
        .client
        .get(site.url("/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "not_found", "{v}");
    super::is_a("Error", &v);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_sends_a_snapshot_the_progress_and_an_end() {
    let site = Site::start(&script(2, 30), "", None);
    let (status, _) = site.submit(json!({"task": "watch", "run_id": "ev"})).await;
    assert_eq!(status, 202);
    let mut events = Events::open(&site, "ev").await;
    let seen = events.until_end().await;
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[0], "snapshot", "{names:?}");
    assert_eq!(seen[0].data["run"]["id"], "ev");
    for name in [
        "model_calling",
        "model_done",
        "tools_calling",
        "tool_done",
        "finished",
    ] {
        assert!(names.contains(&name), "no {name}: {names:?}");
    }
    let tools = seen.iter().filter(|e| e.name == "tool_done").count();
    let already = seen[0].data["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "tool")
        .count();
    assert_eq!(tools + already, 4, "{names:?}");
    let end = seen.last().unwrap();
    assert_eq!(end.data, json!({"run_id": "ev", "status": "completed"}));
    // A finished run: its snapshot and its end, nothing more.
    let mut events = Events::open(&site, "ev").await;
    let seen = events.until_end().await;
    let names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["snapshot", "end"]);
    assert_eq!(seen[0].data["steps"].as_array().unwrap().len(), 7);
    assert!(
        events.next().await.is_none(),
        "the stream goes on after `end`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_ends_a_run_partial_and_it_resumes_to_its_answer() {
    // Step 1 calls `calc`; step 2's turn takes 2 s: the cancel lands in it.
    let slow_answer = json!({"mode": "conversation", "turns": [
        {"tool_calls": [call("calc", json!({"expr": "6*7"}))]},
        {"text": "all done", "delay_ms": 2000},
    ]});
    let site = Site::start(&slow_answer, "", None);
    site.submit(json!({"task": "cancel me", "run_id": "c1"}))
        .await;
    let mut events = Events::open(&site, "c1").await;
    loop {
        let e = events.next().await.expect("the stream goes on");
        assert_ne!(e.name, "end", "the run ended before its second turn");
        // Either the stream sees step 2's turn start, or it began after
        // that, and its snapshot holds step 1's tool row.
        let step_one_done = e.name == "snapshot"
            && e.data["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["kind"] == "tool");
        if step_one_done || (e.name == "model_calling" && e.data["step"] == 2) {
            break;
        }
    }
    let started = Instant::now();
    let (status, v) = site
        .send("post", "/v1/runs/c1/cancel", "/v1/runs/{id}/cancel", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(started.elapsed() < WAIT);
    assert_eq!(v["run"]["status"], "partial", "{v}");
    assert!(
        v["run"]["reason"]
            .as_str()
            .unwrap()
            .contains("agent resume c1"),
        "{v}"
    );
    // The tool call in flight finished and was journaled first.
    let (_, view) = site.get("/v1/runs/c1", "/v1/runs/{id}").await;
    assert_eq!(view["steps"].as_array().unwrap().len(), 2, "{view:#}");
    let rest = events.until_end().await;
    assert_eq!(rest.last().unwrap().data["status"], "partial");
    // Cancelling a finished run is a conflict.
    let (status, v) = site
        .send("post", "/v1/runs/c1/cancel", "/v1/runs/{id}/cancel", None)
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["kind"], "run_finished", "{v}");
    // Resumable: the journaled step is served, the answer comes.
    cli(&site, &["agent", "resume", "c1"]);
    let run = site.run("c1").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["answer"], "all done");
    assert_eq!(run["sessions"], 2);
    assert_eq!(run["steps_resumed"], 1, "{run}");
}

/// A CLI `agent run` of `id` (a run this server does not drive), once it
/// owns its run.
fn cli_run(site: &Site, id: &str) -> std::process::Child {
    let config = site.world.path().join("toolhost.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "agent",
            "run",
            "elsewhere",
            "--run-id",
            id,
        ])
        .current_dir(site.world.path())
        .envs(crate::support::state_env(site.world.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !crate::agent::ownership::run_owned(&site.world, id) {
        assert!(start.elapsed() < WAIT, "run {id} never started");
        assert!(child.try_wait().unwrap().is_none(), "run {id} exited early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_another_process_drives_is_busy_and_a_dead_owners_run_is_ended() {
    // Not adopted, so the dead owner's run stays interrupted for the cancel.
    let site = Site::start(&slow_script(20_000), "[serve]\nrecover = false\n", None);
    let mut child = cli_run(&site, "cli1");
    let (status, v) = site
        .send("post", "/v1/runs/cli1/cancel", "/v1/runs/{id}/cancel", None)
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["kind"], "run_busy", "{v}");
    // The server still shows it, without driving it: snapshot, then end.
    let mut events = Events::open(&site, "cli1").await;
    let seen = events.until_end().await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].data["status"], "running");
    child.kill().unwrap(); // SIGKILL: the run's owner is dead
    child.wait().unwrap();
    let run = site.until("cli1", |s| s == "interrupted").await;
    assert_eq!(run["status"], "interrupted");
    let (status, v) = site
        .send("post", "/v1/runs/cli1/cancel", "/v1/runs/{id}/cancel", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["run"]["status"], "partial", "{v}");
    assert!(
        v["run"]["reason"]
            .as_str()
            .unwrap()
            .contains("owner was dead"),
        "{v}"
    );
}

/// Sends `request` (a `method` on `/v1/runs`), which must be refused with
/// `status` and kind `auth` in the OpenAPI file's shape; the message.
async fn refused(request: reqwest::RequestBuilder, method: &str, status: u16) -> String {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), status);
    if status == 401 {
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "auth", "{v}");
    super::conforms(method, "/v1/runs", status, &v);
    v["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_has_the_token_and_host_and_origin_rules_of_mcp_in_json() {
    let token = "0123456789abcdef-runs";
    let site = Site::start(&script(0, 0), "", Some(token));
    let plain = reqwest::Client::new();
    let url = site.url("/v1/runs");
    refused(plain.get(&url), "get", 401).await;
    refused(
        plain.get(&url).bearer_auth("wrong-token-0123456789"),
        "get",
        401,
    )
    .await;
    let (status, _) = site.get("/v1/runs", "/v1/runs").await;
    assert_eq!(status, 200);
    // /mcp still refuses in text; the page's assets need no token.
    let response = plain.post(site.url("/mcp")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        "a bearer token is required\n"
    );
    let response = plain.get(site.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    // A foreign Host (DNS rebinding) and a foreign Origin: 403 in JSON.
    let evil_host = plain
        .get(&url)
        .bearer_auth(token)
        .header("host", "evil.example");
    refused(evil_host, "get", 403).await;
    let response = plain
        .get(site.url("/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "the page answers a foreign Host");
    let evil_origin = plain
        .post(&url)
        .bearer_auth(token)
        .header("origin", "http://evil.example")
        .body(json!({"task": "t"}).to_string());
    let message = refused(evil_origin, "post", 403).await;
    assert!(message.contains("allowed_origins"), "{message}");
    // The page's own origin may call it.
    let own = site.url("");
    let response = plain
        .post(&url)
        .bearer_auth(token)
        .header("origin", own.trim_end_matches('/'))
        .body(json!({"task": "t", "run_id": "own"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}
