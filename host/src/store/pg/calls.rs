//! The `calls` table on PostgreSQL: claims as leases with fencing tokens.
//!
//! The contract is SQLite's (`store/calls.rs`); only the mechanics differ.
//! A claim is `INSERT … ON CONFLICT DO NOTHING`: the unique key (and the
//! unique explicit scope) make exactly one inserter win, with no lock held
//! beyond that one statement. Everything after is a conditional `UPDATE`
//! or `DELETE` whose `WHERE` names what the writer believes (owner, fence,
//! state, an expired lease), so a write based on a stale read changes
//! nothing instead of something wrong:
//!
//! - `complete` / `release`: `owner = me AND fence = mine AND state =
//!   'running'`. A holder whose claim was taken over finds a newer fence
//!   and gets [`Held::Fenced`].
//! - marking another owner's claim `in_doubt`, or taking it over: `lease_until
//!   < toolhost_now_ms()` (the owner's heartbeat stopped), and the fence the
//!   waiter saw.
//! - take-over draws a new fence from the `calls_fence` sequence.
//!
//! A statement whose connection dropped is retried (see `retrying!`); each
//! write recognises its own first attempt if that one committed and only
//! the reply was lost: a claim by its `claim_nonce`, a `complete` by the
//! outcome it wrote, a `release` by the row being gone.

use tokio_postgres::Row;

use super::super::calls::{
    CallRecord, CallState, ClaimOutcome, ClaimRequest, EXPLICIT_SCOPE_PREFIX, Held, StoredOutcome,
    TakenOver, explicit_answer, not_held,
};
use super::super::{Liveness, StoreError};
use super::PgStore;

pub(super) const COLUMNS: &str = "key, tool, effect, scope, input, state, owner, attempt, outcome, created_at, completed_at, expires_at, component_digest, policy_digest, limits, fence";

pub(super) fn record(row: &Row) -> CallRecord {
    let outcome: Option<String> = row.get(8);
    let attempt: i32 = row.get(7);
    CallRecord {
        key: row.get(0),
        tool: row.get(1),
        effect: row.get(2),
        scope: row.get(3),
        input: row.get(4),
        state: CallState::parse(row.get(5)),
        owner: row.get(6),
        attempt: attempt.max(0) as u32,
        // As on SQLite: an outcome this build cannot parse replays as nothing.
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        created_at: row.get(9),
        completed_at: row.get(10),
        expires_at: row.get(11),
        component_digest: row.get(12),
        policy_digest: row.get(13),
        limits: row.get(14),
        fence: row.get(15),
    }
}

pub(super) fn to_json(outcome: &StoredOutcome) -> String {
    // A struct of strings, numbers and JSON values always serialises.
    serde_json::to_string(outcome).unwrap_or_else(|_| "null".to_string())
}

/// A random claim nonce (63 bits; never 0).
fn nonce() -> i64 {
    (rand::random::<u64>() >> 1).max(1) as i64
}

/// The explicit-scope rule (see `store/calls.rs::explicit_scope`).
async fn explicit_scope(
    c: &deadpool_postgres::Object,
    req: &ClaimRequest,
) -> Result<Option<ClaimOutcome>, tokio_postgres::Error> {
    if !req.scope.starts_with(EXPLICIT_SCOPE_PREFIX) {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE scope = $1 AND scope LIKE 'key:%'");
    let stmt = c.prepare_cached(&sql).await?;
    let found = c
        .query_opt(&stmt, &[&req.scope])
        .await?
        .as_ref()
        .map(record);
    Ok(found.and_then(|row| explicit_answer(row, req)))
}

pub(super) async fn get_row(
    c: &deadpool_postgres::Object,
    key: &str,
) -> Result<Option<CallRecord>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE key = $1");
    let stmt = c.prepare_cached(&sql).await?;
    Ok(c.query_opt(&stmt, &[&key]).await?.as_ref().map(record))
}

