//! Unique prefixes: `cache show 3f2a`, `runs show demo-f`.
//!
//! People copy the short keys tables print, so every command that takes a
//! call key or a run id accepts any prefix of one. The lookup is one small
//! indexed read on the read-only connection: `GLOB 'prefix*'` on the
//! primary key, which SQLite turns into a range scan of the key's index
//! (the `LIKE` optimisation needs a case-insensitive column; `GLOB` is
//! case-sensitive like our keys and uses the BINARY index as it is).

use super::sqlite::Sqlite;
use super::{Backend, Store, StoreError};

/// What a prefix names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefixed {
    /// A recorded call's idempotency key (`calls.key`).
    CallKey,
    /// An agent run's id (`runs.id`).
    RunId,
}

impl Store {
    /// Up to `limit` keys (or run ids) that start with `prefix`, in order.
    /// An exact match, if any, comes first, so an id that is also a prefix
    /// of another (`demo`, `demo-2`) stays reachable.
    pub async fn with_prefix(
        &self,
        what: Prefixed,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => on_sqlite(s, what, prefix, limit).await,
            Backend::Postgres(p) => p.with_prefix(what, prefix, limit).await,
        }
    }
}

/// The SQLite arm of [`Store::with_prefix`]: a `GLOB` on the read-only
/// connection.
async fn on_sqlite(
    s: &Sqlite,
    what: Prefixed,
    prefix: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    // GLOB's own metacharacters, matched literally as one-character sets.
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        match c {
            '*' | '?' | '[' => {
                pattern.push('[');
                pattern.push(c);
                pattern.push(']');
            }
            c => pattern.push(c),
        }
    }
    pattern.push('*');
    let sql = match what {
        Prefixed::CallKey => {
            "SELECT key FROM calls WHERE key GLOB ?1 ORDER BY key <> ?2, key LIMIT ?3"
        }
        Prefixed::RunId => "SELECT id FROM runs WHERE id GLOB ?1 ORDER BY id <> ?2, id LIMIT ?3",
    };
    let prefix = prefix.to_string();
    s.reader
        .read(move |c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params![pattern, prefix, limit as i64], |row| {
                row.get::<_, String>(0)
            })?;
            rows.collect()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefixes_use_the_primary_key_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), Default::default()).unwrap();
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare(
                    "EXPLAIN QUERY PLAN SELECT key FROM calls WHERE key GLOB 'ab*' ORDER BY key LIMIT 5",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("USING") && p.contains("INDEX")),
            "{plan:?}"
        );
        assert!(
            store
                .with_prefix(Prefixed::CallKey, "a*", 5)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
