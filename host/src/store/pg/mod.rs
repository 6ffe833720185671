//! The PostgreSQL backend: one store shared by every toolhost process (on
//! any number of machines) that points at it.
//!
//! Why PostgreSQL rather than a distributed store of our own: teams that run
//! agents on several machines already operate one, and its row locks,
//! unique indexes and transactions give exactly-once claims with plain SQL
//! (as DBOS and Temporal use it). SQLite's `flock` liveness cannot see
//! another host, so here an owner is alive while its lease is (`lease.rs`),
//! and every claim carries a fencing token (`calls.rs`).
//!
//! Layout: `pool` (a bounded deadpool of tokio-postgres clients, TLS via
//! rustls), `migrations` (versioned, under a transaction-scoped advisory
//! lock), `lease` (owner ids and the heartbeat), `calls` (the idempotency
//! table's SQL), `journal` (agent runs, steps and blobs; run ownership as a
//! lease and a fencing token), `breakers` (shared breaker states: a cheap
//! versioned read before every call, writes from a thread of their own),
//! `metrics` (`toolhost stats` from the shared journal).
//!
//! Every statement runs on a pooled connection in autocommit (each claim
//! write is one conditional statement), under `synchronous_commit` as the
//! server sets it (`on` by default: durable before acknowledged). A
//! statement that fails because the connection dropped (the backend was
//! terminated, the server restarted) is retried on a fresh connection with
//! backoff for up to `busy_timeout`; the writes are built so a retry after a
//! lost reply recognises its own first attempt (see `calls.rs`). If the
//! server stays away longer, the caller gets [`StoreError::Unavailable`].

/// Runs `$body` (an async block using `$client`, a pooled connection, and
/// `$retry`, whether this is a retry) until it succeeds or fails with
/// something other than a lost server. A dropped connection, or a server
/// that cannot be reached, is retried on a fresh connection with backoff
/// until the store's reconnect window (`busy_timeout`) has passed; then the
/// error becomes a [`StoreError`] (`Unavailable`). So a restart shorter
/// than the window costs callers a pause, not an error.
macro_rules! retrying {
    ($pg:expr, |$client:ident, $retry:ident| $body:expr) => {{
        let pg = $pg;
        let started = std::time::Instant::now();
        let mut tries = 0u32;
        loop {
            let $retry = tries > 0;
            let failure = match pg.client().await {
                Ok($client) => {
                    let result: Result<_, tokio_postgres::Error> = $body.await;
                    match result {
                        Ok(v) => break Ok(v),
                        Err(e) if $crate::store::pg::is_disconnect(&e) => pg.error(&e),
                        Err(e) => break Err(pg.error(&e)),
                    }
                }
                Err(e @ $crate::store::StoreError::Unavailable { .. }) => e,
                Err(e) => break Err(e),
            };
            if started.elapsed() >= pg.reconnect_window() {
                break Err(failure);
            }
            tries += 1;
            tracing::debug!(error = %failure, tries, "the store's server went away; retrying on a fresh connection");
            $crate::store::pg::PgStore::backoff(tries).await;
        }
    }};
}

mod breakers;
mod calls;
mod journal;
mod journal_rows;
mod lease;
mod metrics;
mod migrations;
mod pool;
mod prefix;
mod recovery;
mod upkeep;

pub use migrations::PG_SCHEMA_VERSION;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::{Liveness, StoreError, StoreOptions};
pub(crate) use crate::urls::is_url;
pub use crate::urls::{check_url, redact_url};

/// The first pause before a retry on a fresh connection (doubling each
/// time, up to [`RECONNECT_PAUSE_MAX`]).
const RECONNECT_PAUSE: Duration = Duration::from_millis(25);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_millis(500);

/// Parses a URL the way the store will use it.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    tokio_postgres::Config::from_str(url).map_err(|e| StoreError::BadUrl {
        url: redact_url(url),
        message: describe(&e),
    })
}

/// A tokio-postgres error as text: the server's message and SQLSTATE when
/// there is one, else the error and its causes.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    crate::urls::error_chain(e)
}

