//! The reliability numbers of `toolhost stats`, overall or for one run.
//!
//! Why they are read from the journal rather than kept as counters: every
//! model turn and tool outcome is already a durable row with its attempts,
//! retries, fallbacks, breaker opens, cache hit and error kind, written by
//! whichever process ran it. Aggregating those rows gives numbers that every
//! process shares, that survive crashes, and that cannot drift from what
//! `runs show` prints. Counting them a second time in a counters table would
//! add a write per step and a second truth.
//!
//! Both backends feed their rows to one [`Tally`], so they compute the
//! numbers the same way; the SQL is in `sqlite/metrics.rs` and
//! `pg/metrics.rs`.
//!
//! API for readers (`/metrics`, dashboards): [`Store::stats`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{Backend, Store, StoreError, sqlite::calls, sqlite::metrics};

/// The prefix of the counters the executor bumps once per resolution of a
/// call in doubt: `resolutions.<decider>.<answer>`.
const RESOLUTIONS: &str = "resolutions.";

/// The numbers over a set of runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub runs: u64,
    pub completed: u64,
    pub failed: u64,
    pub partial: u64,
    pub running: u64,
    /// Of the runs not finished, those whose owner died: `toolhost serve`
    /// or `agent resume` takes them (not counted in `running`).
    pub interrupted: u64,
    /// Completed runs per finished run (completed, failed or partial).
    pub completion_rate: f64,
    /// Live time of completed runs, over all their sessions.
    pub mean_time_to_completion_ms: f64,
    pub p95_time_to_completion_ms: u64,
    /// Model turns asked for (served or not).
    pub model_turns: u64,
    /// Attempts that reached a provider.
    pub model_attempts: u64,
    pub retries: u64,
    /// Retries per provider attempt.
    pub retry_rate: f64,
    /// Model turns that moved down the chain at least once.
    pub fell_back: u64,
    /// Model turns that fell back, per model turn.
    pub fallback_rate: f64,
    /// Breaker openings seen during the runs' model turns.
    pub breaker_opens: u64,
    /// Tool calls made live (not served from the journal).
    pub tool_calls: u64,
    /// Of those, answered from the idempotency cache.
    pub cache_hits: u64,
    pub cache_hit_rate: f64,
    /// Failed model attempts and tool calls by error kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Journaled steps (model turns that were served).
    pub steps: u64,
    /// Steps served from the journal by resumes.
    pub steps_resumed: u64,
    /// Bytes the journal holds for these runs (rows and their blobs).
    pub journal_bytes: u64,
    pub journal_bytes_per_step: f64,
    /// Output tokens of streamed attempts that broke, thrown away.
    pub tokens_discarded: u64,
    /// Time to first token of streamed attempts, by chain entry.
    pub time_to_first_token: BTreeMap<String, FirstToken>,
    /// The same rows by label, for `/metrics` (not printed by `stats`).
    #[serde(skip)]
    pub breakdown: Breakdown,
}

/// The time to first token of one chain entry's streamed attempts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirstToken {
    /// Attempts that had a first token.
    pub attempts: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

/// The journal's numbers by label: what `/metrics` exposes as counters and
/// histograms, so every rate `stats` prints can be computed from a scrape.
/// Every label is a chain entry, a tool, a status or an error kind: bounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    /// Model attempts by (chain entry, `ok` or the error kind), the breaker's
    /// refusals (`circuit_open`) included.
    pub attempts: BTreeMap<(String, String), u64>,
    /// Each attempt's time, ms, by chain entry.
    pub attempt_ms: BTreeMap<String, Vec<u64>>,
    /// Each streamed attempt's time to first token, ms, by chain entry.
    pub first_token_ms: BTreeMap<String, Vec<u64>>,
    /// Live tool calls of runs by (tool, `hit` or `miss` of the cache).
    pub tool_calls: BTreeMap<(String, String), u64>,
    /// The live time of each completed run, ms.
    pub completed_ms: Vec<u64>,
    /// Output tokens of broken streamed attempts.
    pub tokens_discarded: u64,
    /// Calls brought out of doubt, by (decider, answer): the store's
    /// `resolutions.<decider>.<answer>` counters (see
    /// [`Store::in_doubt_resolutions`]), not the journal's rows.
    pub resolutions: BTreeMap<(String, String), u64>,
}

/// The numbers of one run.
pub type RunStats = Stats;

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Attempt error kinds out of a model turn's report (`Report` as JSON),
/// and each attempt by model into `by`.
fn attempt_errors(
    report: &str,
    into: &mut BTreeMap<String, u64>,
    by: &mut Breakdown,
) -> (u64, u64) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(report) else {
        return (0, 0);
    };
    let mut network = 0;
    let mut all = 0;
    for a in v["attempts"].as_array().into_iter().flatten() {
        all += 1;
        let model = a["model"].as_str().unwrap_or_default().to_string();
        let outcome = a["error"].as_str().unwrap_or("ok").to_string();
        *by.attempts.entry((model.clone(), outcome)).or_default() += 1;
        by.attempt_ms
            .entry(model.clone())
            .or_default()
            .push(a["elapsed_ms"].as_u64().unwrap_or_default());
        if let Some(t) = a["first_token_ms"].as_u64() {
            by.first_token_ms.entry(model).or_default().push(t);
        }
        by.tokens_discarded += a["tokens_discarded"].as_u64().unwrap_or_default();
        match a["error"].as_str() {
            Some(kind) => {
                *into.entry(kind.to_string()).or_default() += 1;
                if kind != "circuit_open" {
                    network += 1;
                }
            }
            None => network += 1,
        }
    }
    (network, all)
}

