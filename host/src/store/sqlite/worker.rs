//! The owner thread: the only code that touches the connection.
//!
//! Jobs come two ways. One a caller waits for ([`Handle::run`]): claims,
//! outcomes, journal steps, deletes; each is answered once its batch's
//! commit is known, and a batch holding any of them is synced to disk.
//! And writes behind ([`Handle::write_behind`]): records whose loss in a
//! crash costs only a recompute (pure and read-only results, breaker
//! snapshots). The caller does not wait for those; they wait in a queue of
//! their own and commit together, one transaction per [`GROUP_WINDOW`] or
//! sooner with the next waited-for job, never synced on their own.
//!
//! Why: a served pure call spent a quarter of its CPU on its own
//! transaction and on the two thread hops to wait for it (decision 0092).
//!
//! Order: the queued writes behind commit before (in the same transaction
//! as) any waited-for job received after them, and every read through the
//! reader first waits for writes this process put behind ([`Queue::settle`]),
//! so this process reads its own writes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::cached::CachedStatements as _;
use super::checkpoint::{self, Checkpointer};
use crate::store::{StoreError, StoreOptions};

/// How long the first write behind waits for others to share its commit.
pub(crate) const GROUP_WINDOW: Duration = Duration::from_millis(2);

/// Writes behind held at most; past it a write is dropped (its record is a
/// cache entry: the call is recomputed), so a store stuck on a lock held by
/// another process cannot grow this process without bound.
pub(crate) const MAX_BEHIND: usize = 4096;

/// Delivers a job's result once its batch's fate (commit or not) is known.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One caller's work: run inside the batch, or fail without running.
trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Deliver;
    fn fail(self: Box<Self>, error: StoreError);
    /// Whether the job's commit must reach the disk before it is answered.
    fn durable(&self) -> bool;
}

/// How far a job's commit must get before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// On disk (`synchronous=FULL`): claims, outcomes of effects, journal
    /// steps, anything whose loss could repeat an effect or lose a run.
    Synced,
    /// Committed and visible to every reader, but the WAL is not fsynced
    /// (`synchronous=NORMAL`): a crash may lose it, never corrupt the file
    /// or order it after a later synced commit (that commit syncs the whole
    /// WAL). For records whose loss costs a recompute.
    Lossy,
}

struct Call<R, F> {
    work: F,
    reply: oneshot::Sender<Result<R, StoreError>>,
    path: PathBuf,
    busy_timeout: Duration,
    durability: Durability,
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

/// A write behind: nobody waits for it, so a failure is logged; `after`
/// runs once its fate is known.
struct Behind<F, A> {
    work: F,
    after: A,
    what: &'static str,
    path: PathBuf,
    busy_timeout: Duration,
}

impl<F, A> Job for Behind<F, A>
where
    F: FnOnce(&Connection) -> rusqlite::Result<()> + Send,
    A: FnOnce() + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Deliver {
        let Behind {
            work,
            after,
            what,
            path,
            busy_timeout,
        } = *self;
        let result =
            in_savepoint(conn, work).map_err(|e| StoreError::from_sqlite(&path, busy_timeout, e));
        Box::new(move |committed| {
            if let Err(e) = committed.and(result) {
                tracing::warn!(error = %e, "cannot record {what} (it is recomputed when asked for again)");
            }
            after();
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        tracing::warn!(error = %error, "cannot record {} (it is recomputed when asked for again)", self.what);
        (self.after)();
    }

    fn durable(&self) -> bool {
        false
    }
}

enum Msg {
    /// A job its caller waits for.
    Job(Box<dyn Job>),
    /// The queue of writes behind was empty and is not now.
    Behind,
    /// Commit what is queued and end.
    Stop,
}

/// The way to the owner thread, shared by the writer handle and the reader.
pub(crate) struct Queue {
    path: PathBuf,
    busy_timeout: Duration,
    tx: mpsc::Sender<Msg>,
    behind: Mutex<Vec<Box<dyn Job>>>,
    /// Writes behind queued or in a transaction not yet committed.
    pending: AtomicUsize,
}

impl Queue {
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
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until every write this process put behind so far is committed
    /// (at once when none is pending).
    pub(crate) async fn settle(&self) -> Result<(), StoreError> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        // A waited-for job takes the queue with it, in front of itself.
        self.run_with(Durability::Lossy, |_| Ok(())).await
    }

    /// Writes behind waiting now.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    fn take_behind(&self) -> Vec<Box<dyn Job>> {
        std::mem::take(&mut *lock(&self.behind))
    }
}

