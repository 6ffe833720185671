//! The store: the idempotency cache, the agent journal, persisted circuit
//! breakers and the agent metrics.
//!
//! [`Store`] is the one facade everything above the store uses; nothing
//! above it knows which backend it talks to. Inside, a [`Backend`] is either
//! SQLite (`sqlite`, the embedded default: one file, one machine) or
//! PostgreSQL (`pg`, shared by every toolhost process that points at it).
//! Each facade method is one `match` on the backend, an arm per backend.
//! Both keep one contract:
//! a claim is exclusive, carries a fencing token, and its writes succeed
//! only while its owner and token still hold; a dead owner's claim becomes
//! `in_doubt`. What differs is how an owner is known to be dead: SQLite
//! probes the owner's `flock` (exact, one machine); PostgreSQL sees its
//! lease expire (see `pg/lease.rs`).
//!
//! SQLite, why one owner: SQLite calls block, and a blocking call on an async worker
//! stalls every task scheduled there. So the connection lives on a dedicated
//! thread and async callers send it jobs. The owner also batches: every job
//! waiting when a batch starts runs in one transaction, each inside its own
//! savepoint, and one commit (one fsync under `synchronous=FULL`) makes the
//! whole batch durable before any caller hears back. That is group commit:
//! under load, thousands of claims per second cost a few hundred fsyncs.
//!
//! Layout: the contract, backend-neutral, one file per area, each with the
//! types both backends keep and the facade's methods for that area: `calls`
//! (the idempotency table), `journal` (agent runs, steps and blobs),
//! `breakers` (breaker state shared by processes), `metrics` (the numbers
//! of `toolhost stats`), `prefix` (explicit-key prefixes), `error`
//! ([`StoreError`]), `faults` (test fault injection on the recording path).
//! Below them, two backends with the same file names: `sqlite/` (`mod`
//! opens the file, `worker` is the owner thread and its batching, `reader`
//! a read-only connection for lookups and polls, `migrations` the schema
//! versions in `user_version`, `liveness` which claim owners are alive,
//! and the SQL of each area) and `pg/` (pool, migrations, leases, and the
//! SQL of each area).

pub(crate) mod breakers;
pub(crate) mod calls;
mod error;
mod faults;
pub(crate) mod journal;
pub(crate) mod metrics;
mod pg;
mod prefix;
mod recovery;
mod sqlite;

pub(crate) use sqlite::{liveness, migrations};

pub use breakers::{BreakerRow, StoreSink};
pub use journal::{
    Claim, NewRun, RunCursor, RunEnd, RunRecord, RunStatus, StepKind, StepRecord, blob_digest,
};
pub use metrics::{Breakdown, FirstToken, RunStats, Stats};

pub use calls::{
    CallRecord, CallState, ClaimOutcome, ClaimRequest, EXPLICIT_SCOPE_PREFIX, GcReport, Resolution,
    StoredError, StoredOutcome, TakenOver,
};
pub use error::StoreError;
pub(crate) use liveness::random_hex;
pub use liveness::{Liveness, OwnerLock};
pub use migrations::{SCHEMA_VERSION, migration_sql};
pub use pg::{PG_SCHEMA_VERSION, check_url, redact_url};
pub use prefix::Prefixed;
pub use recovery::Recoverer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::config::StoreConfig;

/// Where the store lives: a SQLite file, or a PostgreSQL database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A `postgres://` (or `postgresql://`) URL.
    Postgres(String),
}

impl StoreLocation {
    /// A `--db` argument: a `postgres://` or `postgresql://` URL, else a path.
    pub fn parse(arg: &str) -> StoreLocation {
        if pg::is_url(arg) {
            StoreLocation::Postgres(arg.to_string())
        } else {
            StoreLocation::Sqlite(PathBuf::from(arg))
        }
    }
}

impl StoreLocation {
    /// Where `[store]` puts the store: the PostgreSQL URL if one is set,
    /// else the file.
    pub fn from_config(config: &StoreConfig) -> StoreLocation {
        match &config.url {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Sqlite(config.path.clone()),
        }
    }
}