/// The aggregation behind [`Stats`], fed row by row by either backend's
/// SQL, so both compute the numbers the same way.
#[derive(Default)]
pub(crate) struct Tally {
    s: Stats,
    times: Vec<u64>,
}

/// The columns of one `steps` row that the numbers need.
pub(crate) struct StepFacts {
    /// The chain entry of a model row, the tool of a tool row.
    pub name: String,
    pub is_model: bool,
    pub is_final: bool,
    pub error_kind: Option<String>,
    pub cached: bool,
    pub retries: u64,
    pub fallbacks: u64,
    pub breaker_opens: u64,
    pub report: Option<String>,
}

impl Tally {
    /// One `runs` row.
    pub fn run(&mut self, status: &str, spent_ms: u64, steps_resumed: u64) {
        let s = &mut self.s;
        s.runs += 1;
        s.steps_resumed += steps_resumed;
        match status {
            "completed" => {
                s.completed += 1;
                self.times.push(spent_ms);
            }
            "failed" => s.failed += 1,
            "partial" => s.partial += 1,
            _ => s.running += 1,
        }
    }

    /// One `steps` row.
    pub fn step(&mut self, f: StepFacts) {
        let s = &mut self.s;
        if f.is_model {
            s.model_turns += 1;
            if f.is_final {
                s.steps += 1;
            }
            s.retries += f.retries;
            if f.fallbacks > 0 {
                s.fell_back += 1;
            }
            s.breaker_opens += f.breaker_opens;
            let (network, _) = f
                .report
                .as_deref()
                .map(|rep| attempt_errors(rep, &mut s.errors_by_kind, &mut s.breakdown))
                .unwrap_or_default();
            s.model_attempts += network;
        } else {
            s.tool_calls += 1;
            if f.cached {
                s.cache_hits += 1;
            }
            let cache = if f.cached { "hit" } else { "miss" };
            *s.breakdown
                .tool_calls
                .entry((f.name, cache.to_string()))
                .or_default() += 1;
            if let Some(k) = f.error_kind {
                *s.errors_by_kind.entry(k).or_default() += 1;
            }
        }
    }

    /// The numbers, given the journal's size.
    pub fn finish(mut self, journal_bytes: u64) -> Stats {
        let s = &mut self.s;
        self.times.sort_unstable();
        s.completion_rate = ratio(s.completed, s.completed + s.failed + s.partial);
        if !self.times.is_empty() {
            s.mean_time_to_completion_ms =
                self.times.iter().sum::<u64>() as f64 / self.times.len() as f64;
        }
        s.p95_time_to_completion_ms = percentile(&self.times, 0.95);
        s.breakdown.completed_ms = self.times.clone();
        s.retry_rate = ratio(s.retries, s.model_attempts);
        s.fallback_rate = ratio(s.fell_back, s.model_turns);
        s.cache_hit_rate = ratio(s.cache_hits, s.tool_calls);
        s.journal_bytes = journal_bytes;
        s.journal_bytes_per_step = ratio(journal_bytes, s.steps);
        s.tokens_discarded = s.breakdown.tokens_discarded;
        for (model, times) in &mut s.breakdown.first_token_ms {
            times.sort_unstable();
            s.time_to_first_token.insert(
                model.clone(),
                FirstToken {
                    attempts: times.len() as u64,
                    p50_ms: percentile(times, 0.5),
                    p95_ms: percentile(times, 0.95),
                },
            );
        }
        self.s
    }
}

impl Store {
    /// Every run's numbers with their [`Breakdown`], for `/metrics`. On
    /// SQLite it reads through the read-only connection: a scrape never
    /// queues behind the writer.
    pub async fn journal_totals(&self) -> Result<Stats, StoreError> {
        let mut stats = match &self.backend {
            Backend::Sqlite(s) => s.reader.read(|c| metrics::compute(c, None)).await?,
            Backend::Postgres(p) => p.stats(None).await?,
        };
        stats.breakdown.resolutions = self.in_doubt_resolutions().await?;
        Ok(stats)
    }

    /// How calls in doubt were resolved, by (decider, answer), over the
    /// whole store (the counters are not kept per run): what `stats
    /// --json` prints as `in_doubt_resolutions` and `/metrics` as
    /// `toolhost_in_doubt_resolutions_total`. On SQLite it reads through
    /// the read-only connection.
    pub async fn in_doubt_resolutions(
        &self,
    ) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        let counters = match &self.backend {
            Backend::Sqlite(s) => s.reader.read(calls::counters).await?,
            Backend::Postgres(p) => p.counters().await?,
        };
        Ok(counters
            .into_iter()
            .filter_map(|(name, n)| {
                let (decider, answer) = name.strip_prefix(RESOLUTIONS)?.split_once('.')?;
                Some(((decider.to_string(), answer.to_string()), n.max(0) as u64))
            })
            .collect())
    }

    /// `toolhost stats`: every run's numbers (`run = None`) or one run's.
    pub async fn stats(&self, run: Option<&str>) -> Result<Stats, StoreError> {
        let mut stats = match &self.backend {
            Backend::Sqlite(s) => {
                let run = run.map(str::to_string);
                s.inner
                    .run(move |c| metrics::compute(c, run.as_deref()))
                    .await?
            }
            Backend::Postgres(p) => p.stats(run).await?,
        };
        // The rows say `running`; whether the owner lives is the store's
        // liveness test, asked only of the unfinished runs.
        if stats.running > 0 {
            let dead = self
                .interrupted_runs(usize::MAX)
                .await?
                .iter()
                .filter(|r| run.is_none_or(|id| r.id == id))
                .count() as u64;
            stats.interrupted = dead.min(stats.running);
            stats.running -= stats.interrupted;
        }
        Ok(stats)
    }
}
