//! `toolhost stats [--run RUN]`: the reliability numbers, overall or for one
//! run, read from the journal every process writes (`store::metrics`).

use clap::Args;
use serde_json::json;
use toolhost::store::{BreakerRow, Stats};

use super::{Env, Failure};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this run (its id, or a unique prefix of it).
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
}

pub async fn run(env: &Env, args: StatsArgs) -> Result<(), Failure> {
    let store = env.store().await?;
    let failure =
        |e: toolhost::store::StoreError| Failure::new(1, "store_unavailable", e.to_string());
    let run = match &args.run {
        Some(given) => Some(env.resolve_run(&store, given).await?),
        None => None,
    };
    let args = StatsArgs { run };
    if let Some(id) = &args.run
        && store.get_run(id).await.map_err(failure)?.is_none()
    {
        return Err(
            Failure::usage(format!("no run `{id}` (see `toolhost runs list`)"))
                .with_kind("not_found"),
        );
    }
    let stats = store.stats(args.run.as_deref()).await.map_err(failure)?;
    let mut breakers = if args.run.is_none() {
        store.breaker_states("").await.map_err(failure)?
    } else {
        Vec::new()
    };
    // The state now, as `model list` and `/metrics` compute it: an open
    // breaker whose time is up is half-open (issue 22).
    let now = toolhost::resilience::unix_ms();
    for b in &mut breakers {
        b.state.state = b.state.status_at(now).0;
    }
    // How calls in doubt were resolved, by decider and answer (the
    // store's counters: they are not per run).
    let resolutions: serde_json::Map<String, serde_json::Value> = if args.run.is_none() {
        store
            .in_doubt_resolutions()
            .await
            .map_err(failure)?
            .into_iter()
            .map(|((decider, answer), n)| (format!("{decider}.{answer}"), json!(n)))
            .collect()
    } else {
        serde_json::Map::new()
    };
    if env.json {
        let mut body = json!({"ok": true, "run": args.run});
        if let (Some(obj), Ok(serde_json::Value::Object(s))) =
            (body.as_object_mut(), serde_json::to_value(&stats))
        {
            obj.extend(s);
            obj.insert("breakers".into(), json!(breakers));
            obj.insert("in_doubt_resolutions".into(), json!(resolutions));
        }
        println!("{body}");
    } else {
        print(&stats, &breakers, args.run.as_deref());
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// The human form of [`Stats`]; the demo prints it too.
pub fn print(s: &Stats, breakers: &[BreakerRow], run: Option<&str>) {
    match run {
        Some(id) => println!("run {id}"),
        None => println!("all runs"),
    }
    println!(
        "  runs                {} ({} completed, {} failed, {} partial, {} running{})",
        s.runs,
        s.completed,
        s.failed,
        s.partial,
        s.running,
        match s.interrupted {
            0 => String::new(),
            n => format!(", {n} interrupted"),
        }
    );
    println!("  completion rate     {}", pct(s.completion_rate));
    println!(
        "  time to completion  mean {:.0} ms, p95 {} ms",
        s.mean_time_to_completion_ms, s.p95_time_to_completion_ms
    );
    println!(
        "  model turns         {} ({} provider attempts)",
        s.model_turns, s.model_attempts
    );
    println!(
        "  retries             {} (retry rate {})",
        s.retries,
        pct(s.retry_rate)
    );
    println!(
        "  fallbacks           {} turns (fallback rate {})",
        s.fell_back,
        pct(s.fallback_rate)
    );
    println!("  breaker opens       {}", s.breaker_opens);
    // Only where models stream: a chain that does not shows no such lines.
    for (model, t) in &s.time_to_first_token {
        println!(
            "  first token         {model}: p50 {} ms, p95 {} ms ({} attempts)",
            t.p50_ms, t.p95_ms, t.attempts
        );
    }
    if s.tokens_discarded > 0 {
        println!(
            "  tokens discarded    {} (broken streams, never journaled)",
            s.tokens_discarded
        );
    }
    println!(
        "  tool calls          {} live, {} cache hits (hit rate {})",
        s.tool_calls,
        s.cache_hits,
        pct(s.cache_hit_rate)
    );
    let errors: Vec<String> = s
        .errors_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "  errors by kind      {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        }
    );
    println!(
        "  steps               {} journaled, {} served from the journal by resumes",
        s.steps, s.steps_resumed
    );
    println!(
        "  journal             {} bytes, {:.0} bytes per step",
        s.journal_bytes, s.journal_bytes_per_step
    );
    for b in breakers {
        let left = b
            .state
            .open_until_ms
            .map(|until| until - toolhost::resilience::unix_ms())
            .filter(|ms| *ms > 0)
            .map(|ms| format!(", {ms} ms left"))
            .unwrap_or_default();
        println!(
            "  breaker {:<18} {}{left} (opened {} times)",
            b.name,
            b.state.state.as_str(),
            b.state.opens
        );
    }
}
