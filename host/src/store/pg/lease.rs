//! Leases: how hosts that share no file system know a claim's owner died.
//!
//! `flock` cannot see another machine. So each process has its own owner
//! id (`host-pid-random`, never derived from a lock file) and a row in
//! `owners` whose `lease_until` a heartbeat pushes forward every third of
//! the lease. Each `running` claim carries its own `lease_until` too,
//! renewed by the same statement for every claim this owner still holds.
//! A claim whose lease has passed is a dead owner's: a waiter may mark it
//! `in_doubt` (and, where the effect or policy allows, take it over); both
//! writes check the lease in SQL, so a live owner's claim is never taken.
//!
//! Leases are read on the database's clock (`toolhost_now_ms()`), so hosts
//! whose clocks disagree still agree on when a lease ends.
//!
//! A lease alone cannot stop a process that was paused (SIGSTOP, a VM
//! migration, a long GC) from waking after its lease ended and writing its
//! outcome over the new owner's: that is what the fencing token is for
//! (see `calls.rs`). The heartbeat renews only rows still owned by this id
//! and still `running`, so waking up never revives a claim someone took.
//!
//! Agent runs (issue 13, the journal half) add their own renewal statement
//! to [`RENEWALS`].

use std::sync::Arc;
use std::time::Duration;

use super::PgStore;

/// Registers this owner, or renews its lease (re-registering it if a
/// `cache gc` removed the row while the process was paused).
/// `$1` = owner id, `$2` = lease ms, `$3` = host, `$4` = pid, `$5` = whether
/// it adopts interrupted runs (`recovery.rs`).
pub(crate) const REGISTER: &str = "INSERT INTO owners (id, lease_until, host, pid, started_at, recovers)
     VALUES ($1, toolhost_now_ms() + $2, $3, $4, toolhost_now_ms(), $5)
     ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, recovers = excluded.recovers";

/// What else the heartbeat renews, in the same transaction as
/// [`REGISTER`], with `$1` = the owner id and `$2` = the lease in ms: every
/// claim this owner still holds.
pub(crate) const RENEWALS: &[&str] = &[
    "UPDATE calls SET lease_until = toolhost_now_ms() + $2 WHERE owner = $1 AND state = 'running'",
    super::journal::RENEW_RUNS,
];

/// This process's owner id: the host name, the pid, and 64 random bits.
pub(crate) fn owner_id() -> String {
    format!(
        "{}-{}-{}",
        host_name(),
        std::process::id(),
        crate::store::random_hex()
    )
}

/// This machine's name (for owner ids and the `owners` table).
pub(crate) fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    host.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect()
}

/// The heartbeat's period for a lease.
pub(crate) fn period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Renews this owner's lease and its claims' leases until the store is
/// dropped (the task holds only a weak reference).
pub(crate) fn spawn_heartbeat(store: &Arc<PgStore>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(store);
    let every = period(store.lease);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // The first tick is immediate; `open` just registered.
        loop {
            tick.tick().await;
            let Some(store) = weak.upgrade() else { return };
            if let Err(e) = store.renew().await {
                tracing::warn!(store = %store.display(), error = %e, "cannot renew this process's leases; they lapse if this goes on");
            }
        }
    })
}
