//! `toolhost model call --message TEXT` and `toolhost model list`: one turn
//! through the configured chain, with how it was served; and the chain with
//! each breaker's state.

use clap::{Args, Subcommand};
use serde_json::json;
use std::sync::Arc;

use toolhost::model::{ChatRequest, Live, LiveSink};
use toolhost::resilience::{Chain, Report};

use super::human::Table;
use super::{Env, Failure};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Send one message through the fallback chain.
    #[command(
        after_help = "Examples:\n  toolhost model call --message \"Say hi\"\n  toolhost model call --message \"Tell a story\" --stream\n  toolhost model call --message \"Say hi\" --system \"Be brief\" --json"
    )]
    Call(CallArgs),
    /// List the chain, in order, with each model's circuit-breaker state.
    #[command(after_help = "Examples:\n  toolhost model list\n  toolhost model list --json")]
    List,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The user message.
    #[arg(long, value_name = "TEXT")]
    message: String,
    /// An optional system prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Print the text as it arrives (from models with `stream = true`); a partial from an attempt that broke is marked retracted. With --json, one document as without it.
    #[arg(long)]
    stream: bool,
}

/// Prints a streamed answer as it arrives.
struct Printer {
    /// Text is open on its line.
    open: std::sync::atomic::AtomicBool,
}

impl LiveSink for Printer {
    fn live(&self, event: &Live<'_>) {
        use std::io::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = std::io::stdout().lock();
        match event {
            Live::Text(text) => {
                let _ = write!(out, "{text}");
                let _ = out.flush();
                self.open.store(true, Relaxed);
            }
            Live::Retracted {
                model,
                kind,
                tokens,
            } => {
                if self.open.swap(false, Relaxed) {
                    let _ = writeln!(out);
                }
                let _ = writeln!(
                    out,
                    "[retracted: the stream from {model} broke ({kind}); the text above is discarded ({tokens} tokens)]"
                );
            }
            _ => {}
        }
    }
}

pub async fn run(env: &Env, cmd: ModelCommand) -> Result<(), Failure> {
    // Breakers live in the store: `list` shows the state every process
    // shares, and `call` updates it.
    let store = env.store().await?;
    let chain = env.chain(&store).await?;
    match cmd {
        ModelCommand::Call(args) => call(env, &chain, args).await,
        ModelCommand::List => {
            list(env, &chain);
            Ok(())
        }
    }
}

async fn call(env: &Env, chain: &Chain, args: CallArgs) -> Result<(), Failure> {
    if chain.is_empty() {
        return Err(Failure::config(
            "no models are configured: add [[models]] entries to toolhost.toml",
        ));
    }
    let mut request = ChatRequest::user(args.message);
    request.system = args.system;
    let printer = (args.stream && !env.json).then(|| Arc::new(Printer { open: false.into() }));
    let live = printer.clone().map(|p| p as Arc<dyn LiveSink>);
    let result = chain.call_live(&request, live).await;
    // Whatever was printed live, the lines below start on their own.
    let streamed = printer.is_some_and(|p| {
        let open = p.open.load(std::sync::atomic::Ordering::Relaxed);
        if open {
            println!();
        }
        open
    });
    match result {
        Ok(served) => {
            let r = &served.response;
            if env.json {
                let mut body = json!({
                    "ok": true,
                    "text": r.text,
                    "tool_calls": r.tool_calls,
                    "stop": r.stop,
                    "usage": r.usage,
                    "model": r.model,
                });
                merge_report(&mut body, &served.report);
                println!("{body}");
            } else {
                if !streamed {
                    // Not printed live (no --stream, or a model that
                    // does not stream).
                    println!("{}", r.text);
                }
                for c in &r.tool_calls {
                    println!("tool call: {}({})", c.name, c.arguments);
                }
                println!();
                print_report(&served.report);
            }
            Ok(())
        }
        Err(unserved) => {
            let (kind, message) = (unserved.error.kind.as_str(), unserved.error.message.clone());
            let mut failure = Failure::new(1, kind, message.clone());
            let mut body = json!({"ok": false, "error": {"kind": kind, "message": message}});
            merge_report(&mut body, &unserved.report);
            if env.json {
                failure.json = Some(body);
            } else {
                print_report(&unserved.report);
            }
            Err(failure)
        }
    }
}

/// Adds `served_by`, `attempts`, `retries`, `fallbacks`, `elapsed_ms`.
fn merge_report(body: &mut serde_json::Value, report: &Report) {
    if let (Some(obj), Ok(serde_json::Value::Object(r))) =
        (body.as_object_mut(), serde_json::to_value(report))
    {
        obj.extend(r);
    }
}

fn print_report(r: &Report) {
    println!("served_by: {}", r.served_by.as_deref().unwrap_or("none"));
    println!("attempts: {} in {} ms", r.attempts.len(), r.elapsed_ms);
    for a in &r.attempts {
        let outcome = match (a.error, a.status) {
            (None, _) => "ok".to_string(),
            (Some(k), Some(s)) => format!("{k} (HTTP {s})"),
            (Some(k), None) => k.to_string(),
        };
        let mut extra = String::new();
        if let Some(t) = a.first_token_ms {
            extra.push_str(&format!(", first token after {t} ms"));
        }
        if a.tokens_discarded > 0 {
            extra.push_str(&format!(", {} tokens discarded", a.tokens_discarded));
        }
        println!(
            "  {} #{}: {} after {} ms{extra}",
            a.model, a.n, outcome, a.elapsed_ms
        );
    }
    for x in &r.retries {
        let asked = x
            .retry_after_ms
            .map(|ms| format!(", Retry-After {ms} ms"))
            .unwrap_or_default();
        println!(
            "retry: {} after attempt {} ({}), waited {} ms{asked}",
            x.model, x.after_attempt, x.reason, x.delay_ms
        );
    }
    for f in &r.fallbacks {
        println!("fallback: {} -> {} ({})", f.from, f.to, f.reason);
    }
}

fn list(env: &Env, chain: &Chain) {
    let entries = chain.list();
    if env.json {
        println!("{}", json!({"ok": true, "models": entries}));
        return;
    }
    if entries.is_empty() {
        println!("no models are configured");
        return;
    }
    let mut table = Table::new(&["#", "NAME", "PROVIDER", "MODEL", "WINDOW", "KEY", "BREAKER"]);
    for (i, e) in entries.iter().enumerate() {
        let window = e
            .context_window
            .map(|w| w.to_string())
            .unwrap_or_else(|| "-".into());
        let mut breaker = e.breaker.state.as_str().to_string();
        if let Some(ms) = e.breaker.open_remaining_ms {
            breaker.push_str(&format!(" ({ms} ms left)"));
        }
        table.row(vec![
            (i + 1).to_string(),
            e.name.clone(),
            e.provider.clone(),
            e.model.clone(),
            window,
            e.key.as_str().to_string(),
            breaker,
        ]);
    }
    table.print(&[5, 6]);
}
