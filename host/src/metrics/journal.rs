//! The journal's numbers on `/metrics`: runs, model turns and attempts,
//! retries, fallbacks, breaker opens, run tool calls, errors, as counters
//! (and histograms) an operator turns into every rate `toolhost stats`
//! prints.
//!
//! Why read from the store, not counted in this process: a run's turns and
//! tool calls happen in whichever process drives it (`agent run` in a
//! terminal, another host on PostgreSQL); the journal has every one of them,
//! durable, and `stats` reads exactly these rows (`Store::journal_totals`
//! aggregates with the same `Tally`). So a rate from a scrape equals the
//! rate `stats` prints at the same moment, whoever did the work. A
//! background task re-reads every [`JOURNAL_REFRESH`]; a scrape never
//! waits on the database.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `toolhost_runs` | gauge: runs by current status | `status` (`completed`, `failed`, `partial`, `running`) |
//! | `toolhost_model_turns_total` | counter | none |
//! | `toolhost_model_attempts_total` | counter | `model` (chain entry), `outcome` (`ok` or the error kind; `circuit_open` is a refusal, no I/O) |
//! | `toolhost_model_retries_total` | counter | none |
//! | `toolhost_model_fallback_turns_total` | counter: turns that moved down the chain | none |
//! | `toolhost_breaker_opens_total` | counter | none |
//! | `toolhost_run_tool_calls_total` | counter: live tool calls of runs | `tool`, `cache` (`hit`, `miss`) |
//! | `toolhost_run_errors_total` | counter | `kind` |
//! | `toolhost_steps_total`, `toolhost_steps_resumed_total` | counter | none |
//! | `toolhost_model_attempt_duration_seconds` | histogram | `model` |
//! | `toolhost_model_time_to_first_token_seconds` | histogram: streamed attempts that had a first token | `model` |
//! | `toolhost_model_tokens_discarded_total` | counter: output tokens of broken streamed attempts | none |
//! | `toolhost_run_duration_seconds` | histogram: live time of completed runs | none |
//! | `toolhost_in_doubt_resolutions_total` | counter: calls brought out of doubt | `decider` (`reconcile`, `policy`, `operator`), `answer` (`committed`, `not_done`, `unknown`, `retry`, `abandon`, `mark_done`) |
//!
//! `toolhost_runs` is a gauge because a run's status moves (a `failed` run
//! resumed becomes `completed`). The resolutions are not journal rows but
//! the store's counters, which every process that resolves a call bumps
//! (a plain `toolhost call`, an agent's step, `cache resolve`); they ride
//! on the same refresh, and `stats --json` prints the same numbers as
//! `in_doubt_resolutions`. They carry no `tool` label: the store counts
//! them per decider and answer, a fixed set (`cache list` has the calls).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::store::{Stats, Store};

/// How stale the journal's numbers on `/metrics` may be.
pub const JOURNAL_REFRESH: Duration = Duration::from_secs(2);

/// Reads the journal's latest numbers; called at each scrape.
pub type JournalSource = Arc<dyn Fn() -> Option<Stats> + Send + Sync>;

