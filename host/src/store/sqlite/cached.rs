//! Statements prepared once per connection.
//!
//! Every call runs the same dozen statements; parsing them again each time
//! was about a tenth of a served call's CPU (decision 0092). rusqlite keeps
//! an LRU of prepared statements per connection; these helpers are
//! `execute` and `query_row` through it, so a call site reads as before.

use rusqlite::{Connection, Params, Row};

/// Statements a connection keeps prepared: more than the store has, so none
/// is evicted by another.
pub(crate) const CAPACITY: usize = 64;

pub(crate) trait CachedStatements {
    /// [`Connection::execute`] with the statement from the cache.
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// [`Connection::query_row`] with the statement from the cache.
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
