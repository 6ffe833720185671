//! What one call may consume. Every limit is on for every call; there is no
//! "unlimited".
//!
//! | limit | default | why this default |
//! |---|---|---|
//! | fuel | 1e9 | about a second of pure compute; a parser or a jq filter needs far less, a runaway loop is stopped cheaply |
//! | timeout | 10 s | covers host calls (sleeps, I/O) that fuel cannot see, and bounds how long an agent step waits |
//! | memory | 64 MiB | ample for text tools; a memory bomb fails fast instead of swapping the host |
//! | result | 1 MiB | a result goes into a model's context window; more is a bug, not an answer |
//! | logs | 64 KiB each for stdout and stderr | enough to debug, too little to fill a disk |
//! | HTTP response body | 10 MiB per response | a page or an API answer fits many times over; a tool cannot stream a disk image into guest memory |
//! | wasm stack | 1 MiB, engine-wide | deep recursion traps instead of overrunning the host's stack |

use std::time::Duration;

use crate::config::{SandboxConfig, ToolPolicy};

/// The wasm call-stack limit (engine-wide: wasmtime sets it per engine).
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Per-call limits. Build them from the config, then narrow per tool and per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Fuel units (roughly wasm instructions) the call may burn.
    pub fuel: u64,
    /// Wall-clock budget, host calls included.
    pub timeout: Duration,
    /// Largest linear memory, in bytes.
    pub memory_bytes: u64,
    /// Largest result string, in bytes.
    pub max_output_bytes: u64,
    /// Largest stdout, and separately stderr, in bytes.
    pub max_log_bytes: u64,
    /// Largest body of one HTTP response, in bytes.
    pub max_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&SandboxConfig::default())
    }
}

impl Limits {
    /// The `[sandbox]` defaults.
    pub fn from_config(c: &SandboxConfig) -> Self {
        Limits {
            fuel: c.fuel,
            timeout: Duration::from_millis(c.timeout_ms),
            memory_bytes: c.memory_mb << 20,
            max_output_bytes: c.max_output_bytes,
            max_log_bytes: c.max_log_bytes,
            max_response_bytes: c.max_response_bytes,
        }
    }

    /// These limits with a tool policy's overrides applied.
    pub fn with_policy(mut self, p: &ToolPolicy) -> Self {
        self = self.with_overrides(&Overrides {
            fuel: p.fuel,
            timeout_ms: p.timeout_ms,
            memory_mb: p.memory_mb,
        });
        if let Some(v) = p.max_output_bytes {
            self.max_output_bytes = v;
        }
        if let Some(v) = p.max_log_bytes {
            self.max_log_bytes = v;
        }
        if let Some(v) = p.max_response_bytes {
            self.max_response_bytes = v;
        }
        self
    }

    /// These limits with one call's overrides applied.
    pub fn with_overrides(mut self, o: &Overrides) -> Self {
        if let Some(v) = o.fuel {
            self.fuel = v;
        }
        if let Some(v) = o.timeout_ms {
            self.timeout = Duration::from_millis(v);
        }
        if let Some(v) = o.memory_mb {
            self.memory_bytes = v << 20;
        }
        self
    }
}

/// A caller's per-call limits (`toolhost call --fuel --timeout-ms --memory-mb`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overrides {
    pub fuel: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_design_defaults() {
        let l = Limits::default();
        assert_eq!(l.fuel, 1_000_000_000);
        assert_eq!(l.timeout, Duration::from_secs(10));
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.max_output_bytes, 1 << 20);
        assert_eq!(l.max_log_bytes, 64 << 10);
        assert_eq!(l.max_response_bytes, 10 << 20);
    }

    #[test]
    fn policy_then_call_overrides_apply_in_order() {
        let policy = ToolPolicy {
            timeout_ms: Some(2_000),
            memory_mb: Some(16),
            ..ToolPolicy::default()
        };
        let l = Limits::default()
            .with_policy(&policy)
            .with_overrides(&Overrides {
                timeout_ms: Some(50),
                ..Overrides::default()
            });
        assert_eq!(l.timeout, Duration::from_millis(50));
        assert_eq!(l.memory_bytes, 16 << 20);
        assert_eq!(l.fuel, 1_000_000_000);
    }
}