impl PgStore {
    pub(crate) async fn get(&self, key: &str) -> Result<Option<CallRecord>, StoreError> {
        retrying!(self, |client, _retry| get_row(&client, key))
    }

    /// Claims `req.key` for `req.owner` (this store's owner, for every
    /// caller but tests; see the module docs).
    pub(crate) async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let nonce = nonce();
        let owner = req.owner.clone();
        let lease = self.lease.as_millis() as i64;
        retrying!(self, |client, _retry| async {
            loop {
                let insert = client
                    .prepare_cached(
                        "INSERT INTO calls (key, tool, effect, scope, input, state, owner, attempt,
                                            created_at, component_digest, policy_digest, limits,
                                            fence, lease_until, claim_nonce)
                         VALUES ($1, $2, $3, $4, $5, 'running', $6, 1, $7, $8, $9, $10,
                                 nextval('calls_fence'), toolhost_now_ms() + $11, $12)
                         ON CONFLICT DO NOTHING
                         RETURNING fence",
                    )
                    .await?;
                let inserted = client
                    .query_opt(
                        &insert,
                        &[
                            &req.key,
                            &req.tool,
                            &req.effect,
                            &req.scope,
                            &req.input,
                            &owner,
                            &req.now_ms,
                            &req.component_digest,
                            &req.policy_digest,
                            &req.limits,
                            &lease,
                            &nonce,
                        ],
                    )
                    .await?;
                if let Some(row) = inserted {
                    return Ok(ClaimOutcome::Acquired {
                        attempt: 1,
                        fence: row.get(0),
                    });
                }
                if let Some(found) = explicit_scope(&client, req).await? {
                    return Ok(found);
                }
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS}, claim_nonce FROM calls WHERE key = $1"
                    ))
                    .await?;
                let Some(found) = client.query_opt(&stmt, &[&req.key]).await? else {
                    continue; // Deleted since the insert: try again.
                };
                let row = record(&found);
                let row_nonce: Option<i64> = found.get(16);
                if row.state == CallState::Running
                    && row.owner.as_deref() == Some(owner.as_str())
                    && row_nonce == Some(nonce)
                {
                    // Our own insert committed before the connection dropped.
                    return Ok(ClaimOutcome::Acquired {
                        attempt: row.attempt,
                        fence: row.fence,
                    });
                }
                if row.state == CallState::Done && row.expired(req.now_ms) {
                    // An expired record: replaced by a new claim.
                    client
                        .execute(
                            "DELETE FROM calls WHERE key = $1 AND state = 'done' AND fence = $2",
                            &[&req.key, &row.fence],
                        )
                        .await?;
                    continue;
                }
                return Ok(ClaimOutcome::Existing(Box::new(row)));
            }
        })
    }

    /// Looks `req.key` up without claiming it.
    pub(crate) async fn lookup(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        retrying!(self, |client, _retry| async {
            if let Some(found) = explicit_scope(&client, req).await? {
                return Ok(found);
            }
            Ok(match get_row(&client, &req.key).await? {
                Some(row)
                    if row.state == CallState::Done
                        && !row.expired(req.now_ms)
                        && row.outcome.is_some() =>
                {
                    ClaimOutcome::Existing(Box::new(row))
                }
                _ => ClaimOutcome::Acquired {
                    attempt: 1,
                    fence: 0,
                },
            })
        })
    }

    /// Records an unclaimed (pure or read-only) outcome; never over a
    /// running claim, nor over another call's explicit key.
    pub(crate) async fn put(
        &self,
        req: &ClaimRequest,
        outcome: &StoredOutcome,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let outcome = to_json(outcome);
        retrying!(self, |client, _retry| async {
            if explicit_scope(&client, req).await?.is_some() {
                return Ok(());
            }
            let stmt = client
                .prepare_cached(
                    "INSERT INTO calls (key, tool, effect, scope, input, state, attempt, outcome,
                                        created_at, completed_at, expires_at, component_digest,
                                        policy_digest, limits, fence)
                     VALUES ($1, $2, $3, $4, $5, 'done', 1, $6, $7, $7, $8, $9, $10, $11,
                             nextval('calls_fence'))
                     ON CONFLICT (key) DO UPDATE SET
                         state = 'done', outcome = excluded.outcome,
                         created_at = excluded.created_at, completed_at = excluded.completed_at,
                         expires_at = excluded.expires_at, policy_digest = excluded.policy_digest,
                         limits = excluded.limits
                     WHERE calls.state = 'done'",
                )
                .await?;
            let written = client
                .execute(
                    &stmt,
                    &[
                        &req.key,
                        &req.tool,
                        &req.effect,
                        &req.scope,
                        &req.input,
                        &outcome,
                        &req.now_ms,
                        &expires_at,
                        &req.component_digest,
                        &req.policy_digest,
                        &req.limits,
                    ],
                )
                .await;
            match written {
                Ok(_) => Ok(()),
                // Another caller took the explicit scope meanwhile: its row
                // answers; this one is a cache write and may be skipped.
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Records the outcome of this owner's claim under `fence`.
    pub(crate) async fn complete(
        &self,
        key: &str,
        fence: i64,
        state: CallState,
        outcome: &StoredOutcome,
        now_ms: i64,
        expires_at: Option<i64>,
    ) -> Result<Held, StoreError> {
        let text = to_json(outcome);
        let owner = self.owner_id();
        let state_name = state.as_str();
        retrying!(self, |client, retry| async {
            let stmt = client
                .prepare_cached(
                    "UPDATE calls SET state = $3, outcome = $4, completed_at = $5, expires_at = $6,
                                      owner = NULL, lease_until = NULL
                     WHERE key = $1 AND owner = $2 AND state = 'running' AND fence = $7",
                )
                .await?;
            let changed = client
                .execute(
                    &stmt,
                    &[
                        &key,
                        &owner,
                        &state_name,
                        &text,
                        &now_ms,
                        &expires_at,
                        &fence,
                    ],
                )
                .await?;
            if changed > 0 {
                return Ok(Held::Yes);
            }
            let row = get_row(&client, key).await?;
            if retry
                && let Some(r) = &row
                && r.fence == fence
                && r.state == state
                && r.outcome.as_ref() == Some(outcome)
            {
                // The first try committed; only its reply was lost.
                return Ok(Held::Yes);
            }
            Ok(not_held(row.as_ref(), fence))
        })
    }

    /// Drops this owner's claim under `fence`.
    pub(crate) async fn release(&self, key: &str, fence: i64) -> Result<Held, StoreError> {
        let owner = self.owner_id();
        retrying!(self, |client, retry| async {
            let changed = client
                .execute(
                    "DELETE FROM calls WHERE key = $1 AND owner = $2 AND state = 'running' AND fence = $3",
                    &[&key, &owner, &fence],
                )
                .await?;
            if changed > 0 {
                return Ok(Held::Yes);
            }
            let row = get_row(&client, key).await?;
            if retry && row.is_none() {
                // A running claim of ours goes only by our own release: the
                // first try committed.
                return Ok(Held::Yes);
            }
            Ok(not_held(row.as_ref(), fence))
        })
    }

    /// Moves `owner`'s running claim under `fence` to `in_doubt`: this
    /// owner's at once; another owner's only once its lease has expired.
    pub(crate) async fn mark_in_doubt(
        &self,
        key: &str,
        owner: &str,
        fence: i64,
    ) -> Result<bool, StoreError> {
        let me = self.owner_id();
        retrying!(self, |client, _retry| async {
            let changed = client
                .execute(
                    "UPDATE calls SET state = 'in_doubt', lease_until = NULL
                     WHERE key = $1 AND owner = $2 AND fence = $3 AND state = 'running'
                       AND (owner = $4 OR lease_until < toolhost_now_ms())",
                    &[&key, &owner, &fence, &me],
                )
                .await?;
            Ok(changed > 0)
        })
    }

    /// After the recording path failed: this owner's claim to `in_doubt`.
    /// Every statement already runs on a checked (or new) connection, so
    /// "fresh" needs nothing more here.
    pub(crate) async fn mark_in_doubt_fresh(
        &self,
        key: &str,
        fence: i64,
    ) -> Result<bool, StoreError> {
        let me = self.owner_id().to_string();
        self.mark_in_doubt(key, &me, fence).await
    }

    /// Whether the running claim (`key`, `owner`, `fence`) is alive: its
    /// lease has not expired on the database's clock. A row that is no
    /// longer that claim counts as dead: the caller looks again.
    pub(crate) async fn claim_alive(&self, key: &str, owner: &str, fence: i64) -> Liveness {
        if owner == self.owner_id() {
            return Liveness::Alive;
        }
        let found = retrying!(self, |client, _retry| async move {
            client
                .query_opt(
                    "SELECT lease_until > toolhost_now_ms() FROM calls
                     WHERE key = $1 AND owner = $2 AND fence = $3 AND state = 'running'",
                    &[&key, &owner, &fence],
                )
                .await
        });
        match found {
            Ok(Some(row)) if row.get::<_, Option<bool>>(0) == Some(true) => Liveness::Alive,
            Ok(_) => Liveness::Dead,
            Err(e) => Liveness::Unknown(e.to_string()),
        }
    }

    /// Takes a claim over with the next attempt and a new fence: a dead
    /// owner's running claim (`from`, lease expired), or an `in_doubt` one.
    pub(crate) async fn take_over(
        &self,
        key: &str,
        from: Option<&str>,
        now_ms: i64,
        build: &(String, String),
    ) -> Result<Option<TakenOver>, StoreError> {
        let me = self.owner_id();
        let lease = self.lease.as_millis() as i64;
        let nonce = nonce();
        retrying!(self, |client, retry| async {
            let taken =
                match from {
                    Some(dead) => {
                        client
                            .query_opt(
                                "UPDATE calls SET owner = $3, attempt = attempt + 1,
                                 fence = nextval('calls_fence'), created_at = $4,
                                 component_digest = $5, policy_digest = $6,
                                 lease_until = toolhost_now_ms() + $7, claim_nonce = $8
                             WHERE key = $1 AND owner = $2 AND state = 'running'
                               AND lease_until < toolhost_now_ms()
                             RETURNING attempt, fence",
                                &[
                                    &key, &dead, &me, &now_ms, &build.0, &build.1, &lease, &nonce,
                                ],
                            )
                            .await?
                    }
                    None => client
                        .query_opt(
                            "UPDATE calls SET state = 'running', owner = $2, attempt = attempt + 1,
                                 fence = nextval('calls_fence'), outcome = NULL, created_at = $3,
                                 completed_at = NULL, component_digest = $4, policy_digest = $5,
                                 lease_until = toolhost_now_ms() + $6, claim_nonce = $7
                             WHERE key = $1 AND state = 'in_doubt'
                             RETURNING attempt, fence",
                            &[&key, &me, &now_ms, &build.0, &build.1, &lease, &nonce],
                        )
                        .await?,
                };
            if let Some(row) = taken {
                let attempt: i32 = row.get(0);
                return Ok(Some(TakenOver {
                    attempt: attempt.max(0) as u32,
                    fence: row.get(1),
                }));
            }
            if retry {
                let again = client
                    .query_opt(
                        "SELECT attempt, fence FROM calls
                         WHERE key = $1 AND owner = $2 AND claim_nonce = $3 AND state = 'running'",
                        &[&key, &me, &nonce],
                    )
                    .await?;
                if let Some(row) = again {
                    let attempt: i32 = row.get(0);
                    return Ok(Some(TakenOver {
                        attempt: attempt.max(0) as u32,
                        fence: row.get(1),
                    }));
                }
            }
            Ok(None)
        })
    }
}
