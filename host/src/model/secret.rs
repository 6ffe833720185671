//! API keys: read from the environment variable the config names, kept in a
//! type whose `Debug` prints nothing of the value and which has no `Display`,
//! so a key cannot end up in a log line or an error by accident.

use std::fmt;

/// An API key. Only the HTTP layer reads the value, to set a header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Reads `var`; `None` when it is unset or empty.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(ApiKey)
    }

    pub fn new(value: impl Into<String>) -> ApiKey {
        ApiKey(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced: providers echo keys
    /// back in 401 bodies, and those bodies become error messages.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_scrub_hide_the_value() {
        let key = ApiKey::new("sk-very-secret-123");
        assert!(!format!("{key:?}").contains("secret"));
        let body = "Incorrect API key provided: sk-very-secret-123.";
        assert_eq!(key.scrub(body), "Incorrect API key provided: [redacted].");
    }
}
