//! The SQLite store: the idempotency cache, the agent journal, persisted
//! circuit breakers and the agent metrics, behind one owner thread.
//!
//! Why one owner: SQLite calls block, and a blocking call on an async worker
//! stalls every task scheduled there. So the connection lives on a dedicated
//! thread and async callers send it jobs. The owner also batches: every job
//! waiting when a batch starts runs in one transaction, each inside its own
//! savepoint, and one commit (one fsync under `synchronous=FULL`) makes the
//! whole batch durable before any caller hears back. That is group commit:
//! under load, thousands of claims per second cost a few hundred fsyncs.
//!
//! Layout: `worker` (the owner thread and batching), `reader` (a read-only
//! connection for lookups and polls, off the write lock), `migrations`
//! (schema versions in `user_version`), `calls` (the idempotency table's
//! SQL), `liveness` (which claim owners are still alive), `faults` (test
//! fault injection on the recording path), `journal` (agent runs, steps,
//! blobs), `breakers` (breaker state shared by processes), `metrics` (the
//! reliability numbers of `toolhost stats`, read from the journal).

mod breakers;
mod calls;
mod faults;
mod journal;
mod liveness;
mod metrics;
mod migrations;
mod prefix;
mod reader;
mod worker;

pub use breakers::{BreakerRow, StoreSink};
pub use journal::{Claim, NewRun, RunEnd, RunRecord, RunStatus, StepKind, StepRecord, blob_digest};
pub use metrics::{RunStats, Stats};

pub use calls::{
    CallRecord, CallState, ClaimOutcome, ClaimRequest, EXPLICIT_SCOPE_PREFIX, GcReport,
    StoredError, StoredOutcome,
};
pub(crate) use liveness::random_hex;
pub use liveness::{Liveness, OwnerLock};
pub use migrations::{SCHEMA_VERSION, migration_sql};
pub use prefix::Prefixed;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// Why the store failed. The host keeps running; the call that needed the
/// store fails with this.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a SQLite database (or is damaged).
    #[error("the database {} is corrupt or not a SQLite database: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// Another process held the database longer than the busy timeout.
    #[error("the database {} stayed locked for {} ms (busy timeout): {message}", path.display(), timeout.as_millis())]
    Locked {
        path: PathBuf,
        timeout: Duration,
        message: String,
    },
    /// The database was written by a newer toolhost.
    #[error("the database {} has schema version {found}; this toolhost knows up to {SCHEMA_VERSION}", path.display())]
    TooNew { path: PathBuf, found: i64 },
    /// The file or its directory cannot be opened or created.
    #[error("cannot open the database {}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    /// Any other SQLite failure.
    #[error("database error on {}: {message}", path.display())]
    Sqlite { path: PathBuf, message: String },
    /// The owner thread is gone (the store was shut down).
    #[error("the database owner thread has stopped")]
    Closed,
    /// A write that needs this process's `running` claim found something
    /// else: the outcome was not recorded.
    #[error(
        "the claim on {key} is no longer this process's (the row is {found}); its outcome was not recorded"
    )]
    NotOwner { key: String, found: String },
    /// A test armed a fault on the recording path (`Store::inject_write_failures`).
    #[error("injected write failure on {}", path.display())]
    Injected { path: PathBuf },
}

impl StoreError {
    pub(crate) fn from_sqlite(path: &Path, timeout: Duration, e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let message = e.to_string();
        let code = e.sqlite_error_code();
        let path = path.to_path_buf();
        match code {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Locked {
                path,
                timeout,
                message,
            },
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path, message }
            }
            Some(ErrorCode::CannotOpen) => StoreError::Open { path, message },
            _ => StoreError::Sqlite { path, message },
        }
    }
}

/// A step that may be retried while SQLite says "busy".
pub(crate) enum Retry {
    Sqlite(rusqlite::Error),
    Final(StoreError),
}

