//! `toolhost replay RUN`: the run again from its journal, with no model or
//! tool call, and the steps whose request would differ today.

use clap::Args;
use serde_json::json;

use super::agent::agent_failure;
use super::{Env, Failure};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The finished run to replay (its id, or a unique prefix of it).
    run: String,
}

pub async fn run(env: &Env, args: ReplayArgs) -> Result<(), Failure> {
    let agent = env.agent(None).await?;
    let run = env.resolve_run(agent.store(), &args.run).await?;
    let report = agent.replay(&run).await.map_err(agent_failure)?;
    if env.json {
        let mut body = json!({"ok": true});
        if let (Some(obj), Ok(serde_json::Value::Object(r))) =
            (body.as_object_mut(), serde_json::to_value(&report))
        {
            obj.extend(r);
        }
        println!("{body}");
        return Ok(());
    }
    println!(
        "replayed run {} ({}): {} model turns and {} tool results from the journal, no live calls",
        report.run_id,
        report.status.as_str(),
        report.steps,
        report.tool_results
    );
    println!(
        "answer: {}",
        if report.same_answer {
            "the same as recorded"
        } else {
            "DIFFERS from the recorded one"
        }
    );
    if let Some(a) = &report.answer {
        println!("  {a}");
    }
    if report.divergences.is_empty() {
        println!("every step's request is what it would be today");
    }
    for d in &report.divergences {
        println!("step {} would differ now: {}", d.step, d.reasons.join("; "));
    }
    Ok(())
}
