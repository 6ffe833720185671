//! Circuit-breaker state on PostgreSQL: one row per breaker (`model:NAME`,
//! `tool:NAME`), shared by every host that points at the database.
//!
//! Reads: an agent consults the shared state before every model turn and
//! every tool phase, so a breaker another machine opened is open here on
//! the next call. That read must be cheap, so every row carries a `version`
//! that grows on each write, and this process keeps the states it has
//! parsed with their versions. The read is one indexed SELECT that sends
//! the versions it knows and gets back every row's name and version, with
//! the body only for rows that changed: in the steady state a few dozen
//! bytes per breaker and no JSON to parse. (Why not LISTEN/NOTIFY: a
//! notification arrives when it arrives, so it cannot promise "before the
//! next call", and one lost with a dropped connection would leave a stale
//! state with nothing to say so. Why not a global "newest version" counter:
//! versions drawn from a sequence commit out of order, and a reader that
//! skipped past one would never see that write.)
//!
//! Writes: a breaker publishes under a lock and must not wait, so states
//! go to a writer thread with its own connection (as SQLite's owner thread
//! takes queued jobs): several changes of one breaker waiting at once are
//! written as the newest, and the newest write wins in the database too
//! (`updated_at`). Dropping the store drains the queue, for at most
//! [`DRAIN_LIMIT`]: a CLI command's last breaker change reaches the other
//! hosts, and a database that is down cannot hold a process's exit. A
//! state lost that way only means a dependency gets probed again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{PgStore, parse_url, pool::PgPool};
use crate::resilience::Shared;
use crate::store::StoreError;
use crate::store::breakers::BreakerRow;

/// How long dropping the store may wait for queued breaker writes.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(2);

const UPSERT: &str = "INSERT INTO breakers (name, state, body, updated_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (name) DO UPDATE SET state = excluded.state, body = excluded.body,
        updated_at = excluded.updated_at, version = breakers.version + 1
    WHERE excluded.updated_at > breakers.updated_at";

/// Each row's name and version; its body only where `$2`/`$3` (the names
/// and versions this process holds) say it changed.
const READ: &str = "SELECT b.name, b.version,
        CASE WHEN k.version IS DISTINCT FROM b.version THEN b.body END
    FROM breakers b
    LEFT JOIN unnest($2::text[], $3::bigint[]) AS k (name, version) ON k.name = b.name
    WHERE b.name LIKE $1 || '%'
    ORDER BY b.name";

/// The breaker half of the PostgreSQL backend: the states parsed so far
/// (by row name, with the version they came from) and the writer.
#[derive(Debug)]
pub(crate) struct Breakers {
    known: Mutex<HashMap<String, (i64, Shared)>>,
    writer: Writer,
}

impl Breakers {
    /// Starts the writer thread; it connects (to `url`) when it first writes.
    pub(crate) fn start(url: &str, display: &str, wait: Duration) -> Result<Breakers, StoreError> {
        Ok(Breakers {
            known: Mutex::default(),
            writer: Writer::start(url, display, wait)?,
        })
    }
}

impl PgStore {
    /// Queues `state` for the row `name`; never waits.
    pub(crate) fn publish_breaker(&self, name: String, state: Shared) {
        self.breakers.writer.send(name, state);
    }

    /// Every breaker whose name starts with `prefix`, by name: one round
    /// trip; bodies travel only for rows that changed since the last read.
    pub(crate) async fn breaker_states(&self, prefix: &str) -> Result<Vec<BreakerRow>, StoreError> {
        let (names, versions): (Vec<String>, Vec<i64>) = {
            let known = self
                .breakers
                .known
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            known
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(n, (v, _))| (n.clone(), *v))
                .unzip()
        };
        let rows = retrying!(self, |client, _retry| async {
            let stmt = client.prepare_cached(READ).await?;
            client.query(&stmt, &[&prefix, &names, &versions]).await
        })?;
        let mut known = self
            .breakers
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (name, version, body): (String, i64, Option<String>) =
                (r.get(0), r.get(1), r.get(2));
            if let Some(body) = body {
                // A row this build cannot read is skipped, not fatal: the
                // breaker then starts closed, which is the safe default.
                match serde_json::from_str::<Shared>(&body) {
                    Ok(state) => {
                        known.insert(name.clone(), (version, state));
                    }
                    Err(_) => {
                        known.remove(&name);
                    }
                }
            }
            if let Some((_, state)) = known.get(&name) {
                out.push(BreakerRow {
                    name,
                    state: state.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// The writer thread's end of the queue.
#[derive(Debug)]
struct Writer {
    tx: Option<mpsc::UnboundedSender<(String, Shared)>>,
    /// Signalled when the thread has written everything and stopped.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Writer {
    fn start(url: &str, display: &str, wait: Duration) -> Result<Writer, StoreError> {
        let config = parse_url(url)?;
        let (display, store) = (display.to_string(), display.to_string());
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("toolhost-pg-breakers".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    // The pool is made here, so its connections live on
                    // this thread's runtime, whatever becomes of the caller's.
                    Ok(rt) => rt.block_on(async move {
                        match PgPool::new(config, display, 1, wait) {
                            Ok(pool) => write_loop(rx, pool).await,
                            Err(e) => tracing::warn!(error = %e, "breaker states stay local"),
                        }
                    }),
                    Err(e) => tracing::warn!(error = %e, "breaker states stay local"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::Postgres {
                store,
                message: format!("cannot start the breaker writer thread: {e}"),
            })?;
        Ok(Writer {
            tx: Some(tx),
            done: Mutex::new(Some(done)),
        })
    }

    fn send(&self, name: String, state: Shared) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((name, state));
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the loop once what is queued is written.
        drop(self.tx.take());
        let done = self
            .done
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(done) = done
            && done.recv_timeout(DRAIN_LIMIT).is_err()
        {
            tracing::warn!("breaker states still queued after {DRAIN_LIMIT:?} were not written");
        }
    }
}

async fn write_loop(mut rx: mpsc::UnboundedReceiver<(String, Shared)>, pool: PgPool) {
    while let Some(first) = rx.recv().await {
        // Everything queued now, the newest state of each breaker.
        let mut batch: HashMap<String, Shared> = HashMap::new();
        let mut add = |(name, state): (String, Shared)| {
            if batch
                .get(&name)
                .is_none_or(|s| state.updated_ms > s.updated_ms)
            {
                batch.insert(name, state);
            }
        };
        add(first);
        while let Ok(more) = rx.try_recv() {
            add(more);
        }
        let mut pause = Duration::from_millis(20);
        for attempt in 1..=3 {
            match write_batch(&pool, &batch).await {
                Ok(()) => break,
                Err(e) if attempt == 3 => {
                    tracing::warn!(error = %e, breakers = batch.len(), "cannot share breaker states");
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                }
            }
        }
    }
}

async fn write_batch(pool: &PgPool, batch: &HashMap<String, Shared>) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(UPSERT)
        .await
        .map_err(|e| super::classify(&pool.display, &e))?;
    // Each its own commit: one breaker's state never waits for another's.
    for (name, state) in batch {
        let body = serde_json::to_string(state).unwrap_or_default();
        client
            .execute(
                &stmt,
                &[name, &state.state.as_str(), &body, &state.updated_ms],
            )
            .await
            .map_err(|e| super::classify(&pool.display, &e))?;
    }
    Ok(())
}