/// The journal of `store`, re-read every `every` by a background task that
/// ends when the returned source is dropped.
pub fn persisted_journal(store: Store, every: Duration) -> JournalSource {
    let latest: Arc<Mutex<Option<Stats>>> = Arc::default();
    let weak = Arc::downgrade(&latest);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(latest) = weak.upgrade() else { return };
            match store.journal_totals().await {
                // A poisoned lock only means a scrape panicked mid-read.
                Ok(stats) => *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats),
                Err(e) => tracing::warn!(error = %e, "cannot read the journal for /metrics"),
            }
        }
    });
    Arc::new(move || latest.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Encodes a [`JournalSource`] at each scrape.
pub(super) struct JournalCollector(pub JournalSource);

impl std::fmt::Debug for JournalCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalCollector")
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Fmt {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Fmt {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Seconds-buckets as the served calls' histogram has them (100 µs doubling).
fn buckets(values_ms: &[u64]) -> (f64, u64, Vec<(f64, u64)>) {
    let bounds = prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 21);
    let mut out: Vec<(f64, u64)> = bounds.map(|b| (b, 0)).collect();
    out.push((f64::INFINITY, 0));
    let mut sum = 0.0;
    for &v in values_ms {
        let s = v as f64 / 1000.0;
        sum += s;
        if let Some(slot) = out.iter_mut().find(|(b, _)| s <= *b) {
            slot.1 += 1;
        }
    }
    (sum, values_ms.len() as u64, out)
}

impl Collector for JournalCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let Some(s) = (self.0)() else {
            return Ok(());
        };
        let b = &s.breakdown;
        {
            let mut m = enc.encode_descriptor(
                "toolhost_runs",
                "Agent runs in the journal, by current status",
                None,
                MetricType::Gauge,
            )?;
            for (status, n) in [
                ("completed", s.completed),
                ("failed", s.failed),
                ("partial", s.partial),
                ("running", s.running),
            ] {
                ConstGauge::new(n as i64).encode(m.encode_family(&[("status", status)])?)?;
            }
        }
        counter(
            &mut enc,
            "toolhost_model_turns",
            "Model turns of runs asked for (served or not)",
            s.model_turns,
        )?;
        counters(
            &mut enc,
            "toolhost_model_attempts",
            "Model attempts of runs by chain entry and outcome (ok or the error kind)",
            b.attempts.iter().map(|((model, outcome), n)| {
                (
                    [("model", model.as_str()), ("outcome", outcome.as_str())],
                    *n,
                )
            }),
        )?;
        counter(
            &mut enc,
            "toolhost_model_retries",
            "Retries within model turns of runs",
            s.retries,
        )?;
        counter(
            &mut enc,
            "toolhost_model_fallback_turns",
            "Model turns of runs that moved down the fallback chain",
            s.fell_back,
        )?;
        counter(
            &mut enc,
            "toolhost_breaker_opens",
            "Circuit-breaker openings during model turns of runs",
            s.breaker_opens,
        )?;
        counters(
            &mut enc,
            "toolhost_run_tool_calls",
            "Live tool calls of runs by tool and cache (hit: replayed)",
            b.tool_calls.iter().map(|((tool, cache), n)| {
                ([("tool", tool.as_str()), ("cache", cache.as_str())], *n)
            }),
        )?;
        counters(
            &mut enc,
            "toolhost_run_errors",
            "Failed model attempts and tool calls of runs by error kind",
            s.errors_by_kind
                .iter()
                .map(|(k, n)| ([("kind", k.as_str())], *n)),
        )?;
        counter(
            &mut enc,
            "toolhost_steps",
            "Journaled steps (model turns served)",
            s.steps,
        )?;
        counter(
            &mut enc,
            "toolhost_steps_resumed",
            "Steps served from the journal by resumes",
            s.steps_resumed,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "toolhost_model_attempt_duration_seconds",
                "Model attempt time of runs, by chain entry",
                None,
                MetricType::Histogram,
            )?;
            for (model, times) in &b.attempt_ms {
                let (sum, count, buckets) = buckets(times);
                m.encode_family(&[("model", model.as_str())])?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "toolhost_model_time_to_first_token_seconds",
                "Time to the first content event of streamed model attempts of runs, by chain entry",
                None,
                MetricType::Histogram,
            )?;
            for (model, times) in &b.first_token_ms {
                let (sum, count, buckets) = buckets(times);
                m.encode_family(&[("model", model.as_str())])?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
            }
        }
        counter(
            &mut enc,
            "toolhost_model_tokens_discarded",
            "Output tokens of streamed model attempts of runs that broke, thrown away",
            b.tokens_discarded,
        )?;
        counters(
            &mut enc,
            "toolhost_in_doubt_resolutions",
            "Calls brought out of doubt, by who decided and the answer",
            b.resolutions.iter().map(|((decider, answer), n)| {
                (
                    [("decider", decider.as_str()), ("answer", answer.as_str())],
                    *n,
                )
            }),
        )?;
        let (sum, count, buckets) = buckets(&b.completed_ms);
        enc.encode_descriptor(
            "toolhost_run_duration_seconds",
            "Live time of completed runs, over all their sessions",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_lands_in_the_first_bucket_that_holds_it() {
        let (sum, count, b) = buckets(&[0, 1, 1000, 200_000]);
        assert_eq!(count, 4);
        assert!((sum - 201.001).abs() < 1e-9);
        assert_eq!(b.first().map(|x| x.1), Some(1), "0 ms");
        assert_eq!(b.last().map(|x| x.1), Some(1), "past the largest bound");
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 4);
    }
}
