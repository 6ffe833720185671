//! Reads beside the writer: a second connection for lookups and polls.
//!
//! Why: the owner thread wraps every job in a `BEGIN IMMEDIATE` batch, which
//! takes the database's write lock. A caller polling another process's claim,
//! or looking up a pure result, needs no lock at all; in WAL mode a reader
//! sees the last commit without blocking the writer or being blocked by it.
//! Reads run on tokio's blocking pool, never on an async worker, except
//! the hot lookup of `read_now`: a few indexed rows read in microseconds,
//! on the caller's thread unless it would have to wait.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::worker::Queue;
use crate::store::StoreError;

pub(crate) struct Reader {
    conn: Mutex<Connection>,
    /// The owner thread's queue: a read first waits for this process's
    /// writes behind, so it sees them.
    writes: Arc<Queue>,
    path: PathBuf,
    busy_timeout: Duration,
}

impl Reader {
    /// Opens a read-only connection to an existing (migrated) database.
    pub(crate) fn open(
        path: &Path,
        busy_timeout: Duration,
        writes: Arc<Queue>,
    ) -> Result<Reader, StoreError> {
        let sqlite = |e| StoreError::from_sqlite(path, busy_timeout, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        conn.busy_timeout(busy_timeout).map_err(sqlite)?;
        conn.set_prepared_statement_cache_capacity(super::cached::CAPACITY);
        Ok(Reader {
            conn: Mutex::new(conn),
            writes,
            path: path.to_path_buf(),
            busy_timeout,
        })
    }

    /// Runs `read` on the blocking pool with the reader connection, once
    /// this process's writes behind are committed.
    pub(crate) async fn read<R, F>(self: &Arc<Self>, read: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.writes.settle().await?;
        self.off_thread(read).await
    }

    async fn off_thread<R, F>(self: &Arc<Self>, read: F) -> Result<R, StoreError>
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

    /// [`Reader::read`], first tried on this thread: a WAL read never waits
    /// for the writer, so a lookup of a few indexed rows costs less than the
    /// two thread hops of the blocking pool. Only a read that would wait
    /// goes there: the connection busy with another read, or SQLite busy
    /// (a checkpoint or recovery holds the WAL index), which the blocking
    /// pool then waits out with the busy timeout.
    ///
    /// It does not wait for this process's writes behind: it is the lookup
    /// of a pure or read-only result, which this process also remembers in
    /// memory, and a miss costs a recompute.
    pub(crate) async fn read_now<R, F>(self: &Arc<Self>, read: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        if let Ok(conn) = self.conn.try_lock() {
            let quick = conn.busy_timeout(Duration::ZERO).and_then(|()| read(&conn));
            let restored = conn.busy_timeout(self.busy_timeout);
            match (quick, restored) {
                (Err(e), Ok(())) if super::is_busy(&e) => {}
                (Ok(r), Ok(())) => return Ok(r),
                (Err(e), _) | (Ok(_), Err(e)) => {
                    return Err(StoreError::from_sqlite(&self.path, self.busy_timeout, e));
                }
            }
        }
        self.off_thread(read).await
    }
}
