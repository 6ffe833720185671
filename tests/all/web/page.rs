//! The runs page in a real headless Chromium (over the DevTools protocol,
//! `support/browser.rs`): the page of the finished demo runs and of a live
//! run, read back from the rendered DOM, with screenshots in the test's
//! temp directory. Under `CI=true` a missing chromium fails the test.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Site, script};
use crate::support::browser::{Browser, chromium};
use crate::support::serve::Serve;
use crate::support::toolhost;

/// How long the page may take to render what it was asked.
const RENDER_WAIT: Duration = Duration::from_secs(20);

/// Every journal row of `view` as the page must show it: (step, part,
/// kind, status).
fn expected_rows(view: &Value) -> Vec<Value> {
    view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let status = match (s["kind"].as_str(), s["error_kind"].as_str()) {
                (Some("model"), _) if s["final"] == true && s["ok"] == true => "ok",
                (Some("model"), _) => "failed",
                (_, Some("in_doubt")) => "in_doubt",
                (_, Some(_)) => "error",
                _ if s["cached"] == true => "cached",
                _ => "ok",
            };
            json!([s["step"], s["part"], s["kind"], status])
        })
        .collect()
}

/// The rows the page rendered, in the same shape.
const RENDERED_ROWS: &str = r#"JSON.stringify([...document.querySelectorAll('.timeline .row[data-part]')].map(r =>
    [Number(r.dataset.step), Number(r.dataset.part), r.dataset.kind, r.dataset.status]))"#;

fn rendered(browser: &mut Browser) -> Vec<Value> {
    let text = browser.eval(RENDERED_ROWS);
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

#[test]
fn the_page_shows_every_step_and_call_of_the_finished_demo_runs() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = toolhost(dir.path(), &["demo", "--dir", demo.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let config = demo.join("toolhost.toml");
    let token = "page-token-0123456789";
    let server = Serve::start_with(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &["--token-env", "PAGE_TOKEN"],
        &[("PAGE_TOKEN", token)],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let view = |id: &str| -> Value {
        runtime.block_on(async {
            reqwest::Client::new()
                .get(server.at(&format!("/v1/runs/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let mut browser = Browser::start(&chromium, 1280, 900);
    // The list: both demo runs, each with its status.
    browser.goto(&server.at(&format!("/#token={token}")));
    browser.wait_for(
        "document.body.dataset.state === 'loaded' && document.body.dataset.view === 'list'",
        RENDER_WAIT,
        "the list rendered",
    );
    let listed = browser.eval(
        "JSON.stringify([...document.querySelectorAll('tr[data-run]')].map(r => [r.dataset.run, r.dataset.status]))",
    );
    let listed: Value = serde_json::from_str(listed.as_str().unwrap()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    for pair in listed.as_array().unwrap() {
        assert_eq!(pair[1], "completed", "{listed}");
    }
    // The token left the address bar, and the page still works without it.
    assert_eq!(browser.eval("location.hash"), json!(""));
    browser.screenshot(&dir.path().join("list.png"));
    for id in ["demo-fallback", "demo-crash"] {
        let expected = view(id);
        browser.eval(&format!("location.hash = 'run={id}'; true"));
        browser.wait_for(
            &format!("document.body.dataset.state === 'loaded' && document.body.dataset.run === '{id}' && document.body.dataset.live === 'ended'"),
            RENDER_WAIT,
            &format!("the page of {id} rendered"),
        );
        assert_eq!(rendered(&mut browser), expected_rows(&expected), "{id}");
        assert_eq!(
            browser.eval("document.body.dataset.status"),
            json!("completed")
        );
        let answer = browser.eval("document.querySelector('[data-answer]').textContent");
        assert_eq!(answer, expected["run"]["answer"], "{id}");
        browser.screenshot(&dir.path().join(format!("{id}.png")));
    }
    // The fallback run's story is on the page: retries with their kinds, the
    // fallback and why, the breaker seen open.
    browser.eval("location.hash = 'run=demo-fallback'; true");
    browser.wait_for(
        "document.body.dataset.run === 'demo-fallback' && document.body.dataset.state === 'loaded'",
        RENDER_WAIT,
        "back to the fallback run",
    );
    for selector in ["[data-retry]", "[data-fallback]", "[data-breaker]"] {
        let n = browser.eval(&format!("document.querySelectorAll('{selector}').length"));
        assert!(
            n.as_u64() > Some(0),
            "no {selector} on the fallback run's page"
        );
    }
    // On a phone: nothing wider than the screen.
    browser.viewport(390, 844, true);
    browser.wait_for(
        "document.documentElement.scrollWidth <= window.innerWidth + 1",
        RENDER_WAIT,
        "the page fits a phone's width",
    );
    browser.screenshot(&dir.path().join("phone.png"));
    if let Ok(keep) = std::env::var("TOOLHOST_KEEP_SCREENSHOTS") {
        for f in [
            "list.png",
            "demo-fallback.png",
            "demo-crash.png",
            "phone.png",
        ] {
            let _ = std::fs::copy(dir.path().join(f), std::path::Path::new(&keep).join(f));
        }
    }
}

#[test]
fn the_page_of_a_live_run_advances_as_its_events_arrive() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: chromium is not installed");
        return;
    };
    // Three steps of two calls, each turn 400 ms: the page sees it move.
    let site = Site::start(&script(3, 400), "", None);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, v) = runtime.block_on(site.submit(json!({"task": "live", "run_id": "live1"})));
    assert_eq!(status, 202, "{v}");
    let mut browser = Browser::start(&chromium, 1280, 900);
    browser.goto(&site.url("/#run=live1"));
    browser.wait_for(
        "document.body.dataset.live === 'streaming' && document.body.dataset.status === 'running'",
        RENDER_WAIT,
        "the live run's page is streaming",
    );
    // It advances while running: rows appear before the run ends.
    browser.wait_for(
        "Number(document.body.dataset.rows) >= 3 && document.body.dataset.status === 'running'",
        RENDER_WAIT,
        "the first step's rows while it runs",
    );
    let during = browser.eval("Number(document.body.dataset.rows)");
    browser.screenshot(&site.world.path().join("live-running.png"));
    browser.wait_for(
        "document.body.dataset.live === 'ended' && document.body.dataset.status === 'completed' && document.querySelector('[data-answer]')",
        RENDER_WAIT,
        "the live run's end",
    );
    let view = runtime
        .block_on(site.get("/v1/runs/live1", "/v1/runs/{id}"))
        .1;
    assert_eq!(rendered(&mut browser), expected_rows(&view));
    assert!(during.as_u64() < Some(view["steps"].as_array().unwrap().len() as u64));
    assert_eq!(
        browser.eval("document.querySelector('[data-answer]').textContent"),
        json!("all done")
    );
    browser.screenshot(&site.world.path().join("live-done.png"));
}
