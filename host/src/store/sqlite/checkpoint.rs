//! WAL checkpoints off the write path.
//!
//! SQLite's default runs a checkpoint inside the commit that takes the WAL
//! past 1,000 pages: every hundred or so calls, one commit also copied the
//! WAL into the database file and synced it, and that call's latency was
//! the tail of every series (decision 0092). The owner thread's connection
//! has automatic checkpoints off; every [`EVERY`] commits it nudges this
//! thread, which runs a passive checkpoint on a connection of its own: it
//! never blocks the writer or a reader, and copies what no reader still
//! needs. Idle, the thread waits on a condition variable and costs nothing.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// Commits between two checkpoints.
pub(crate) const EVERY: u64 = 128;

pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    due: bool,
    stop: bool,
    /// Checkpoints run so far (for tests).
    done: u64,
}

impl Checkpointer {
    pub(crate) fn start(path: PathBuf, busy_timeout: Duration) -> std::io::Result<Checkpointer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("toolhost-checkpoint".into())
            .spawn(move || run(&theirs, &path, busy_timeout))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint (one runs soon; nudges meanwhile merge).
    pub(crate) fn nudge(&self) {
        lock(&self.shared.state).due = true;
        self.shared.wake.notify_one();
    }

    /// Checkpoints run so far.
    #[cfg(test)]
    pub(crate) fn done(&self) -> u64 {
        lock(&self.shared.state).done
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, path: &std::path::Path, busy_timeout: Duration) {
    let conn = match Connection::open(path).and_then(|c| {
        c.busy_timeout(busy_timeout)?;
        Ok(c)
    }) {
        Ok(conn) => Some(conn),
        Err(e) => {
            // Without it the WAL grows until the last connection closes
            // (which checkpoints); nothing is lost.
            tracing::warn!(db = %path.display(), error = %e, "cannot open the checkpoint connection");
            None
        }
    };
    loop {
        {
            let mut state = lock(&shared.state);
            while !state.due && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
            state.due = false;
        }
        if let Some(conn) = &conn {
            let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            if let Err(e) = passive {
                tracing::debug!(db = %path.display(), error = %e, "a passive checkpoint failed");
            }
        }
        lock(&shared.state).done += 1;
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // Plain flags: a panic while held leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn rows_in_the_database_file(path: &std::path::Path) -> i64 {
        // `immutable` reads the file alone, not the WAL beside it.
        let uri = format!("file:{}?immutable=1", path.display());
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(uri, flags).unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap_or(0)
    }

    #[test]
    fn a_nudge_copies_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x INTEGER NOT NULL);",
            )
            .unwrap();
        for x in 0..50 {
            writer
                .execute("INSERT INTO t (x) VALUES (?1)", [x])
                .unwrap();
        }
        assert_eq!(
            rows_in_the_database_file(&path),
            0,
            "all of it is in the WAL"
        );
        let checkpoints = Checkpointer::start(path.clone(), Duration::from_secs(5)).unwrap();
        checkpoints.nudge();
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpoints.done() == 0 {
            assert!(Instant::now() < deadline, "no checkpoint ran");
            std::thread::yield_now();
        }
        assert_eq!(rows_in_the_database_file(&path), 50);
        drop(checkpoints);
        // The writer is still open: it was never blocked.
        writer.execute("INSERT INTO t (x) VALUES (50)", []).unwrap();
    }
}