/// Whether `e` means the connection (or the server) went away, rather than
/// that the statement was refused: worth a retry on a fresh connection.
pub(crate) fn is_disconnect(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 57P01-57P03: admin shutdown, crash
        // shutdown, cannot connect now (starting up or shutting down).
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    // No server error at all: an I/O failure under the protocol.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// A tokio-postgres error as a [`StoreError`].
pub(crate) fn classify(display: &str, e: &tokio_postgres::Error) -> StoreError {
    if is_disconnect(e) {
        StoreError::Unavailable {
            store: display.to_string(),
            reason: describe(e),
        }
    } else {
        StoreError::Postgres {
            store: display.to_string(),
            message: describe(e),
        }
    }
}

/// The PostgreSQL store: its pool, this process's owner id and lease.
pub(crate) struct PgStore {
    pool: pool::PgPool,
    /// One connection of its own for the heartbeat, so an exhausted pool
    /// cannot starve the renewals and let live claims lapse.
    beat: pool::PgPool,
    owner: String,
    pub(crate) lease: Duration,
    reconnect_window: Duration,
    heartbeat: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The agent runs this process holds, at their fencing tokens (`journal.rs`).
    runs: journal::Runs,
    /// Breaker states read so far, and their writer thread (`breakers.rs`).
    breakers: breakers::Breakers,
    /// Whether this owner adopts interrupted runs (`recovery.rs`); the
    /// heartbeat writes it with the lease.
    pub(crate) recovers: std::sync::atomic::AtomicBool,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(h) = self
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

impl PgStore {
    /// Connects, migrates, registers this owner, starts the heartbeat.
    pub(crate) async fn open(url: &str, options: StoreOptions) -> Result<Arc<PgStore>, StoreError> {
        let config = parse_url(url)?;
        let display = redact_url(url);
        if options.pool_size == 0 {
            return Err(StoreError::BadUrl {
                url: display,
                message: "the pool size must be at least 1".into(),
            });
        }
        let breakers = breakers::Breakers::start(url, &display, options.busy_timeout)?;
        let beat = pool::PgPool::new(config.clone(), display.clone(), 1, options.busy_timeout)?;
        let pool = pool::PgPool::new(config, display, options.pool_size, options.busy_timeout)?;
        let store = Arc::new(PgStore {
            pool,
            beat,
            owner: lease::owner_id(),
            lease: options.lease,
            reconnect_window: options.busy_timeout,
            heartbeat: std::sync::Mutex::new(None),
            runs: journal::Runs::default(),
            breakers,
            recovers: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut client = store.pool.get().await?;
            migrations::migrate(&mut client, store.display()).await?;
        }
        store.renew().await?;
        let swept = store.sweep_expired().await?;
        if swept > 0 {
            tracing::warn!(store = %store.display(), swept, "claims whose lease expired are now in_doubt");
        }
        let beat = lease::spawn_heartbeat(&store);
        *store.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(beat);
        Ok(store)
    }

    /// The URL without its password.
    pub(crate) fn display(&self) -> &str {
        &self.pool.display
    }

    pub(crate) fn owner_id(&self) -> &str {
        &self.owner
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// A pooled connection, or why there is none.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await
    }

    pub(crate) fn error(&self, e: &tokio_postgres::Error) -> StoreError {
        classify(self.display(), e)
    }

    /// Sleeps before retry `n` (1-based) of a statement whose connection
    /// dropped.
    pub(crate) async fn backoff(n: u32) {
        let pause = RECONNECT_PAUSE.saturating_mul(1 << n.saturating_sub(1).min(10));
        tokio::time::sleep(pause.min(RECONNECT_PAUSE_MAX)).await;
    }

    /// How long a statement keeps retrying while the server is away.
    pub(crate) fn reconnect_window(&self) -> Duration {
        self.reconnect_window
    }

    /// Registers this owner and renews the leases of everything it holds,
    /// in one transaction, on the heartbeat's own connection. Not retried:
    /// the next beat is a third of a lease away.
    pub(crate) async fn renew(&self) -> Result<(), StoreError> {
        let host = lease::host_name();
        let pid = std::process::id() as i32;
        let lease = self.lease_ms();
        let recovers = self.recovers.load(std::sync::atomic::Ordering::Relaxed);
        let mut client = self.beat.get().await?;
        let renewed: Result<(), tokio_postgres::Error> = async {
            let tx = client.transaction().await?;
            tx.execute(
                lease::REGISTER,
                &[&self.owner, &lease, &host, &pid, &recovers],
            )
            .await?;
            for sql in lease::RENEWALS {
                tx.execute(*sql, &[&self.owner, &lease]).await?;
            }
            tx.commit().await
        }
        .await;
        renewed.map_err(|e| self.error(&e))
    }

    /// Whether owner `id` holds an unexpired lease (on the database's clock).
    pub(crate) async fn owner_alive(&self, id: &str) -> Liveness {
        if id == self.owner {
            return Liveness::Alive;
        }
        let found = retrying!(self, |client, _retry| async move {
            client
                .query_opt(
                    "SELECT lease_until > toolhost_now_ms() FROM owners WHERE id = $1",
                    &[&id],
                )
                .await
        });
        match found {
            Ok(Some(row)) if row.get::<_, bool>(0) => Liveness::Alive,
            Ok(_) => Liveness::Dead,
            Err(e) => Liveness::Unknown(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/t?sslmode=require"),
            "postgres://u:***@db:5432/t?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://u@db/t?password=secret&application_name=x"),
            "postgresql://u@db/t?password=***&application_name=x"
        );
        assert_eq!(redact_url("postgres://db/t"), "postgres://db/t");
        assert!(check_url("postgres://u:pw@db/t").is_ok());
        let e = check_url("postgres://u:pw@db/t?sslmode=sometimes").unwrap_err();
        assert!(!e.contains("pw@"), "{e}");
        assert!(check_url("sqlite.db").is_err());
    }

    #[test]
    fn a_dropped_connection_is_told_apart_from_a_refused_statement() {
        // Only errors without a server answer can be built here; the
        // server's codes are covered end to end (tests/all/shared_store).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let refused = runtime.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            tokio_postgres::connect(
                &format!("postgres://u@127.0.0.1:{port}/t"),
                tokio_postgres::NoTls,
            )
            .await
            .err()
            .expect("nothing listens there")
        });
        assert!(is_disconnect(&refused), "{refused:?}");
        assert!(matches!(
            classify("db", &refused),
            StoreError::Unavailable { .. }
        ));
    }
}
