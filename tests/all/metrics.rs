//! `/metrics` of a real `toolhost serve` against `toolhost stats` and
//! `toolhost model list` on the same store: every rate `stats` prints can
//! be computed from the page's counters and comes out equal, and the
//! breaker gauge reads what `model list` reads, before, during and after an
//! open period; streamed attempts' first tokens and discarded tokens, and
//! the calls resolved out of doubt, agree with `stats` too.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::serve::Serve;
use crate::support::{BINARY_DEADLINE, output_within, state_env, stdout_json};

/// `toolhost ARGS` in `cwd`, off the test's async workers.
async fn toolhost(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_toolhost"));
    cmd.args(args)
        .current_dir(cwd)
        .envs(state_env(cwd))
        .env_remove("TOOLHOST_LOG")
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || output_within(cmd, BINARY_DEADLINE))
        .await
        .unwrap()
}

/// The samples of a Prometheus text page: `name{labels}` to value.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample: {l}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value: {l}"));
            (series.to_string(), value)
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include every one of `with`
/// (`key="value"`).
fn sum(samples: &BTreeMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series.as_str(), ""));
            n == name && with.iter().all(|w| labels.contains(w))
        })
        .map(|(_, v)| v)
        .sum()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Polls `/metrics` until `done` holds (bounded).