/// How to open the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// SQLite: how long a statement waits for another process's lock.
    /// PostgreSQL: how long a caller waits for a pooled connection (and a
    /// new connection may take).
    pub busy_timeout: Duration,
    /// SQLite: most jobs one transaction (one fsync) may carry.
    pub max_batch: usize,
    /// PostgreSQL: the most connections this process keeps open.
    pub pool_size: usize,
    /// PostgreSQL: how long a claim (and this process's owner row) stays
    /// alive without a heartbeat. Renewed every third of it.
    pub lease: Duration,
    /// SQLite: today's key of an effect row (tool, canonical input, scope),
    /// for rows recorded under an older key derivation. The key rule is
    /// idempotency's, above the store, so whoever opens the store passes
    /// it in (`idempotency::effect_key`); `None` leaves old rows as they are.
    pub rekey: Option<Rekey>,
}

/// Derives an effect row's key from its tool, canonical input and scope.
pub type Rekey = fn(&str, &str, &str) -> String;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
            pool_size: 16,
            lease: Duration::from_secs(10),
            rekey: None,
        }
    }
}

impl StoreOptions {
    /// The options `[store]` asks for; the batch size is not configurable.
    pub fn from_config(config: &StoreConfig) -> StoreOptions {
        StoreOptions {
            busy_timeout: Duration::from_millis(config.busy_timeout_ms),
            pool_size: config.pool_size,
            lease: Duration::from_millis(config.lease_ms),
            ..StoreOptions::default()
        }
    }
}

/// Which database a [`Store`] talks to. Every facade method is a `match`
/// on this; the PostgreSQL arms live in `pg/`.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(Arc<pg::PgStore>),
}

/// A handle to the store; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    faults: Arc<faults::Faults>,
    /// Bumped whenever this store settles a claim (records, releases or
    /// marks it): in-process waiters wake on it instead of polling.
    settled: Arc<tokio::sync::watch::Sender<u64>>,
    /// Keys of this process's claims that ran but whose outcome (or
    /// in-doubt mark) could not be written yet: a background task keeps
    /// retrying, and in-process waiters answer `in_doubt` meanwhile.
    unrecorded: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location())
            .finish()
    }
}

impl Store {
    fn with(backend: Backend) -> Store {
        Store {
            backend,
            faults: Arc::default(),
            settled: Arc::new(tokio::sync::watch::Sender::new(0)),
            unrecorded: Arc::default(),
        }
    }