pub(crate) struct Handle {
    pub(crate) path: PathBuf,
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    pub(crate) fn start(
        conn: Connection,
        path: PathBuf,
        options: StoreOptions,
    ) -> std::io::Result<Handle> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let queue = Arc::new(Queue {
            path: path.clone(),
            busy_timeout: options.busy_timeout,
            tx,
            behind: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
        });
        let theirs = queue.clone();
        let checkpoints = Checkpointer::start(path.clone(), options.busy_timeout)?;
        let thread = std::thread::Builder::new()
            .name("toolhost-sqlite".into())
            .spawn(move || owner_loop(conn, rx, &theirs, options, checkpoints))?;
        Ok(Handle {
            path,
            queue,
            thread: Some(thread),
        })
    }

    /// The way to the owner thread, for the reader's [`Queue::settle`].
    pub(crate) fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// Runs `work` in the next batch and answers once it is on disk.
    pub(crate) async fn run<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.queue.run_with(Durability::Synced, work).await
    }

    /// Queues `work` (`what` it records, for the log if it fails) without
    /// waiting for it: it commits within [`GROUP_WINDOW`], before any job
    /// queued after it, unsynced. Only for records whose loss in a crash is
    /// harmless.
    pub(crate) fn write_behind<F>(&self, what: &'static str, work: F)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        self.write_behind_then(what, work, || {});
    }

    /// [`Handle::write_behind`], then `after` once the write's fate is
    /// known: committed, failed, or dropped past [`MAX_BEHIND`].
    pub(crate) fn write_behind_then<F, A>(&self, what: &'static str, work: F, after: A)
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
        A: FnOnce() + Send + 'static,
    {
        let job = Box::new(Behind {
            work,
            after,
            what,
            path: self.path.clone(),
            busy_timeout: self.queue.busy_timeout,
        });
        let first = {
            let mut behind = lock(&self.queue.behind);
            if behind.len() >= MAX_BEHIND {
                drop(behind);
                tracing::debug!("{what} dropped: {MAX_BEHIND} writes are already waiting");
                (job.after)();
                return;
            }
            self.queue.pending.fetch_add(1, Ordering::AcqRel);
            behind.push(job);
            behind.len() == 1
        };
        // Only the first write of a window wakes the owner thread.
        if first {
            let _ = self.queue.tx.send(Msg::Behind);
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The loop commits what is queued, then ends.
        let _ = self.queue.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A queue of jobs: a panic while held leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    rx: mpsc::Receiver<Msg>,
    queue: &Queue,
    options: StoreOptions,
    checkpoints: Checkpointer,
) {
    let sqlite = |e| StoreError::from_sqlite(&queue.path, options.busy_timeout, e);
    let mut commits: u64 = 0;
    // The connection was opened with `synchronous=FULL`.
    let mut synced = true;
    let mut open = true;
    while open {
        let mut waited: Vec<Box<dyn Job>> = Vec::new();
        match rx.recv() {
            Ok(Msg::Job(job)) => waited.push(job),
            Ok(Msg::Behind) => {
                // Let the window fill, unless a waited-for job comes first.
                let until = Instant::now() + GROUP_WINDOW;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(Msg::Job(job)) => {
                            waited.push(job);
                            break;
                        }
                        Ok(Msg::Behind) => {}
                        Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            open = false;
                            break;
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                    }
                }
            }
            Ok(Msg::Stop) | Err(_) => open = false,
        }
        while open && waited.len() < options.max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => waited.push(job),
                Ok(Msg::Behind) => {}
                Ok(Msg::Stop) | Err(mpsc::TryRecvError::Disconnected) => open = false,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        // Taken after the waited-for jobs were received, so every write
        // behind queued before them is in front of them.
        let behind = queue.take_behind();
        let n_behind = behind.len();
        let batch: Vec<Box<dyn Job>> = behind.into_iter().chain(waited).collect();
        if !batch.is_empty() {
            commit(&conn, batch, &mut synced, &sqlite, options.busy_timeout);
            commits += 1;
            if commits.is_multiple_of(checkpoint::EVERY) {
                checkpoints.nudge();
            }
        }
        queue.pending.fetch_sub(n_behind, Ordering::AcqRel);
    }
}