async fn metrics_until(server: &Serve, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = server.metrics().await;
        if done(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rate_stats_prints_comes_out_equal_from_the_metrics_counters_after_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = toolhost(dir.path(), &["demo", "--dir", demo.to_str().unwrap()], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let db = demo.join("toolhost.db");
    let db = db.to_str().unwrap();
    let stats = stdout_json(&toolhost(dir.path(), &["--db", db, "--json", "stats"], &[]).await);
    // The demo's workload has every kind of number a rate is made of.
    for n in [
        "runs",
        "completed",
        "model_attempts",
        "retries",
        "fell_back",
        "tool_calls",
        "cache_hits",
    ] {
        assert!(
            stats[n].as_u64().unwrap_or(0) > 0,
            "the demo left no {n}: {stats}"
        );
    }

    let server = Serve::start(dir.path(), &["--db", db], &[]);
    let page = metrics_until(&server, "the journal's numbers", |p| {
        p.contains("toolhost_runs{")
    })
    .await;
    let m = samples(&page);
    let runs = |status: &str| sum(&m, "toolhost_runs", &[&format!("status=\"{status}\"")]);
    let (completed, failed, partial) = (runs("completed"), runs("failed"), runs("partial"));
    // A provider attempt is one that went out: an open breaker's refusal
    // (`circuit_open`) is counted, but is not one (docs: observability).
    let attempts = sum(&m, "toolhost_model_attempts_total", &[])
        - sum(
            &m,
            "toolhost_model_attempts_total",
            &["outcome=\"circuit_open\""],
        );
    let tool_calls = sum(&m, "toolhost_run_tool_calls_total", &[]);
    let rates = [
        (
            "completion_rate",
            ratio(completed, completed + failed + partial),
        ),
        (
            "retry_rate",
            ratio(sum(&m, "toolhost_model_retries_total", &[]), attempts),
        ),
        (
            "fallback_rate",
            ratio(
                sum(&m, "toolhost_model_fallback_turns_total", &[]),
                sum(&m, "toolhost_model_turns_total", &[]),
            ),
        ),
        (
            "cache_hit_rate",
            ratio(
                sum(&m, "toolhost_run_tool_calls_total", &["cache=\"hit\""]),
                tool_calls,
            ),
        ),
    ];
    for (name, from_metrics) in rates {
        let printed = stats[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {stats}"));
        assert!(
            (from_metrics - printed).abs() < 1e-9,
            "{name}: /metrics gives {from_metrics}, stats {printed}\n{page}"
        );
    }
    // And the counts behind them.
    for (counter, stat) in [
        ("toolhost_model_turns_total", "model_turns"),
        ("toolhost_model_retries_total", "retries"),
        ("toolhost_breaker_opens_total", "breaker_opens"),
    ] {
        assert_eq!(
            sum(&m, counter, &[]),
            stats[stat].as_f64().unwrap(),
            "{counter}\n{page}"
        );
    }
    assert_eq!(
        attempts,
        stats["model_attempts"].as_f64().unwrap(),
        "{page}"
    );
    let mean_ms = 1000.0 * sum(&m, "toolhost_run_duration_seconds_sum", &[])
        / sum(&m, "toolhost_run_duration_seconds_count", &[]);
    let printed = stats["mean_time_to_completion_ms"].as_f64().unwrap();
    assert!(
        (mean_ms - printed).abs() < 1.0,
        "mean time to completion: {mean_ms} ms, stats {printed} ms"
    );
    assert_eq!(tool_calls, stats["tool_calls"].as_f64().unwrap(), "{page}");
}

/// `model:primary`'s state as `model list --json` reads it now.
async fn listed(cwd: &Path, vars: &[(&str, &str)]) -> String {
    let v = stdout_json(&toolhost(cwd, &["--json", "model", "list"], vars).await);
    let models = v["models"].as_array().unwrap_or_else(|| panic!("{v}"));
    let primary = models.iter().find(|m| m["name"] == "primary").unwrap();
    primary["breaker"]["state"].as_str().unwrap().to_string()
}

fn gauge(page: &str, state: &str) -> bool {
    page.contains(&format!(
        "toolhost_breaker_state{{dependency=\"model:primary\",state=\"{state}\"}} 1"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_gauge_reads_what_model_list_reads_before_during_and_after_an_open_period() {
    use crate::support::model_server::{ModelServer, Step};
    let primary = ModelServer::start().await;
    primary.otherwise(|_| Step::Status(503));
    let dir = tempfile::tempdir().unwrap();
    crate::support::write_trusted_config(
        dir.path(),
        &format!(
            "{}[retry]\nmax_attempts = 5\nbase_delay_ms = 1\nmax_delay_ms = 4\n\n\
             [breaker]\nconsecutive_failures = 5\nopen_ms = 4000\n",
            primary.model_entry("primary", "anthropic")
        ),
    );
    let vars = [("TOOLHOST_TEST_KEY", "sk-breaker-test-key")];
    let cwd = dir.path();
    let server = Serve::start(cwd, &[], &vars);

    // Before: no process has published the breaker; both read closed.
    assert_eq!(listed(cwd, &vars).await, "closed");
    metrics_until(&server, "closed before", |p| gauge(p, "closed")).await;

    // During: a failing call opens it, in the store every process reads.
    let out = toolhost(cwd, &["--json", "model", "call", "--message", "hi"], &vars).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let opened = Instant::now();
    assert_eq!(listed(cwd, &vars).await, "open");
    let page = metrics_until(&server, "open during", |p| gauge(p, "open")).await;
    assert!(
        opened.elapsed() < Duration::from_millis(4000),
        "the gauge read open only after the open period: {page}"
    );
    assert!(
        !gauge(&page, "closed") && !gauge(&page, "half_open"),
        "{page}"
    );

    // After: once `model list` reads half-open, so does the gauge, at once
    // (computed at the scrape from the open deadline, not when some process
    // next asks the breaker).
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed(cwd, &vars).await != "half_open" {
        assert!(Instant::now() < deadline, "model list never read half_open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = server.metrics().await;
    assert!(
        gauge(&page, "half_open"),
        "model list reads half_open:\n{page}"
    );
    assert_eq!(listed(cwd, &vars).await, "half_open");
    // Nothing called the primary in the meantime: no probe went out.
    assert_eq!(primary.requests(), 5);
}

/// Issue 21: the time to first token and the tokens discarded of streamed
/// attempts reach `/metrics` as a histogram per model and a counter, equal
/// to what `stats` reads from the same journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_attempts_first_tokens_and_discarded_tokens_on_the_metrics_equal_stats() {
    use crate::support::model_server::{ModelServer, Step, StreamFault};
    let (primary, backup) = (ModelServer::start().await, ModelServer::start().await);
    primary.otherwise(|_| {
        Step::text("A long answer that will never reach its end marker, cut mid-way.")
            .streamed(StreamFault::DropAfter(15))
    });
    backup.otherwise(|_| Step::text("It is 42.").streamed(StreamFault::Pings));
    let dir = tempfile::tempdir().unwrap();
    crate::support::write_trusted_config(
        dir.path(),
        &format!(
            "{}{}[retry]\nmax_attempts = 2\nbase_delay_ms = 1\nmax_delay_ms = 4\n",
            primary.model_entry("primary", "anthropic"),
            backup.model_entry("backup", "openai")
        ),
    );
    let vars = [("TOOLHOST_TEST_KEY", "sk-metrics-test-key")];
    let cwd = dir.path();
    let out = toolhost(cwd, &["agent", "run", "What is 6*7?"], &vars).await;
    assert!(out.status.success(), "{out:?}");
    let stats = stdout_json(&toolhost(cwd, &["--json", "stats"], &vars).await);
    assert_eq!(stats["tokens_discarded"], 30, "{stats}");
    let server = Serve::start(cwd, &[], &vars);
    let page = metrics_until(&server, "a first-token histogram", |p| {
        p.contains("toolhost_model_time_to_first_token_seconds_count")
    })
    .await;
    let s = samples(&page);
    for model in ["primary", "backup"] {
        let label = format!("model=\"{model}\"");
        assert_eq!(
            sum(
                &s,
                "toolhost_model_time_to_first_token_seconds_count",
                &[&label]
            ),
            stats["time_to_first_token"][model]["attempts"]
                .as_f64()
                .unwrap(),
            "{model}: {page}"
        );
    }
    assert_eq!(
        sum(&s, "toolhost_model_tokens_discarded_total", &[]),
        30.0,
        "{page}"
    );
}

/// Issue 19: calls brought out of doubt reach `/metrics` as
/// `toolhost_in_doubt_resolutions_total{decider, answer}`, equal to the
/// `in_doubt_resolutions` of `stats --json` (the same store counters).
/// Three `pay` calls go in doubt for real (cut by their timeout while the
/// payment API holds the POST committed, or stalls it uncommitted); the
/// next call of two reconciles them, an operator abandons the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_doubt_resolutions_on_the_metrics_equal_stats() {
    use crate::support::payments::{Fault, PaymentServer};
    let payments = PaymentServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    crate::reconcile::write_pay_config(cwd, &payments, "");
    let input = |reference: &str| {
        serde_json::json!({"api": payments.api(), "amount": 300, "currency": "usd", "reference": reference})
            .to_string()
    };
    let call = |reference: &str, cut: bool| {
        let input = input(reference);
        let reference = reference.to_string();
        async move {
            let mut args = vec!["--json", "call", "pay", "--idempotency-key", &reference];
            args.extend(["--input", &input]);
            if cut {
                args.extend(["--timeout-ms", "400"]);
            }
            stdout_json(&toolhost(cwd, &args, &[]).await)
        }
    };
    let hold = Fault::Hold(Duration::from_secs(3));
    let mut keys = Vec::new();
    for (reference, fault) in [
        ("m-1", hold),
        ("m-2", Fault::Stall(Duration::from_secs(3))),
        ("m-3", hold),
    ] {
        payments.fault(reference, fault);
        let v = call(reference, true).await;
        assert_eq!(v["error"]["kind"], "timeout", "{v}");
        keys.push(v["key"].as_str().unwrap().to_string());
    }
    for reference in ["m-1", "m-2"] {
        let v = call(reference, false).await;
        assert_eq!(v["ok"], true, "{v}");
    }
    let out = toolhost(
        cwd,
        &["--json", "cache", "resolve", &keys[2], "--abandon"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let stats = stdout_json(&toolhost(cwd, &["--json", "stats"], &[]).await);
    let printed = stats["in_doubt_resolutions"].as_object().unwrap().clone();
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        [
            "operator.abandon",
            "reconcile.committed",
            "reconcile.not_done"
        ],
        "{stats}"
    );

    let server = Serve::start(cwd, &[], &[]);
    let page = metrics_until(&server, "the resolutions", |p| {
        p.contains("toolhost_in_doubt_resolutions_total{")
    })
    .await;
    let s = samples(&page);
    for (name, n) in &printed {
        let (decider, answer) = name.split_once('.').unwrap();
        let labels = [
            format!("decider=\"{decider}\""),
            format!("answer=\"{answer}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert_eq!(
            sum(&s, "toolhost_in_doubt_resolutions_total", &labels),
            n.as_f64().unwrap(),
            "{name}: {page}"
        );
    }
    assert_eq!(
        sum(&s, "toolhost_in_doubt_resolutions_total", &[]),
        3.0,
        "{page}"
    );
}
