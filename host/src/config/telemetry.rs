//! `[telemetry]`: where traces go, and whether they may carry content.
//!
//! Kept apart from `schema.rs` because only the telemetry module reads it.
//! The standard `OTEL_*` variables win over the file (an operator's
//! environment is how a collector is usually named); see
//! `telemetry::Destination::resolve`.

use serde::Deserialize;

use super::error::Invalid;

/// `[telemetry]`: OpenTelemetry trace export.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP endpoint's base URL (such as `http://127.0.0.1:4318`;
    /// traces go to `/v1/traces` under it). Default: none, unless
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is set; with neither, nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Whether tool inputs and outputs are exported as span attributes
    /// (`gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`). Default
    /// false. Idempotency keys, header values and prompts never are.
    pub capture_content: bool,
}

impl TelemetryConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.otlp_endpoint {
            check_endpoint(url).map_err(|e| Invalid::new("telemetry.otlp_endpoint", e))?;
        }
        Ok(())
    }
}

/// Checks an OTLP endpoint: an `http` or `https` URL with a host, and no
/// user name, password or query (credentials belong in
/// `OTEL_EXPORTER_OTLP_HEADERS`, never in a file a tool might read). The
/// error says what is wrong without repeating a password.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!(
            "`{}` is not an http:// or https:// URL: {e}",
            crate::urls::redact_url(url)
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{}` must be an http:// or https:// URL (OTLP over HTTP)",
            crate::urls::redact_url(url)
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "must not carry a user name or password; send credentials as headers with OTEL_EXPORTER_OTLP_HEADERS"
                .into(),
        );
    }
    if parsed.query().is_some() {
        return Err(format!("`{url}` must not have a query"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_with_a_host_and_no_credentials() {
        for ok in [
            "http://127.0.0.1:4318",
            "https://otel.example.com",
            "http://[::1]:4318/",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("127.0.0.1:4318", "http://"),
            ("grpc://collector:4317", "http://"),
            ("not a url", "not an http://"),
            ("http://user:hunter2@collector:4318", "password"),
            ("http://collector:4318/?token=x", "query"),
        ] {
            let e = check_endpoint(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
