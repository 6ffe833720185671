//! Exactly-once past the sandbox wall (issue 19): the 0.2.0 worlds beside
//! 0.1.0, the forwarded idempotency key, and (with the loopback payment
//! API of `support::payments`) reconciling calls in doubt.

mod agent;
mod crash;
mod forwarded;
mod policy;
mod worlds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toolhost::config::{EffectName, ToolPolicy};

/// A policy allowing `host_port`, optionally with a stricter effect.
pub fn reach(host_port: &str, effect: Option<EffectName>) -> ToolPolicy {
    ToolPolicy {
        allow_hosts: vec![host_port.to_string()],
        effect,
        ..ToolPolicy::default()
    }
}

/// The tools directory of the test kit (where `legacy_append` and `send` live).
pub fn testkit_dir() -> PathBuf {
    PathBuf::from(toolhost::sandbox::TESTKIT_DIR)
}

/// One policy per tool name.
pub fn policies(list: Vec<(&str, ToolPolicy)>) -> BTreeMap<String, ToolPolicy> {
    list.into_iter().map(|(n, p)| (n.to_string(), p)).collect()
}

/// A trusted `toolhost.toml` in `dir` for the CLI: the shared artifact
/// cache, `pay` allowed to reach `server` (plus `extra` policy lines), and a
/// store in `dir/calls.db`.
pub fn write_pay_config(dir: &Path, server: &crate::support::payments::PaymentServer, extra: &str) {
    crate::support::write_trusted_config(
        dir,
        &format!(
            "[sandbox]\ncache_dir = {:?}\n\n[tools.pay]\nallow_hosts = [{:?}]\n{extra}\n[store]\npath = {:?}\n",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"),
            server.host_port(),
            dir.join("calls.db"),
        ),
    );
}
