//! Reads beside the writer: a second connection for lookups and polls.
//!
//! Why: the owner thread wraps every job in a `BEGIN IMMEDIATE` batch, which
//! takes the database's write lock. A caller polling another process's claim,
//! or looking up a pure result, needs no lock at all; in WAL mode a reader
//! sees the last commit without blocking the writer or being blocked by it.
//! Reads run on tokio's blocking pool, never on an async worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

pub(crate) struct Reader {
    conn: Mutex<Connection>,
    path: PathBuf,
    busy_timeout: Duration,
}

impl Reader {
    /// Opens a read-only connection to an existing (migrated) database.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<Reader, StoreError> {
        let sqlite = |e| StoreError::from_sqlite(path, busy_timeout, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        conn.busy_timeout(busy_timeout).map_err(sqlite)?;
        Ok(Reader {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            busy_timeout,
        })
    }

    /// Runs `read` on the blocking pool with the reader connection.
    pub(crate) async fn read<R, F>(self: &Arc<Self>, read: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me.conn.lock().unwrap_or_else(|p| p.into_inner());
            read(&conn).map_err(|e| StoreError::from_sqlite(&me.path, me.busy_timeout, e))
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}
