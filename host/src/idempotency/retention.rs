//! How long a recorded outcome answers: the expiry policy.
//!
//! | row | kept for | why |
//! |---|---|---|
//! | `read-only` | `ttl_s` (default 300 s) | the world it read changes |
//! | `pure` | 30 days | it never changes, but the disk is not free; a miss re-computes it |
//! | explicit `--idempotency-key` (not pure) | 30 days | a client retrying a payment days later must still get its answer |
//! | empty scope (not pure) | `idempotency_window_s` (default 24 h) | "the same input" means the same call only for so long |
//! | `--no-cache` | 24 h | never hit again; kept so `cache list` shows it |
//! | agent step | until `cache gc --older-than` | the run's journal relies on it |
//! | `in_doubt`, `running` | until resolved | an operator decides, not a clock |
//!
//! An expired row is a miss (the call runs again) and `cache gc` removes it.

use std::time::Duration;

use super::Scope;
use crate::config::{EffectName, ToolPolicy};

/// Read-only results stay fresh this long unless the policy says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// A non-pure call with the empty scope replays for this long by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(86_400);
/// Pure outcomes are kept this long.
pub const PURE_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// Outcomes under an explicit idempotency key are kept this long.
pub const EXPLICIT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// `--no-cache` outcomes are kept this long (for `cache list` only).
pub const FRESH_RETENTION: Duration = Duration::from_secs(86_400);

/// When an outcome recorded at `now_ms` expires (Unix ms), or `None`.
pub(crate) fn expiry(
    effect: EffectName,
    scope: &Scope,
    policy: Option<&ToolPolicy>,
    now_ms: i64,
) -> Option<i64> {
    let at = |d: Duration| now_ms.saturating_add(d.as_millis() as i64);
    match (effect, scope) {
        (EffectName::ReadOnly, _) => Some(at(policy
            .and_then(|p| p.ttl_s)
            .map_or(DEFAULT_TTL, Duration::from_secs))),
        (EffectName::Pure, _) => Some(at(PURE_RETENTION)),
        (_, Scope::Explicit(_)) => Some(at(EXPLICIT_RETENTION)),
        (_, Scope::Fresh) => Some(at(FRESH_RETENTION)),
        (_, Scope::Empty) => Some(at(policy
            .and_then(|p| p.idempotency_window_s)
            .map_or(DEFAULT_WINDOW, Duration::from_secs))),
        (_, Scope::Step { .. }) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_kind_has_its_documented_expiry() {
        let day = 86_400_000;
        let policy = ToolPolicy {
            ttl_s: Some(60),
            idempotency_window_s: Some(3_600),
            ..ToolPolicy::default()
        };
        let p = Some(&policy);
        let key = Scope::Explicit("k".into());
        let step = Scope::Step {
            run_id: "r".into(),
            step: 1,
            index: 0,
        };
        assert_eq!(expiry(EffectName::ReadOnly, &key, p, 0), Some(60_000));
        assert_eq!(
            expiry(EffectName::ReadOnly, &Scope::Empty, None, 0),
            Some(300_000)
        );
        assert_eq!(
            expiry(EffectName::Pure, &Scope::Empty, p, 0),
            Some(30 * day)
        );
        assert_eq!(
            expiry(EffectName::SideEffecting, &key, p, 0),
            Some(30 * day)
        );
        assert_eq!(
            expiry(EffectName::Idempotent, &Scope::Fresh, p, 0),
            Some(day)
        );
        assert_eq!(
            expiry(EffectName::SideEffecting, &Scope::Empty, p, 0),
            Some(3_600_000)
        );
        assert_eq!(
            expiry(EffectName::Idempotent, &Scope::Empty, None, 0),
            Some(day)
        );
        assert_eq!(expiry(EffectName::SideEffecting, &step, p, 0), None);
    }
}
