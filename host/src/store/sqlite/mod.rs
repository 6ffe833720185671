//! The SQLite backend: one file, one owner thread for writes (`worker`), a
//! read-only connection for lookups and polls (`reader`), and claim-owner
//! liveness by `flock` (`liveness`). The embedded default: one machine.

pub(crate) mod breakers;
mod cached;
pub(crate) mod calls;
mod checkpoint;
pub(crate) mod journal;
pub(crate) mod liveness;
pub(crate) mod metrics;
pub(crate) mod migrations;
mod reader;
mod recovery;
mod unwritten;
mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use self::liveness::OwnerLock;
use crate::store::Liveness;
use crate::store::{StoreError, StoreOptions};

pub(crate) struct Sqlite {
    pub(crate) inner: worker::Handle,
    pub(crate) reader: Arc<reader::Reader>,
    pub(crate) owner: OwnerLock,
    pub(crate) busy_timeout: Duration,
    /// The runs a session in this process drives now. A run this owner
    /// holds but no session drives (one stopped on an error) may be taken
    /// again here, as on PostgreSQL (`journal.rs`).
    pub(crate) driving: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Results written behind, until they commit.
    pub(crate) unwritten: Arc<unwritten::Unwritten>,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`, migrates it to
    /// the current schema, and starts its owner thread.
    pub(crate) fn open(path: &Path, options: StoreOptions) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let sqlite = |e| StoreError::from_sqlite(path, options.busy_timeout, e);
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(options.busy_timeout).map_err(sqlite)?;
        conn.set_prepared_statement_cache_capacity(cached::CAPACITY);
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
            // Checkpoints run off the write path (`checkpoint.rs`).
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
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
                if let Some(key_of) = options.rekey {
                    calls::rekey_legacy_effects(&conn, key_of)?;
                }
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
        let busy_timeout = options.busy_timeout;
        let inner = worker::Handle::start(conn, path.to_path_buf(), options).map_err(|e| {
            StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot start the owner thread: {e}"),
            }
        })?;
        let reader = reader::Reader::open(path, busy_timeout, inner.queue())?;
        Ok(Sqlite {
            inner,
            reader: Arc::new(reader),
            owner,
            busy_timeout,
            driving: Default::default(),
            unwritten: unwritten::for_path(path),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the claim owner `id` is alive: its `flock`, probed on the
    /// blocking pool.
    pub(crate) async fn owner_alive(&self, id: &str) -> Liveness {
        if id == self.owner.id() {
            return Liveness::Alive;
        }
        let (path, id) = (self.inner.path.clone(), id.to_string());
        tokio::task::spawn_blocking(move || liveness::probe(&path, &id))
            .await
            .unwrap_or_else(|e| Liveness::Unknown(format!("the probe panicked: {e}")))
    }

    /// Marks this owner's running claim `in_doubt` through a fresh
    /// connection (the owner thread's may be the broken part).
    pub(crate) async fn mark_in_doubt_fresh(
        &self,
        key: &str,
        fence: i64,
    ) -> Result<bool, StoreError> {
        let (path, timeout) = (self.inner.path.clone(), self.busy_timeout);
        let (key, owner) = (key.to_string(), self.owner.id().to_string());
        tokio::task::spawn_blocking(move || {
            let sqlite = |e| StoreError::from_sqlite(&path, timeout, e);
            let conn = Connection::open(&path).map_err(sqlite)?;
            conn.busy_timeout(timeout).map_err(sqlite)?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sqlite)?;
            calls::mark_in_doubt(&conn, &key, &owner, fence).map_err(sqlite)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Moves the `running` claims of dead owners to `in_doubt` and removes
    /// dead owners' lock files: `(claims swept, lock files removed)`.
    pub(crate) async fn sweep_dead_owners(&self) -> Result<(u64, u64), StoreError> {
        let owners = self.reader.read(calls::running_owners).await?;
        let (path, own) = (self.inner.path.clone(), self.owner.id().to_string());
        let (dead, locks) = tokio::task::spawn_blocking(move || {
            let dead = dead_owners(&path, &own, owners);
            (dead, liveness::sweep_locks(&path, &own))
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        let swept = if dead.is_empty() {
            0
        } else {
            self.inner.run(move |c| calls::sweep_dead(c, &dead)).await?
        };
        Ok((swept, locks))
    }
}

/// Which of `owners` are dead (blocking: probes lock files).
fn dead_owners(db: &Path, own: &str, owners: Vec<String>) -> Vec<String> {
    owners
        .into_iter()
        .filter(|o| o != own && liveness::probe(db, o) == Liveness::Dead)
        .collect()
}

impl StoreError {
    /// A rusqlite error on `path`, by its SQLite code.
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

pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
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
