//! Both store backends, opened side by side for a bench that compares them.

use toolhost::store::{Store, StoreOptions};

// The tests' throwaway-cluster helper (a durable cluster, fresh databases, a
// reaper that stops the server when this process exits).
#[path = "../../../tests/all/support/pg.rs"]
mod pg;

/// A SQLite store in a temp dir and a PostgreSQL store: the database named
/// by `TOOLHOST_BENCH_PG_URL`, else a fresh one on a durable throwaway
/// cluster. Keep the value alive while the stores are used: it owns the
/// temp dir and the cluster.
pub struct Stores {
    pub sqlite: Store,
    pub postgres: Store,
    _dir: tempfile::TempDir,
    _cluster: Option<pg::Cluster>,
}

pub fn open(rt: &tokio::runtime::Runtime) -> Stores {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sqlite = Store::open(&dir.path().join("bench.db"), StoreOptions::default())
        .expect("open the SQLite store");
    let (url, cluster) = match std::env::var("TOOLHOST_BENCH_PG_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let cluster = pg::Cluster::start_durable();
            (cluster.fresh_db(), Some(cluster))
        }
    };
    let postgres = rt
        .block_on(Store::open_postgres(&url, StoreOptions::default()))
        .expect("open the PostgreSQL store");
    Stores {
        sqlite,
        postgres,
        _dir: dir,
        _cluster: cluster,
    }
}
