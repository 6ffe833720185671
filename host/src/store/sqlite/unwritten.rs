//! Results written behind and not yet committed, as this process's own
//! lookups must see them.
//!
//! A pure or read-only result is written behind (`worker.rs`): the call is
//! answered before its row commits. Until it does, a lookup in this process
//! reads the row from here, so what this process does next is what it would
//! do were the row committed: the same input replays, an explicit key reused
//! with another input is a conflict, a read-only result's time to live runs
//! from when it was recorded. Another process may miss the row for the few
//! milliseconds before the commit, as it would have had its lookup come a
//! little earlier: for these records that costs a recompute.
//!
//! One per database file per process ([`for_path`]): a second store opened
//! on the same file in this process (a CLI command beside a server's, a
//! test's second executor) looks up the first one's rows here too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::store::calls::{EXPLICIT_SCOPE_PREFIX, explicit_answer};
use crate::store::{CallRecord, CallState, ClaimOutcome, ClaimRequest};

/// The held rows of the database at `path` (canonical), shared by every
/// store this process has open on it.
pub(crate) fn for_path(path: &Path) -> Arc<Unwritten> {
    static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Unwritten>>>> =
        LazyLock::new(Default::default);
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|_, held| held.strong_count() > 0);
    if let Some(held) = open.get(&path).and_then(Weak::upgrade) {
        return held;
    }
    let held = Arc::new(Unwritten::default());
    open.insert(path, Arc::downgrade(&held));
    held
}

#[derive(Default)]
pub(crate) struct Unwritten {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each row by key, with the number of the write that put it here.
    by_key: HashMap<String, (u64, CallRecord)>,
    /// The key of the row recorded under each explicit scope.
    by_scope: HashMap<String, String>,
    next: u64,
}

impl Unwritten {
    /// Keeps `row` until [`Unwritten::committed`] is told the write's
    /// number, which this returns.
    pub(crate) fn hold(&self, row: CallRecord) -> u64 {
        let mut inner = self.lock();
        inner.next += 1;
        let n = inner.next;
        if row.scope.starts_with(EXPLICIT_SCOPE_PREFIX) {
            inner.by_scope.insert(row.scope.clone(), row.key.clone());
        }
        inner.by_key.insert(row.key.clone(), (n, row));
        n
    }

    /// The write numbered `n` of `key` has committed (or failed): the store
    /// answers for it from now on. A later write of the same key stays.
    pub(crate) fn committed(&self, key: &str, n: u64) {
        let mut inner = self.lock();
        if inner.by_key.get(key).is_some_and(|(m, _)| *m == n)
            && let Some((_, row)) = inner.by_key.remove(key)
            && inner.by_scope.get(&row.scope) == Some(&row.key)
        {
            inner.by_scope.remove(&row.scope);
        }
    }

    /// What `calls::lookup` would answer were the held rows committed, when
    /// a held row decides it; `None` sends the lookup to the database.
    pub(crate) fn lookup(&self, req: &ClaimRequest) -> Option<ClaimOutcome> {
        let inner = self.lock();
        if inner.by_key.is_empty() {
            return None;
        }
        if req.scope.starts_with(EXPLICIT_SCOPE_PREFIX)
            && let Some(key) = inner.by_scope.get(&req.scope)
            && let Some((_, row)) = inner.by_key.get(key)
            && let Some(answer) = explicit_answer(row.clone(), req)
        {
            return Some(answer);
        }
        match inner.by_key.get(&req.key) {
            Some((_, row))
                if row.state == CallState::Done
                    && !row.expired(req.now_ms)
                    && row.outcome.is_some() =>
            {
                Some(ClaimOutcome::Existing(Box::new(row.clone())))
            }
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain maps: a panic while held leaves them usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredOutcome;

    fn request(key: &str, scope: &str, input: &str, now_ms: i64) -> ClaimRequest {
        ClaimRequest {
            key: key.into(),
            tool: "calc".into(),
            effect: "pure".into(),
            scope: scope.into(),
            input: input.into(),
            owner: "me".into(),
            now_ms,
            component_digest: "c".into(),
            policy_digest: "p".into(),
            limits: "{}".into(),
        }
    }

    fn held(req: &ClaimRequest, expires: Option<i64>) -> CallRecord {
        let outcome = StoredOutcome {
            ok: true,
            output: Some(serde_json::json!({"value": 1})),
            error: None,
            fuel_used: 1,
            duration_us: 1,
            resolutions: Vec::new(),
        };
        CallRecord::recorded(req.clone(), outcome, expires)
    }

    #[test]
    fn a_held_row_answers_as_the_committed_row_would() {
        let u = Unwritten::default();
        let first = request("k1", "key:op", r#"{"a":1}"#, 10);
        let n = u.hold(held(&first, Some(100)));
        // The same call replays.
        assert!(matches!(u.lookup(&first), Some(ClaimOutcome::Existing(_))));
        // The explicit key with another input is a conflict.
        let other = request("k2", "key:op", r#"{"a":2}"#, 20);
        assert!(matches!(
            u.lookup(&other),
            Some(ClaimOutcome::Conflict { existing_key, .. }) if existing_key == "k1"
        ));
        // Past its time to live it answers nothing: the database decides.
        assert!(
            u.lookup(&request("k1", "key:op", r#"{"a":1}"#, 100))
                .is_none()
        );
        u.committed("k1", n);
        assert!(u.lookup(&first).is_none() && u.lookup(&other).is_none());
    }

    #[test]
    fn an_older_write_committing_leaves_a_newer_one_held() {
        let u = Unwritten::default();
        let req = request("k", "", "{}", 1);
        let old = u.hold(held(&req, None));
        let new = u.hold(held(&req, None));
        u.committed("k", old);
        assert!(
            u.lookup(&req).is_some(),
            "the newer write is still on its way"
        );
        u.committed("k", new);
        assert!(u.lookup(&req).is_none());
    }
}
