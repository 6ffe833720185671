//! Unique prefixes on PostgreSQL (see `store/prefix.rs`).
//!
//! `LIKE 'p%'` with the pattern's own `%`, `_` and `\` escaped. The keys
//! and run ids are ASCII, and PostgreSQL uses a btree index for a
//! left-anchored `LIKE` only under the C collation, so the comparison is
//! made `COLLATE "C"`: a range scan of the primary key whatever the
//! database's default collation is.

use super::PgStore;
use crate::store::StoreError;
use crate::store::prefix::Prefixed;

impl PgStore {
    /// Up to `limit` keys (or run ids) starting with `prefix`, an exact
    /// match first.
    pub(crate) async fn with_prefix(
        &self,
        what: Prefixed,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let sql = match what {
            Prefixed::CallKey => {
                "SELECT key FROM calls WHERE key COLLATE \"C\" LIKE $1
                 ORDER BY key <> $2, key COLLATE \"C\" LIMIT $3"
            }
            Prefixed::RunId => {
                "SELECT id FROM runs WHERE id COLLATE \"C\" LIKE $1
                 ORDER BY id <> $2, id COLLATE \"C\" LIMIT $3"
            }
        };
        let limit = limit as i64;
        let rows = retrying!(self, |client, _retry| async {
            client.query(sql, &[&pattern, &prefix, &limit]).await
        })?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
}
