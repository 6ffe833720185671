//! The owner thread: the only code that touches the connection.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::cached::CachedStatements as _;
use crate::store::{StoreError, StoreOptions};

/// Delivers a job's result once its batch's fate (commit or not) is known.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One caller's work: run inside the batch, or fail without running.
trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Deliver;
    fn fail(self: Box<Self>, error: StoreError);
    /// Whether the job's commit must reach the disk before it is answered.
    fn durable(&self) -> bool;
}

struct Call<R, F> {
    work: F,
    reply: oneshot::Sender<Result<R, StoreError>>,
    path: PathBuf,
    busy_timeout: Duration,
    durability: Durability,
}

/// How far a job's commit must get before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// On disk (`synchronous=FULL`): claims, outcomes of effects, journal
    /// steps, anything whose loss could repeat an effect or lose a run.
    Synced,
    /// Committed and visible to every reader, but the WAL is not fsynced
    /// (`synchronous=NORMAL`): a crash may lose it, never corrupt the file
    /// or reorder it after a later synced commit. For records whose loss
    /// costs a recompute: pure and read-only results, breaker snapshots.
    Lossy,
}

impl<R, F> Job for Call<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<R> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> Deliver {
        let Call {
            work,
            reply,
            path,
            busy_timeout,
            durability: _,
        } = *self;
        let result =
            in_savepoint(conn, work).map_err(|e| StoreError::from_sqlite(&path, busy_timeout, e));
        Box::new(move |committed| {
            let _ = reply.send(committed.and(result));
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn durable(&self) -> bool {
        self.durability == Durability::Synced
    }
}

pub(crate) struct Handle {
    pub(crate) path: PathBuf,
    busy_timeout: Duration,
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    pub(crate) fn start(
        conn: Connection,
        path: PathBuf,
        options: StoreOptions,
    ) -> std::io::Result<Handle> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let busy_timeout = options.busy_timeout;
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("toolhost-sqlite".into())
            .spawn(move || owner_loop(conn, rx, thread_path, options))?;
        Ok(Handle {
            path,
            busy_timeout,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch and answers once it is on disk.
    pub(crate) async fn run<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.run_with(Durability::Synced, work).await
    }

    /// Runs `work` in the next batch and answers once it is committed, as
    /// `durability` says.
    pub(crate) async fn run_with<R, F>(
        &self,
        durability: Durability,
        work: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Call {
            work,
            reply,
            path: self.path.clone(),
            busy_timeout: self.busy_timeout,
            durability,
        });
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Handle {
    /// Queues `work` without waiting for it: it commits with a coming batch,
    /// before any job queued after it. For state whose loss in a crash is
    /// harmless (breaker snapshots), written from code that cannot await.
    pub(crate) fn submit<F>(&self, work: F)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let (reply, _ignored) = oneshot::channel();
        let job = Box::new(Call {
            work,
            reply,
            path: self.path.clone(),
            busy_timeout: self.busy_timeout,
            durability: Durability::Lossy,
        });
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Closing the channel ends the loop after the jobs already queued.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn in_savepoint<R>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    conn.execute_cached("SAVEPOINT job", [])?;
    match work(conn) {
        Ok(r) => {
            conn.execute_cached("RELEASE job", [])?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn owner_loop(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Job>>,
    path: PathBuf,
    options: StoreOptions,
) {
    let sqlite = |e| StoreError::from_sqlite(&path, options.busy_timeout, e);
    // The connection was opened with `synchronous=FULL`.
    let mut synced = true;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < options.max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A batch is synced if any job in it must be. The level can only
        // change between transactions; a synced commit fsyncs the whole
        // WAL, so it also makes every lossy commit before it durable.
        let durable = batch.iter().any(|job| job.durable());
        if durable != synced {
            let level = if durable { "FULL" } else { "NORMAL" };
            match conn.execute_cached(&format!("PRAGMA synchronous = {level}"), []) {
                Ok(_) => synced = durable,
                Err(e) => {
                    // Never answer a synced job from an unsynced commit.
                    let e = sqlite(e);
                    for job in batch {
                        job.fail(e.clone());
                    }
                    continue;
                }
            }
        }
        // BEGIN IMMEDIATE takes the write lock up front, so a claim's
        // check-then-insert cannot interleave with another process's.
        let begin = super::retry_busy(options.busy_timeout, || {
            Ok(conn.execute_cached("BEGIN IMMEDIATE", [])?)
        });
        let begin = begin.map_err(|e| match e {
            super::Retry::Sqlite(e) => sqlite(e),
            super::Retry::Final(e) => e,
        });
        if let Err(e) = begin {
            for job in batch {
                job.fail(e.clone());
            }
            continue;
        }
        let deliveries: Vec<Deliver> = batch.into_iter().map(|job| job.run(&conn)).collect();
        let committed = conn.execute_cached("COMMIT", []).map(drop).map_err(sqlite);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for deliver in deliveries {
            deliver(committed.clone());
        }
    }
}