impl From<rusqlite::Error> for Retry {
    fn from(e: rusqlite::Error) -> Self {
        Retry::Sqlite(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `step` until it succeeds, fails with something other than "busy",
/// or `timeout` has passed, sleeping a little longer each time.
pub(crate) fn retry_busy<T>(
    timeout: Duration,
    mut step: impl FnMut() -> Result<T, Retry>,
) -> Result<T, Retry> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match step() {
            Err(Retry::Sqlite(e)) if is_busy(&e) && start.elapsed() < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// How to open the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long a statement waits for another process's lock.
    pub busy_timeout: Duration,
    /// Most jobs one transaction (one fsync) may carry.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
        }
    }
}

/// A handle to the store; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Store {
    inner: Arc<worker::Handle>,
    reader: Arc<reader::Reader>,
    owner: Arc<OwnerLock>,
    faults: Arc<faults::Faults>,
    /// Bumped whenever this store settles a claim (records, releases or
    /// marks it): in-process waiters wake on it instead of polling.
    settled: Arc<tokio::sync::watch::Sender<u64>>,
    busy_timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it to
    /// the current schema, and starts its owner thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let sqlite = |e| StoreError::from_sqlite(path, options.busy_timeout, e);
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(options.busy_timeout).map_err(sqlite)?;
        // WAL lets readers run beside the writer; FULL syncs the WAL on every
        // commit, because a lost claim row could repeat a side effect.
        // Switching to WAL and migrating can meet SQLITE_BUSY without the
        // busy handler being consulted (another process is opening or
        // closing the same new file), so those steps retry until the busy
        // timeout.
        retry_busy(options.busy_timeout, || {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            migrations::migrate(&conn, path).map_err(|e| match e {
                migrations::MigrateError::Sqlite(e) => Retry::Sqlite(e),
                migrations::MigrateError::TooNew(found) => Retry::Final(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                }),
            })
        })
        .map_err(|e| match e {
            Retry::Sqlite(e) => sqlite(e),
            Retry::Final(e) => e,
        })?;
        let owner = OwnerLock::acquire(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: format!("cannot create the owner lock: {e}"),
        })?;
        // Effect rows of older key derivations get today's keys, and the
        // claims of owners that died while no store was open are settled.
        retry_busy(options.busy_timeout, || {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let step = (|| {
                calls::rekey_legacy_effects(&conn, crate::idempotency::effect_key)?;
                let dead = dead_owners(path, owner.id(), calls::running_owners(&conn)?);
                calls::sweep_dead(&conn, &dead)
            })();
            match step {
                Ok(swept) => {
                    conn.execute_batch("COMMIT")?;
                    if swept > 0 {
                        tracing::warn!(db = %path.display(), swept, "claims of dead owners are now in_doubt");
                    }
                    Ok(())
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(Retry::Sqlite(e))
                }
            }
        })
        .map_err(|e| match e {
            Retry::Sqlite(e) => sqlite(e),
            Retry::Final(e) => e,
        })?;
        liveness::sweep_locks(path, owner.id());
        let reader = reader::Reader::open(path, options.busy_timeout)?;
        let busy_timeout = options.busy_timeout;
        let inner = worker::Handle::start(conn, path.to_path_buf(), options).map_err(|e| {
            StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot start the owner thread: {e}"),
            }
        })?;
        Ok(Store {
            inner: Arc::new(inner),
            reader: Arc::new(reader),
            owner: Arc::new(owner),
            faults: Arc::default(),
            settled: Arc::new(tokio::sync::watch::Sender::new(0)),
            busy_timeout,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// This process's claim-owner id (held while the store is open).
    pub fn owner_id(&self) -> &str {
        self.owner.id()
    }

    /// Whether the claim owner `id` is still alive (in any process). The
    /// probe touches the file system, so it runs on the blocking pool.
    pub async fn owner_alive(&self, id: &str) -> Liveness {
        if id == self.owner.id() {
            return Liveness::Alive;
        }
        let (path, id) = (self.inner.path.clone(), id.to_string());
        tokio::task::spawn_blocking(move || liveness::probe(&path, &id))
            .await
            .unwrap_or_else(|e| Liveness::Unknown(format!("the probe panicked: {e}")))
    }

    /// A receiver that changes whenever this store settles a claim.
    pub fn settled(&self) -> tokio::sync::watch::Receiver<u64> {
        self.settled.subscribe()
    }

    fn notify_settled(&self) {
        self.settled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes the next `writes` outcome writes (`complete`, `release`) fail
    /// before reaching SQLite, as a full or failing disk would. For
    /// fault-injection tests of the recording path.
    pub fn inject_write_failures(&self, writes: u32) {
        self.faults.arm(writes);
    }

    fn injected(&self) -> Result<(), StoreError> {
        if self.faults.take() {
            return Err(StoreError::Injected {
                path: self.inner.path.clone(),
            });
        }
        Ok(())
    }

    /// Reads on the read-only connection (no write lock, off the async workers).
    pub async fn read<R, F>(&self, read: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.reader.read(read).await
    }

    /// Runs `job` on the owner thread inside the next batch's transaction
    /// and returns its result once that transaction has committed.
    pub async fn run<R, F>(&self, job: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.inner.run(job).await
    }

    // ---- the idempotency table ----

    /// One row, read without taking the write lock.
    pub async fn get(&self, key: &str) -> Result<Option<CallRecord>, StoreError> {
        let key = key.to_string();
        self.read(move |c| calls::get(c, &key)).await
    }

    pub async fn claim(&self, request: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        self.run(move |c| calls::claim(c, &request)).await
    }

    /// Records the outcome of this process's claim on `key`. Fails with
    /// [`StoreError::NotOwner`] if the row is no longer its `running` claim.
    pub async fn complete(
        &self,
        key: &str,
        state: CallState,
        outcome: StoredOutcome,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.injected()?;
        let (k, owner) = (key.to_string(), self.owner_id().to_string());
        let held = self
            .run(move |c| calls::complete(c, &k, &owner, state, &outcome, now_ms, expires_at_ms))
            .await?;
        self.notify_settled();
        self.held(key, held)
    }

    fn held(&self, key: &str, held: calls::Held) -> Result<(), StoreError> {
        match held {
            calls::Held::Yes => Ok(()),
            calls::Held::No(found) => Err(StoreError::NotOwner {
                key: key.to_string(),
                found,
            }),
        }
    }

    /// Stores a pure or read-only outcome without a claim.
    pub async fn put(
        &self,
        request: ClaimRequest,
        outcome: StoredOutcome,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.run(move |c| calls::put(c, &request, &outcome, expires_at_ms))
            .await
    }

    /// Drops this process's claim on `key`: the call may run again. Fails
    /// with [`StoreError::NotOwner`] if it was not this process's claim.
    pub async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.injected()?;
        let (k, owner) = (key.to_string(), self.owner_id().to_string());
        let held = self.run(move |c| calls::release(c, &k, &owner)).await?;
        self.notify_settled();
        self.held(key, held)
    }

    /// Marks `owner`'s running claim on `key` as `in_doubt`; false if the
    /// row was no longer that (already recorded, or taken over).
    pub async fn mark_in_doubt(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let (key, owner) = (key.to_string(), owner.to_string());
        let marked = self
            .run(move |c| calls::mark_in_doubt(c, &key, &owner))
            .await?;
        self.notify_settled();
        Ok(marked)
    }

    /// The last resort after the recording path failed: marks this
    /// process's running claim `in_doubt` through a fresh connection (the
    /// owner thread's may be the broken part), so the row is never left
    /// `running` under a live owner for every later caller to wait on.
    pub async fn mark_in_doubt_fresh(&self, key: &str) -> Result<bool, StoreError> {
        let (path, timeout) = (self.inner.path.clone(), self.busy_timeout);
        let (key, owner) = (key.to_string(), self.owner_id().to_string());
        let marked = tokio::task::spawn_blocking(move || {
            let sqlite = |e| StoreError::from_sqlite(&path, timeout, e);
            let conn = Connection::open(&path).map_err(sqlite)?;
            conn.busy_timeout(timeout).map_err(sqlite)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sqlite)?;
            calls::mark_in_doubt(&conn, &key, &owner).map_err(sqlite)
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        self.notify_settled();
        Ok(marked)
    }

    /// Takes over a claim (a dead owner's, or an `in_doubt` one being
    /// retried): this process owns it and the attempt number goes up. The
    /// row then records `build` (component digest, policy digest).
    pub async fn take_over(
        &self,
        key: &str,
        from: Option<String>,
        now_ms: i64,
        build: (String, String),
    ) -> Result<Option<u32>, StoreError> {
        let (key, owner) = (key.to_string(), self.owner_id().to_string());
        self.run(move |c| {
            calls::take_over(
                c,
                &key,
                from.as_deref(),
                &owner,
                now_ms,
                (&build.0, &build.1),
            )
        })
        .await
    }

    /// Looks a key up without claiming it (pure and read-only calls), on
    /// the read-only connection.
    pub async fn lookup(&self, request: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        self.read(move |c| calls::lookup(c, &request)).await
    }

    /// Moves the `running` claims of dead owners to `in_doubt` and removes
    /// dead owners' lock files: `(claims swept, lock files removed)`.
    pub async fn sweep_dead_owners(&self) -> Result<(u64, u64), StoreError> {
        let owners = self.read(calls::running_owners).await?;
        let (path, own) = (self.inner.path.clone(), self.owner_id().to_string());
        let (dead, locks) = tokio::task::spawn_blocking(move || {
            let dead = dead_owners(&path, &own, owners);
            (dead, liveness::sweep_locks(&path, &own))
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        let swept = if dead.is_empty() {
            0
        } else {
            self.run(move |c| calls::sweep_dead(c, &dead)).await?
        };
        if swept > 0 {
            self.notify_settled();
        }
        Ok((swept, locks))
    }

    /// Records an operator's decision to give up on an `in_doubt` call.
    pub async fn abandon(
        &self,
        key: &str,
        outcome: StoredOutcome,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.run(move |c| {
            let outcome = serde_json::to_string(&outcome)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            let n = c.execute(
                "UPDATE calls SET state = 'done', outcome = ?2, completed_at = ?3, owner = NULL
                 WHERE key = ?1 AND state = 'in_doubt'",
                rusqlite::params![key, outcome, now_ms],
            )?;
            Ok(n > 0)
        })
        .await
        .inspect(|_| self.notify_settled())
    }

    /// Adds to named counters, in one job.
    pub async fn bump(&self, counts: Vec<(&'static str, i64)>) -> Result<(), StoreError> {
        self.run(move |c| {
            for (name, delta) in counts {
                calls::bump(c, name, delta)?;
            }
            Ok(())
        })
        .await
    }

    /// Every counter and its value.
    pub async fn counters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(calls::counters).await
    }

    pub async fn list(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        self.read(move |c| calls::list(c, limit)).await
    }

    /// Removes finished rows that expired, or that finished before
    /// `older_than_ms` when given; moves dead owners' claims to `in_doubt`
    /// and removes their lock files. Claims of live owners are kept.
    pub async fn gc(
        &self,
        now_ms: i64,
        finished_before_ms: Option<i64>,
    ) -> Result<GcReport, StoreError> {
        let (swept, locks) = self.sweep_dead_owners().await?;
        let report = self
            .run(move |c| calls::gc(c, now_ms, finished_before_ms))
            .await?;
        Ok(GcReport {
            swept_in_doubt: swept,
            locks_removed: locks,
            ..report
        })
    }
}

/// Which of `owners` are dead (blocking: probes lock files).
fn dead_owners(db: &Path, own: &str, owners: Vec<String>) -> Vec<String> {
    owners
        .into_iter()
        .filter(|o| o != own && liveness::probe(db, o) == Liveness::Dead)
        .collect()
}
