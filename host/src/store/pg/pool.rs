//! The connection pool: a bounded `deadpool` of `tokio-postgres` clients,
//! TLS through rustls.
//!
//! Why bounded, with a wait timeout: an unbounded pool turns a load spike
//! into a connection storm against a database other teams share, and a pool
//! without a wait timeout turns exhaustion into a hang. Here a caller that
//! cannot get a connection within `busy_timeout` fails with
//! [`StoreError::PoolExhausted`], which the executor reports as
//! `store_unavailable`, naming the pool size.
//!
//! TLS: `sslmode` in the URL decides, as with libpq (`disable`, `prefer`,
//! the default, or `require`). Certificates are checked against the
//! webpki roots (as the tools' egress does). No OpenSSL.
//!
//! A connection the server dropped (`pg_terminate_backend`, a restart) is
//! noticed when it is next checked out (`RecyclingMethod::Fast` looks at
//! the client's closed flag) and replaced by a new one.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};

use super::super::StoreError;

/// The pool and how to describe it in errors.
pub(crate) struct PgPool {
    pool: Pool,
    /// The URL without its password.
    pub(crate) display: String,
    size: usize,
    wait: Duration,
}

fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgPool {
    /// Builds the pool (no connection is made yet).
    pub(crate) fn new(
        mut config: tokio_postgres::Config,
        display: String,
        size: usize,
        wait: Duration,
    ) -> Result<PgPool, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(wait);
        }
        if config.get_application_name().is_none() {
            config.application_name("toolhost");
        }
        let tls = tls().map_err(|e| StoreError::BadUrl {
            url: display.clone(),
            message: format!("cannot set up TLS: {e}"),
        })?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(wait))
            .build()
            .map_err(|e| StoreError::BadUrl {
                url: display.clone(),
                message: format!("cannot build the connection pool: {e}"),
            })?;
        Ok(PgPool {
            pool,
            display,
            size,
            wait,
        })
    }

    /// A connection, within the wait timeout, or a typed error saying why not.
    pub(crate) async fn get(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| self.pool_error(e))
    }

    fn pool_error(&self, e: PoolError) -> StoreError {
        let store = self.display.clone();
        match e {
            PoolError::Timeout(TimeoutType::Wait) => StoreError::PoolExhausted {
                store,
                size: self.size,
                waited: self.wait,
            },
            PoolError::Timeout(TimeoutType::Create) => StoreError::Unavailable {
                store,
                reason: format!("connecting took longer than {} ms", self.wait.as_millis()),
            },
            PoolError::Timeout(TimeoutType::Recycle) => StoreError::Unavailable {
                store,
                reason: format!(
                    "checking a pooled connection took longer than {} ms",
                    self.wait.as_millis()
                ),
            },
            PoolError::Backend(e) => StoreError::Unavailable {
                store,
                reason: super::describe(&e),
            },
            PoolError::Closed => StoreError::Closed,
            other => StoreError::Unavailable {
                store,
                reason: other.to_string(),
            },
        }
    }
}