/// Runs `batch` in one transaction and delivers each job's result.
fn commit(
    conn: &Connection,
    batch: Vec<Box<dyn Job>>,
    synced: &mut bool,
    sqlite: &dyn Fn(rusqlite::Error) -> StoreError,
    busy_timeout: Duration,
) {
    // A batch is synced if any job in it must be. The level can only change
    // between transactions; a synced commit fsyncs the whole WAL, so it also
    // makes every lossy commit before it durable.
    let durable = batch.iter().any(|job| job.durable());
    if durable != *synced {
        let level = if durable { "FULL" } else { "NORMAL" };
        match conn.execute_cached(&format!("PRAGMA synchronous = {level}"), []) {
            Ok(_) => *synced = durable,
            Err(e) => {
                // Never answer a synced job from an unsynced commit.
                let e = sqlite(e);
                for job in batch {
                    job.fail(e.clone());
                }
                return;
            }
        }
    }
    // BEGIN IMMEDIATE takes the write lock up front, so a claim's
    // check-then-insert cannot interleave with another process's.
    let begin = super::retry_busy(busy_timeout, || {
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
        return;
    }
    let deliveries: Vec<Deliver> = batch.into_iter().map(|job| job.run(conn)).collect();
    let committed = conn.execute_cached("COMMIT", []).map(drop).map_err(sqlite);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for deliver in deliveries {
        deliver(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::super::reader::Reader;
    use super::*;

    fn start(dir: &tempfile::TempDir) -> (Handle, PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        let handle = Handle::start(conn, path.clone(), StoreOptions::default()).unwrap();
        (handle, path)
    }

    fn insert(x: i64) -> impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static {
        move |c| c.execute("INSERT INTO t (x) VALUES (?1)", [x]).map(drop)
    }

    fn count(c: &Connection) -> rusqlite::Result<i64> {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
    }

    #[tokio::test]
    async fn a_write_behind_is_read_back_by_this_process_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, path) = start(&dir);
        let reader = Arc::new(Reader::open(&path, Duration::from_secs(5), handle.queue()).unwrap());
        handle.write_behind("a row", insert(7));
        // No wait of the test's own: the read waits for the write.
        assert_eq!(reader.read(count).await.unwrap(), 1);
        assert_eq!(handle.queue().pending(), 0);
    }

    #[tokio::test]
    async fn a_waited_job_sees_every_write_behind_queued_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, _path) = start(&dir);
        for x in 0..50 {
            handle.write_behind("a row", insert(x));
        }
        assert_eq!(handle.run(count).await.unwrap(), 50);
    }

    #[tokio::test]
    async fn dropping_the_handle_commits_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, path) = start(&dir);
        for x in 0..20 {
            handle.write_behind("a row", insert(x));
        }
        drop(handle);
        assert_eq!(count(&Connection::open(&path).unwrap()).unwrap(), 20);
    }

    #[tokio::test]
    async fn a_failing_write_behind_leaves_the_others_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, _path) = start(&dir);
        handle.write_behind("a row", insert(1));
        handle.write_behind("a bad row", |c| {
            c.execute("INSERT INTO t (x) VALUES (1)", [])?;
            c.execute("INSERT INTO missing (x) VALUES (1)", [])
                .map(drop)
        });
        handle.write_behind("a row", insert(2));
        // The bad job's first insert is rolled back with its savepoint.
        assert_eq!(handle.run(count).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn past_the_bound_writes_behind_are_dropped_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, _path) = start(&dir);
        // Hold the owner thread inside a job, so nothing queued is taken.
        let (inside, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let (i, r) = (inside.clone(), release.clone());
        let queue = handle.queue();
        let held = tokio::spawn(async move {
            queue
                .run_with(Durability::Synced, move |_| {
                    i.wait();
                    r.wait();
                    Ok(())
                })
                .await
        });
        tokio::task::spawn_blocking(move || inside.wait())
            .await
            .unwrap();
        for x in 0..(MAX_BEHIND as i64 + 10) {
            handle.write_behind("a row", insert(x));
        }
        assert_eq!(handle.queue().pending(), MAX_BEHIND);
        tokio::task::spawn_blocking(move || release.wait())
            .await
            .unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(handle.run(count).await.unwrap(), MAX_BEHIND as i64);
    }
}
