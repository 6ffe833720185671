//! Recovery: a server adopts and resumes every run whose owner died.
//!
//! Why polling and not a notification: an owner's death is not an event
//! anyone gets to send (SIGKILL, a lost machine). It is a fact the store can
//! be asked about (SQLite: the owner's `flock` is free; PostgreSQL: its lease
//! passed), so the server asks every [`Recovery::every`] and takes each
//! interrupted run, oldest first, with the same compare-and-set `agent
//! resume` uses. Several servers on one PostgreSQL race for a run on its
//! fencing token: one wins, the others see `run_busy` and move on, so each
//! run is driven by one server at a time and none is left behind.
//!
//! What is not adopted: a run whose recorded setup (config, tools, model
//! chain) differs from this server's is set aside with one warning naming
//! `agent resume --allow-changed`, until its row changes; a run whose
//! session here stopped on an error is retried with a backoff (a store that
//! was away comes back). A run that stopped `failed` on an `in_doubt` call
//! is not `running`, so it is never a candidate: an operator resolves it.
//!
//! Shutting down hands the adopted runs back (the [`Agent::hand_back_on`]
//! stop): the calls in flight finish, the run stays `running` with no owner,
//! and the next server takes it at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::hub::Hub;
use super::{Agent, AgentError, ResumeOptions};
use crate::store::RunStatus;

/// How often the store is asked for interrupted runs when none is given.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// The first wait before a run whose session failed here is tried again;
/// it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Adopts interrupted runs for one server.
pub struct Recovery {
    agent: Arc<Agent>,
    /// One per run driven at once; shared with the hub's submitted runs.
    slots: Arc<Semaphore>,
    /// Where adopted runs show up live (and can be cancelled).
    hub: Option<Arc<Hub>>,
    poll: Duration,
    stop: watch::Receiver<bool>,
}

/// Why a run is not taken now.
enum SetAside {
    /// Its setup differs from this server's; until its row changes.
    Changed { updated_at: i64 },
    /// Its session here failed; not before `until`.
    Backoff { until: Instant, wait: Duration },
}

impl Recovery {
    /// Recovery over `agent` (built with [`Agent::hand_back_on`] the same
    /// `stop`), driving at most `max_concurrent` runs at once.
    pub fn new(agent: Arc<Agent>, max_concurrent: usize, stop: watch::Receiver<bool>) -> Self {
        Recovery {
            agent,
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            hub: None,
            poll: DEFAULT_POLL,
            stop,
        }
    }

    /// Drives adopted runs through `hub`: they count against its admission
    /// limit (shared with submitted runs, in place of `max_concurrent`),
    /// and their events and cancels go through it like a submitted run's.
    pub fn with_hub(mut self, hub: Arc<Hub>) -> Self {
        self.slots = hub.slots();
        self.hub = Some(hub);
        self
    }

