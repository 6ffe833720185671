//! The one test world: a temp directory with `data/` (what tests grant to
//! the tools that write) and a store, a SQLite file in the directory or a
//! fresh database on a throwaway PostgreSQL cluster. The store contract
//! tests (`on_both_backends!`) run their body once on each.
//!
//! The core is here; each area adds what only it needs in its own
//! `impl World` (the idempotency tests an executor over the test kit, the
//! agent tests a config with a model chain and an agent).

use std::path::{Path, PathBuf};

use toolhost::store::{Store, StoreLocation, StoreOptions};

/// Which store a world runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The lease of claims and runs on PostgreSQL in these tests: short, so a
/// dead (or killed) owner is seen dead and its run resumed soon, and long
/// enough for a busy machine's heartbeats (renewed every third of it).
pub const TEST_LEASE: std::time::Duration = std::time::Duration::from_millis(1_200);

/// [`TEST_LEASE`] in milliseconds, as `[store] lease_ms` takes it.
pub const TEST_LEASE_MS: u64 = TEST_LEASE.as_millis() as u64;

/// A temp directory with `data/`, a store, and (for the agent tests) the
/// tools to load and extra config.
pub struct World {
    root: PathBuf,
    /// `None`: SQLite at `db()`. `Some(url)`: that PostgreSQL database.
    pub pg: Option<String>,
    /// Where the tools load from (the examples unless a test copies its own).
    pub tools: PathBuf,
    /// Extra TOML appended to the config the agent tests write.
    pub extra: String,
    /// Removes the directory at the end, in the process that made it.
    _owned: Option<tempfile::TempDir>,
}

impl World {
    /// A world on a SQLite file.
    pub fn new() -> World {
        World::on(Backend::Sqlite)
    }

    /// A world whose store is `backend`: a SQLite file in the directory, or
    /// a fresh database in the shared PostgreSQL cluster.
    pub fn on(backend: Backend) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        World {
            root: dir.path().to_path_buf(),
            pg: (backend == Backend::Postgres).then(crate::support::pg::fresh_db),
            tools: crate::support::examples_dir(),
            extra: String::new(),
            _owned: Some(dir),
        }
    }

    /// A world whose store is a fresh database in the shared PostgreSQL
    /// cluster.
    pub fn postgres() -> World {
        World::on(Backend::Postgres)
    }

    /// A world whose store is the PostgreSQL database at `url`.
    pub fn postgres_at(url: String) -> World {
        World {
            pg: Some(url),
            ..World::new()
        }
    }

    /// A world on a database of `cluster` (a private one, for tests that
    /// stop the server).
    pub fn on_cluster(cluster: &crate::support::pg::Cluster) -> World {
        World::postgres_at(cluster.fresh_db())
    }

    /// Another process's world (a child's view of its parent's directory):
    /// it does not remove the directory.
    pub fn at(root: PathBuf) -> World {
        World {
            root,
            pg: None,
            tools: crate::support::examples_dir(),
            extra: String::new(),
            _owned: None,
        }
    }

    /// The PostgreSQL URL, if this world's store is one.
    pub fn pg_url(&self) -> Option<&str> {
        self.pg.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("toolhost.db")
    }

    /// The lines of `data/<file>` (none if it does not exist).
    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.data().join(file))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The `[store]` lines of a config for this world's store.
    pub fn store_toml(&self) -> String {
        match &self.pg {
            Some(url) => format!("url = {url:?}\nlease_ms = {TEST_LEASE_MS}\n"),
            None => format!("path = {:?}\n", self.db()),
        }
    }

    /// Options matching [`World::store_toml`].
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            lease: TEST_LEASE,
            ..StoreOptions::default()
        }
    }

    /// Opens a store on this world's database: each call is a new store
    /// (a new claim owner: another "host").
    pub async fn store(&self) -> Store {
        let location = match &self.pg {
            Some(url) => StoreLocation::Postgres(url.clone()),
            None => StoreLocation::Sqlite(self.db()),
        };
        Store::open_at(&location, self.store_options())
            .await
            .unwrap()
    }

    /// How many rows `sql` (a `SELECT 1 FROM ...` that both SQLite and
    /// PostgreSQL read alike) returns from the store; 0 if the store has no
    /// such table yet (the run was killed before the database was made).
    pub fn rows(&self, sql: &str) -> usize {
        match &self.pg {
            Some(url) => {
                let (url, sql) = (url.clone(), sql.to_string());
                // On its own thread: callers may be inside a runtime.
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                            .await
                            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
                        let conn = tokio::spawn(conn);
                        // No table yet: no toolhost has migrated the database.
                        let n = client.query(sql.as_str(), &[]).await.map_or(0, |r| r.len());
                        drop(client);
                        let _ = conn.await;
                        n
                    })
                })
                .join()
                .unwrap()
            }
            None => {
                let Ok(c) = rusqlite::Connection::open_with_flags(
                    self.db(),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                ) else {
                    return 0;
                };
                let Ok(mut stmt) = c.prepare(sql) else {
                    return 0;
                };
                stmt.query_map([], |_| Ok(()))
                    .map_or(0, |rows| rows.count())
            }
        }
    }
}
