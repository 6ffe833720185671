//! The run API (`/v1/runs`) and the runs page (`/`) of `serve --http`.
//!
//! The routes are built here and mounted by the MCP server's router
//! ([`HttpOptions::api`](crate::mcp::HttpOptions) and `page`), so they get
//! its hygiene: the bearer token on the API (the page's assets are public:
//! they hold nothing, and a browser cannot send a header when it opens a
//! URL), the `Host` check on both, the header timeout and the connection
//! limits. The API adds its own `Origin` rule: a browser may call it only
//! from an allowed origin (loopback, `[serve] allowed_origins`) or from
//! this server's own pages.
//!
//! Layout: `runs` (submit, list, show, cancel), `events` (a run's Server-
//! Sent Events), `error` (the JSON errors), `page` (the embedded page).

mod error;
mod events;
mod page;
mod runs;

pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};

use crate::agent::Hub;
use crate::config::ServeConfig;
use crate::store::Store;

/// Browser origins a loopback server always accepts (as `/mcp` does).
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    store: Store,
    /// `None` when no model is configured: runs can be read, not driven.
    hub: Option<Arc<Hub>>,
    body_limit: usize,
}

/// The routes to mount: `api` behind the token, `page` open.
#[derive(Debug, Clone)]
pub struct Routes {
    pub api: Router,
    pub page: Router,
}

/// The run API over `store` (runs driven by `hub`) and the page, for a
/// server with `serve`'s settings, bound to loopback or not.
pub fn routes(store: Store, hub: Option<Arc<Hub>>, serve: &ServeConfig, loopback: bool) -> Routes {
    let api = Api {
        store,
        hub,
        body_limit: serve.max_body_bytes as usize,
    };
    let mut origins: Vec<String> = serve.allowed_origins.clone();
    if loopback {
        origins.extend(LOOPBACK_ORIGINS.iter().map(|o| o.to_string()));
    }
    let api = Router::new()
        .route("/runs", post(runs::submit).get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/events", get(events::events))
        .fallback(unknown)
        .with_state(api)
        .layer(middleware::from_fn_with_state(
            Arc::new(origins),
            known_origin,
        ));
    Routes {
        api: Router::new().nest("/v1", api),
        page: page::router(),
    }
}

async fn unknown(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint {} {}: the run API is POST/GET /v1/runs, GET /v1/runs/ID, POST /v1/runs/ID/cancel, GET /v1/runs/ID/events",
            request.method(),
            request.uri().path()
        ),
    )
}

/// 403 for a browser request from a foreign origin: one not allowed, and
/// not this server's own (the page's calls carry `Origin` on `POST`).
async fn known_origin(
    State(origins): State<Arc<Vec<String>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let own = host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(h))
        });
        if !own && !origins.iter().any(|p| origin_matches(p, origin)) {
            tracing::warn!(origin, "refused a foreign Origin on the run API");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "auth",
                format!("requests from origin `{origin}` are not served: add it to [serve] allowed_origins"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether `origin` matches `pattern`: exactly (case-insensitive), or any
/// port for a pattern ending `:*`.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.strip_suffix(":*") {
        Some(prefix) => {
            origin
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
                && origin[prefix.len()..]
                    .strip_prefix(':')
                    .is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        }
        None => pattern.eq_ignore_ascii_case(origin),
    }
}

#[cfg(test)]
mod tests {
    use super::origin_matches;

    #[test]
    fn origins_match_exactly_or_on_any_port() {
        assert!(origin_matches(
            "http://localhost:*",
            "http://localhost:8080"
        ));
        assert!(origin_matches("http://localhost:*", "HTTP://LOCALHOST:1"));
        assert!(!origin_matches("http://localhost:*", "http://localhost"));
        assert!(!origin_matches(
            "http://localhost:*",
            "http://localhost:80x"
        ));
        assert!(!origin_matches(
            "http://localhost:*",
            "http://localhost.evil:80"
        ));
        assert!(origin_matches("https://a.example", "https://a.example"));
        assert!(!origin_matches(
            "https://a.example",
            "https://a.example:444"
        ));
    }
}
