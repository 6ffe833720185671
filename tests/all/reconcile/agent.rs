//! An agent run whose `pay` step is SIGKILLed mid-POST (the payment API
//! has committed the charge and holds the answer) finishes by itself: its
//! resumed step's call is in doubt, `reconcile` finds the charge, and the
//! run goes on to `completed` with one charge and no operator. Once by
//! `agent resume`, once by a `toolhost serve` that adopts the run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::crash::{arrival, kill};
use crate::agent::{World, call, scripted_entry};
use crate::support::payments::{Fault, PaymentServer};
use crate::support::serve::Serve;
use crate::support::{state_env, stdout_json, toolhost};

/// Far past the kill, which comes as soon as the POST is seen.
const HOLD: Duration = Duration::from_secs(5);
const FINISH_WAIT: Duration = Duration::from_secs(60);

/// One `pay` call of `reference`, then an answer.
fn script(server: &PaymentServer, reference: &str) -> Value {
    let pay =
        json!({"api": server.api(), "amount": 1200, "currency": "eur", "reference": reference});
    json!({"mode": "conversation", "turns": [
        {"tool_calls": [call("pay", pay)]},
        {"text": format!("paid {reference}")},
    ]})
}

fn show(world: &World, config: &str, id: &str) -> Value {
    let out = toolhost(
        world.path(),
        &["--config", config, "--json", "runs", "show", id],
    );
    assert!(out.status.success(), "{out:?}");
    stdout_json(&out)
}

/// Starts run `id`, and SIGKILLs it once the server holds its committed POST.
fn run_and_kill_mid_post(
    world: &World,
    config: &str,
    server: &PaymentServer,
    id: &str,
    reference: &str,
) {
    server.fault(reference, Fault::Hold(HOLD));
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolhost"))
        .args([
            "--config",
            config,
            "agent",
            "run",
            "pay for it",
            "--run-id",
            id,
        ])
        .current_dir(world.path())
        .envs(state_env(world.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        arrival(server, reference, &mut child),
        "run {id} sent no POST"
    );
    assert!(!kill(&mut child), "run {id} exited before the kill");
    assert_eq!(
        server.charges_for(reference),
        1,
        "the held POST was committed"
    );
    let v = show(world, config, id);
    assert_eq!(v["run"]["status"], "interrupted", "{v}");
}

/// The finished run: its status, answer, and the `pay` step's output is
/// the one charge of `reference`, whose call's resolution was `reconcile`'s.
fn check(world: &World, config: &str, server: &PaymentServer, id: &str, reference: &str) {
    let v = show(world, config, id);
    assert_eq!(v["run"]["status"], "completed", "{v}");
    assert_eq!(v["run"]["answer"], format!("paid {reference}"), "{v}");
    let charges: Vec<Value> = server
        .charges()
        .into_iter()
        .filter(|c| c["reference"] == reference)
        .collect();
    assert_eq!(charges.len(), 1, "one charge: {charges:?}");
    let steps = v["steps"].as_array().unwrap();
    let paid: Vec<&Value> = steps
        .iter()
        .filter(|s| s["kind"] == "tool" && s["name"] == "pay")
        .collect();
    assert_eq!(paid.len(), 1, "{v}");
    assert_eq!(paid[0]["body"]["charge_id"], charges[0]["id"], "{v}");
    // The call's row: done, resolved by reconcile without an operator.
    let list = stdout_json(&toolhost(
        world.path(),
        &["--config", config, "--json", "cache", "list"],
    ));
    let found: Vec<Value> = list["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tool"] == "pay")
        .map(|c| {
            let key = c["key"].as_str().unwrap();
            stdout_json(&toolhost(
                world.path(),
                &["--config", config, "--json", "cache", "show", key],
            ))
        })
        .filter(|c| c["outcome"]["output"]["charge_id"] == charges[0]["id"])
        .collect();
    assert_eq!(found.len(), 1, "{list}");
    let row = &found[0];
    assert_eq!(row["state"], "done", "{row}");
    let resolutions = row["outcome"]["resolutions"].as_array().unwrap();
    assert_eq!(resolutions.len(), 1, "{row}");
    assert_eq!(
        (&resolutions[0]["decider"], &resolutions[0]["answer"]),
        (&json!("reconcile"), &json!("committed")),
        "{row}"
    );
}

#[test]
fn a_run_killed_mid_post_of_its_pay_step_completes_with_one_charge_without_an_operator() {
    let server = PaymentServer::start();
    let mut world = World::new();
    world.own_tools(&["pay"]);
    world.extra = format!("[tools.pay]\nallow_hosts = [{:?}]\n", server.host_port());
    let script_path = world.path().join("script.json");
    let config = world.write_config(&scripted_entry("m", &script_path));
    let config = config.to_str().unwrap().to_string();

    // By `agent resume`.
    std::fs::write(&script_path, script(&server, "order-a").to_string()).unwrap();
    run_and_kill_mid_post(&world, &config, &server, "by-resume", "order-a");
    let out = toolhost(
        world.path(),
        &[
            "--config",
            &config,
            "--json",
            "agent",
            "resume",
            "by-resume",
        ],
    );
    let v = stdout_json(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    check(&world, &config, &server, "by-resume", "order-a");

    // By a server that adopts it.
    std::fs::write(&script_path, script(&server, "order-b").to_string()).unwrap();
    run_and_kill_mid_post(&world, &config, &server, "by-serve", "order-b");
    let serve = Serve::start(world.path(), &["--config", &config], &[]);
    let start = Instant::now();
    loop {
        let v = show(&world, &config, "by-serve");
        match v["run"]["status"].as_str() {
            Some("completed") => break,
            Some("running" | "interrupted") => {}
            other => panic!("unexpected {other:?}: {v}\n{:#?}", serve.lines()),
        }
        assert!(
            start.elapsed() < FINISH_WAIT,
            "the server did not finish the run within {FINISH_WAIT:?}: {v}\n{:#?}",
            serve.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        serve
            .lines()
            .iter()
            .any(|l| l.contains("adopting an interrupted run")),
        "{:#?}",
        serve.lines()
    );
    check(&world, &config, &server, "by-serve", "order-b");
    assert_eq!(server.charges().len(), 2);
}