    /// Opens (creating if needed) the SQLite database at `path`, migrates
    /// it to the current schema, and starts its owner thread. Blocking.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let sqlite = sqlite::Sqlite::open(path, options)?;
        Ok(Store::with(Backend::Sqlite(Arc::new(sqlite))))
    }

    /// Connects to the PostgreSQL database at `url` (a bounded pool, TLS
    /// through rustls when the server offers or the URL requires it),
    /// migrates it, registers this process's owner id and starts its lease
    /// heartbeat.
    pub async fn open_postgres(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let pg = pg::PgStore::open(url, options).await?;
        Ok(Store::with(Backend::Postgres(pg)))
    }

    /// Opens whichever store `location` names (SQLite off the async workers).
    pub async fn open_at(
        location: &StoreLocation,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Store::open(&path, options))
                    .await
                    .map_err(|_| StoreError::Closed)?
            }
            StoreLocation::Postgres(url) => Store::open_postgres(url, options).await,
        }
    }

    /// The SQLite file, if this store is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// Where the store is, for messages: the file, or the URL without its
    /// password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path().display().to_string(),
            Backend::Postgres(p) => p.display().to_string(),
        }
    }

    /// Whether this is the shared (PostgreSQL) store.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// This process's claim-owner id (held while the store is open).
    pub fn owner_id(&self) -> &str {
        match &self.backend {
            Backend::Sqlite(s) => s.owner.id(),
            Backend::Postgres(p) => p.owner_id(),
        }
    }

    /// Whether the claim owner `id` is still alive (in any process, on any
    /// machine): SQLite probes its `flock` on the blocking pool; PostgreSQL
    /// reads its heartbeat lease.
    pub async fn owner_alive(&self, id: &str) -> Liveness {
        match &self.backend {
            Backend::Sqlite(s) => s.owner_alive(id).await,
            Backend::Postgres(p) => p.owner_alive(id).await,
        }
    }

    /// Whether the running claim on `key` held by `owner` under `fence` is
    /// alive: SQLite asks whether its owner is ([`Store::owner_alive`]);
    /// PostgreSQL whether the claim's own lease is unexpired. A row that is
    /// no longer that claim counts as dead on PostgreSQL (the caller reads
    /// it again).
    pub async fn claim_alive(&self, key: &str, owner: &str, fence: i64) -> Liveness {
        match &self.backend {
            Backend::Sqlite(s) => s.owner_alive(owner).await,
            Backend::Postgres(p) => p.claim_alive(key, owner, fence).await,
        }
    }

    /// A receiver that changes whenever this store settles a claim.
    pub fn settled(&self) -> tokio::sync::watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// Notes that this process's claim on `key` ran and its write is
    /// pending (the store refused it); waiters wake and see it.
    pub fn note_unrecorded(&self, key: &str, pending: bool) {
        let mut keys = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
        if pending {
            keys.insert(key.to_string());
        } else {
            keys.remove(key);
        }
        drop(keys);
        self.notify_settled();
    }

    /// Whether this process holds a claim on `key` whose write is pending.
    pub fn is_unrecorded(&self, key: &str) -> bool {
        self.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    pub(crate) fn notify_settled(&self) {
        self.settled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes the next `writes` outcome writes (`complete`, `release`) fail
    /// before reaching the database, as a full or failing disk would. For
    /// fault-injection tests of the recording path.
    pub fn inject_write_failures(&self, writes: u32) {
        self.faults.arm(writes);
    }

    fn injected(&self) -> Result<(), StoreError> {
        if self.faults.take() {
            return Err(StoreError::Injected {
                path: PathBuf::from(self.location()),
            });
        }
        Ok(())
    }

    fn sqlite_only(&self, what: &'static str) -> Result<&sqlite::Sqlite, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(s),
            Backend::Postgres(_) => Err(StoreError::Unsupported {
                what,
                backend: "PostgreSQL",
            }),
        }
    }

    /// SQLite only: reads on the read-only connection (no write lock, off
    /// the async workers). On PostgreSQL: [`StoreError::Unsupported`].
    pub async fn read<R, F>(&self, read: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.sqlite_only("raw SQLite reads")?
            .reader
            .read(read)
            .await
    }

    /// SQLite only: runs `job` on the owner thread inside the next batch's
    /// transaction and returns its result once that transaction has
    /// committed. On PostgreSQL: [`StoreError::Unsupported`].
    pub async fn run<R, F>(&self, job: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.sqlite_only("raw SQLite writes")?.inner.run(job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_section_names_the_location_and_options() {
        let shared = StoreConfig {
            url: Some("postgres://toolhost@db.internal:5432/toolhost".into()),
            pool_size: 4,
            lease_ms: 2_000,
            ..StoreConfig::default()
        };
        assert_eq!(
            StoreLocation::from_config(&shared),
            StoreLocation::Postgres("postgres://toolhost@db.internal:5432/toolhost".into())
        );
        let options = StoreOptions::from_config(&shared);
        assert_eq!(
            (options.pool_size, options.lease, options.max_batch),
            (4, Duration::from_secs(2), StoreOptions::default().max_batch)
        );
        let file = StoreConfig {
            path: PathBuf::from("t.db"),
            ..StoreConfig::default()
        };
        assert_eq!(
            StoreLocation::from_config(&file),
            StoreLocation::Sqlite(PathBuf::from("t.db"))
        );
    }
}
