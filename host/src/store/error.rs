//! [`StoreError`]: every way the store fails, on either backend. The host
//! keeps running; the call that needed the store fails with one of these.

use std::path::PathBuf;
use std::time::Duration;

use super::SCHEMA_VERSION;

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
    /// An agent run's journal write was refused: another process took the
    /// run over (this one was paused past its lease), so this session's
    /// step, or its end, was not written and the run stays the new owner's.
    #[error("run `{run}` is no longer this process's: {message}")]
    RunFenced { run: String, message: String },
    /// A write presented a fencing token that a take-over superseded: the
    /// claim was declared dead (its lease expired) and someone else took it,
    /// so this caller's outcome was not recorded.
    #[error(
        "the claim on {key} was taken over: its fencing token {fence} is superseded by {current} (the row is {found}); its outcome was not recorded"
    )]
    Fenced {
        key: String,
        fence: i64,
        current: i64,
        found: String,
    },
    /// The PostgreSQL store cannot be reached: refused, down, restarting,
    /// or the connection dropped and reconnecting did not help.
    #[error("the store {store} is unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    /// Every pooled connection stayed busy for the whole wait.
    #[error(
        "the store {store} is unavailable: all {size} pooled connections stayed busy for {} ms (raise [store] pool_size, or lower the load)",
        waited.as_millis()
    )]
    PoolExhausted {
        store: String,
        size: usize,
        waited: Duration,
    },
    /// The PostgreSQL store refused a statement (not a connection problem).
    #[error("database error on {store}: {message}")]
    Postgres { store: String, message: String },
    /// The PostgreSQL schema is newer than this build knows.
    #[error("the store {store} has schema version {found}; this toolhost knows up to {known}")]
    PgTooNew {
        store: String,
        found: i64,
        known: i64,
    },
    /// The `[store] url` (or `--db`) is not a usable PostgreSQL URL.
    #[error("the store URL {url} is not usable: {message}")]
    BadUrl { url: String, message: String },
    /// An operation this backend does not offer (raw SQLite access on the
    /// PostgreSQL store).
    #[error("{what} is not available on the {backend} store")]
    Unsupported {
        what: &'static str,
        backend: &'static str,
    },
    /// A test armed a fault on the recording path (`Store::inject_write_failures`).
    #[error("injected write failure on {}", path.display())]
    Injected { path: PathBuf },
}