    /// Asks the store every `poll`.
    pub fn every(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Adopts runs until `stop` turns true, then waits for the runs in
    /// flight to hand themselves back.
    pub async fn run(mut self) {
        let store = self.agent.store().clone();
        if let Err(e) = store.announce_recoverer().await {
            tracing::warn!(target: "toolhost::run", error = %e,
                "cannot record that this server adopts runs; `runs list` will not name it");
        }
        let mut driving: JoinSet<Settled> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut aside: HashMap<String, SetAside> = HashMap::new();
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(done) = driving.join_next(), if !driving.is_empty() => {
                    if let Ok(settled) = done {
                        in_flight.remove(&settled.id);
                        settle(&mut aside, settled);
                    }
                    continue;
                }
                _ = self.stop.wait_for(|s| *s) => break,
            }
            let free = self.slots.available_permits();
            if free == 0 {
                continue;
            }
            let mut runs = match store
                .interrupted_runs(free + in_flight.len() + aside.len())
                .await
            {
                Ok(runs) => runs,
                Err(e) => {
                    tracing::warn!(target: "toolhost::run", error = %e, "cannot list interrupted runs");
                    continue;
                }
            };
            // A run whose session here failed is still this server's (its
            // owner lives), so it is not listed: ask for it by name.
            let now = Instant::now();
            let due: Vec<String> = aside
                .iter()
                .filter(|(id, a)| {
                    matches!(a, SetAside::Backoff { until, .. } if *until <= now)
                        && !in_flight.contains(*id)
                        && !runs.iter().any(|r| &r.id == *id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                match store.get_run(&id).await {
                    Ok(Some(run)) if run.status.is_unfinished() => runs.push(run),
                    Ok(_) => {
                        aside.remove(&id);
                    }
                    Err(e) => {
                        tracing::warn!(target: "toolhost::run", run_id = %id, error = %e, "cannot read a run to retry");
                    }
                }
            }
            let mut taken = 0;
            for run in runs {
                if taken == free {
                    break;
                }
                if in_flight.contains(&run.id) {
                    continue;
                }
                match aside.get(&run.id) {
                    Some(SetAside::Changed { updated_at }) if *updated_at == run.updated_at => {
                        continue;
                    }
                    Some(SetAside::Backoff { until, .. }) if *until > now => continue,
                    _ => {}
                }
                let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                    break;
                };
                // A run live in the hub is being driven here already.
                let live = match &self.hub {
                    Some(hub) => match hub.register(&run.id) {
                        Some(live) => Some(live),
                        None => continue,
                    },
                    None => None,
                };
                taken += 1;
                in_flight.insert(run.id.clone());
                tracing::info!(target: "toolhost::run", run_id = %run.id,
                    previous_owner = run.owner.as_deref().unwrap_or(""), "adopting an interrupted run");
                let agent = self.agent.clone();
                driving.spawn(async move {
                    let agent = live.as_ref().map_or(&*agent, |l| l.agent());
                    let result = agent
                        .resume(&run.id, &ResumeOptions::default())
                        .await
                        .map(|o| o.status);
                    drop((live, permit));
                    Settled {
                        id: run.id,
                        updated_at: run.updated_at,
                        result,
                    }
                });
            }
        }
        // Each run in flight sees the same `stop` and hands itself back
        // after its calls in flight.
        while let Some(done) = driving.join_next().await {
            if let Ok(settled) = done {
                settle(&mut aside, settled);
            }
        }
    }
}

/// How an adopted run's session ended.
struct Settled {
    id: String,
    /// The row's `updated_at` when it was taken.
    updated_at: i64,
    result: Result<RunStatus, AgentError>,
}

/// Notes how an adopted run's session ended.
fn settle(aside: &mut HashMap<String, SetAside>, settled: Settled) {
    let Settled {
        id,
        updated_at,
        result,
    } = settled;
    match result {
        Ok(status) => {
            aside.remove(&id);
            tracing::info!(target: "toolhost::run", run_id = %id, status = status.as_str(),
                "adopted run stopped");
        }
        // Another server (or an `agent resume`) was faster, or it finished.
        Err(AgentError::Busy { .. } | AgentError::Completed(_) | AgentError::NoSuchRun(_)) => {
            aside.remove(&id);
        }
        Err(AgentError::Changed { id: run, changes }) => {
            tracing::warn!(target: "toolhost::run", run_id = %run, changes = %changes.join("; "),
                "not adopting a run whose setup changed; resume it with `toolhost agent resume {run} --allow-changed`");
            // Set aside until its row changes (someone resumed it).
            aside.insert(id, SetAside::Changed { updated_at });
        }
        Err(e) => {
            let wait = match aside.get(&id) {
                Some(SetAside::Backoff { wait, .. }) => (*wait * 2).min(MAX_BACKOFF),
                _ => FIRST_BACKOFF,
            };
            tracing::warn!(target: "toolhost::run", run_id = %id, kind = e.kind(), error = %e,
                retry_in_ms = wait.as_millis() as u64, "an adopted run stopped on an error");
            aside.insert(
                id,
                SetAside::Backoff {
                    until: Instant::now() + wait,
                    wait,
                },
            );
        }
    }
}
