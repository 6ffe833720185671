//! URLs as text, for the layers that read them from config and those that
//! dial them: whether a `--db` argument is a PostgreSQL URL, that URL with
//! its password hidden, whether it parses; whether a model's base URL is
//! plain `http://` off the machine.
//!
//! Why a leaf: config validates these URLs and the store and the model
//! providers use them; keeping the checks here lets config stay below both.

use std::str::FromStr;

/// Whether `arg` names a PostgreSQL database rather than a SQLite file.
pub fn is_url(arg: &str) -> bool {
    arg.starts_with("postgres://") || arg.starts_with("postgresql://")
}

/// `url` with its password (if any) replaced by `***`: what error
/// messages, logs and `config check` show.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_string(),
    };
    // A password given as a query parameter goes too.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| {
                    if kv.starts_with("password=") {
                        "password=***".to_string()
                    } else {
                        kv.to_string()
                    }
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

/// Checks a `[store] url` / `--db` URL: a `postgres://` or
/// `postgresql://` URL that tokio-postgres can use. The error names what is
/// wrong, never the password.
pub fn check_url(url: &str) -> Result<(), String> {
    if !is_url(url) {
        return Err(format!(
            "`{}` is not a PostgreSQL URL (postgres://USER@HOST:PORT/DB)",
            redact_url(url)
        ));
    }
    // The text of the store's `StoreError::BadUrl`, so `config check` and
    // opening the store word a bad URL alike.
    tokio_postgres::Config::from_str(url)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "the store URL {} is not usable: {}",
                redact_url(url),
                error_chain(&e)
            )
        })
}

/// Whether `url` is plain `http://` to a host that is not loopback: where an
/// API key must not go unless the config allows it.
pub(crate) fn is_plain_remote(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http") && !is_loopback(url)
}

pub(crate) fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// An error and its causes as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
