//! The policy digest: one hash of everything in a tool's effective policy
//! that can change what a call returns.
//!
//! It is recorded with every cached call, so a replay under another policy
//! says so (`digest_changed`). Idempotency keys never include limits: pure
//! and read-only keys cover [`grants_digest`] (the grants alone), and effect
//! keys cover neither (see `idempotency::key`).
//!
//! What goes in: every limit (fuel, timeout, memory, result, log and response
//! caps: each decides whether a call succeeds), the granted directories
//! (absolute host path, guest path, mode), the names of granted environment
//! variables and the canonical `allow_hosts` patterns.
//!
//! What stays out, and why:
//! - the *values* of granted variables: they may be secrets, and a hash of a
//!   short secret in the cache is a way to guess it. Change a variable's value
//!   and the cache still replays; change the grant and it does not.
//! - `effect`, `ttl_s`, `idempotency_window_s`: they decide how outcomes are
//!   cached, not what a call returns, and the cache keys on them itself.
//!
//! The encoding is canonical and order-independent: lists are sorted and
//! deduplicated, every field is tagged and length-prefixed under a versioned
//! domain string, so two policies that grant the same things hash the same,
//! whatever order the config lists them in, and no two different policies
//! can encode to the same bytes. Host paths are made absolute lexically (no
//! symlink resolution): two spellings of one directory may hash apart, which
//! costs a cache miss, never a wrong hit.

use std::fmt;
use std::path::Path;

use super::limits::Limits;
use crate::config::ToolPolicy;

/// Changes whenever the encoding does, so old keys never collide with new.
const DOMAIN: &[u8] = b"toolhost/policy-digest/v1";

/// blake3 of a tool's effective limits and grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyDigest(pub [u8; 32]);

impl PolicyDigest {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PolicyDigest {
    /// Lowercase hex, 64 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The digest of a call's effective `limits` (defaults, then the tool's
/// overrides, then the call's) and the tool's grants (`None`: no policy,
/// which grants nothing and hashes like an empty policy).
pub fn digest(limits: &Limits, policy: Option<&ToolPolicy>) -> PolicyDigest {
    let empty = ToolPolicy::default();
    let policy = policy.unwrap_or(&empty);
    let mut enc = Encoder(blake3::Hasher::new());
    enc.bytes(DOMAIN);

    enc.u64("fuel", limits.fuel);
    enc.u64(
        "timeout_ms",
        u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
    );
    enc.u64("memory_bytes", limits.memory_bytes);
    enc.u64("max_output_bytes", limits.max_output_bytes);
    enc.u64("max_log_bytes", limits.max_log_bytes);
    enc.u64("max_response_bytes", limits.max_response_bytes);

    encode_grants(&mut enc, policy);
    PolicyDigest(*enc.0.finalize().as_bytes())
}

/// Domain of [`grants_digest`]: grants alone, without limits.
const GRANTS_DOMAIN: &[u8] = b"toolhost/grants-digest/v1";

/// blake3 of a tool's grants alone (dirs, env names, hosts), without its
/// limits: what a pure or read-only result can depend on besides its input
/// and build, so their idempotency keys cover it. Limits never enter a key.
pub fn grants_digest(policy: Option<&ToolPolicy>) -> PolicyDigest {
    let empty = ToolPolicy::default();
    let mut enc = Encoder(blake3::Hasher::new());
    enc.bytes(GRANTS_DOMAIN);
    encode_grants(&mut enc, policy.unwrap_or(&empty));
    PolicyDigest(*enc.0.finalize().as_bytes())
}

fn encode_grants(enc: &mut Encoder, policy: &ToolPolicy) {
    let mut dirs: Vec<(String, Vec<u8>, &str)> = policy
        .dirs
        .iter()
        .map(|d| {
            let guest = d.guest.trim_end_matches('/').to_string();
            (guest, absolute(&d.host), d.mode.as_str())
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    enc.count("dirs", dirs.len());
    for (guest, host, mode) in &dirs {
        enc.bytes(guest.as_bytes());
        enc.bytes(host);
        enc.bytes(mode.as_bytes());
    }

    let mut env: Vec<&str> = policy.env.iter().map(String::as_str).collect();
    env.sort_unstable();
    env.dedup();
    enc.count("env", env.len());
    for name in env {
        enc.bytes(name.as_bytes());
    }

    let hosts = policy.host_patterns();
    enc.count("allow_hosts", hosts.len());
    for host in hosts {
        enc.bytes(host.to_string().as_bytes());
    }
}

fn absolute(path: &Path) -> Vec<u8> {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .into_os_string()
        .into_encoded_bytes()
}

/// Tagged, length-prefixed fields: no two sequences encode alike.
struct Encoder(blake3::Hasher);

impl Encoder {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
    }

    fn u64(&mut self, tag: &str, v: u64) {
        self.bytes(tag.as_bytes());
        self.0.update(&v.to_le_bytes());
    }

    fn count(&mut self, tag: &str, n: usize) {
        self.u64(tag, n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DirGrant, DirMode};
    use crate::sandbox::Overrides;

    fn grant(host: &str, guest: &str, mode: DirMode) -> DirGrant {
        DirGrant {
            host: host.into(),
            guest: guest.into(),
            mode,
        }
    }

    fn policy() -> ToolPolicy {
        ToolPolicy {
            dirs: vec![
                grant("/srv/a", "/a", DirMode::Ro),
                grant("/srv/b", "/b", DirMode::Rw),
            ],
            env: vec!["HOME".into(), "LANG".into()],
            allow_hosts: vec!["api.example.com".into(), "*.example.org".into()],
            ..ToolPolicy::default()
        }
    }

    fn d(p: &ToolPolicy) -> PolicyDigest {
        digest(&Limits::default(), Some(p))
    }

    #[test]
    fn is_stable_hex() {
        let a = d(&policy());
        assert_eq!(a, d(&policy()));
        assert_eq!(a.to_string().len(), 64);
        assert!(a.to_string().chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn ignores_order_duplicates_and_spelling() {
        let mut p = policy();
        p.dirs.reverse();
        p.env = vec!["LANG".into(), "HOME".into(), "LANG".into()];
        p.allow_hosts = vec![
            "*.EXAMPLE.org".into(),
            "api.example.com.".into(),
            "api.example.com".into(),
        ];
        p.dirs[0].guest.push('/');
        assert_eq!(d(&p), d(&policy()));
    }

    #[test]
    fn no_policy_is_the_empty_policy() {
        let l = Limits::default();
        assert_eq!(digest(&l, None), digest(&l, Some(&ToolPolicy::default())));
        assert_ne!(digest(&l, None), d(&policy()));
    }

    #[test]
    fn every_grant_and_limit_changes_it() {
        let base = d(&policy());
        let changed: Vec<(&str, ToolPolicy)> = vec![
            ("mode", {
                let mut p = policy();
                p.dirs[0].mode = DirMode::Rw;
                p
            }),
            ("host dir", {
                let mut p = policy();
                p.dirs[0].host = "/srv/c".into();
                p
            }),
            ("guest dir", {
                let mut p = policy();
                p.dirs[0].guest = "/c".into();
                p
            }),
            ("env", {
                let mut p = policy();
                p.env.pop();
                p
            }),
            ("host", {
                let mut p = policy();
                p.allow_hosts.push("127.0.0.1:8080".into());
                p
            }),
        ];
        for (what, p) in changed {
            assert_ne!(d(&p), base, "{what}");
        }
        let limits = Limits::default();
        for o in [
            Overrides {
                fuel: Some(5),
                ..Overrides::default()
            },
            Overrides {
                timeout_ms: Some(5),
                ..Overrides::default()
            },
            Overrides {
                memory_mb: Some(5),
                ..Overrides::default()
            },
        ] {
            assert_ne!(digest(&limits.with_overrides(&o), Some(&policy())), base);
        }
        let mut l = limits;
        l.max_response_bytes += 1;
        assert_ne!(digest(&l, Some(&policy())), base);
    }

    #[test]
    fn a_relative_host_path_is_made_absolute() {
        let mut rel = policy();
        rel.dirs[0].host = "data".into();
        let mut abs = policy();
        abs.dirs[0].host = std::env::current_dir().unwrap().join("data");
        assert_eq!(d(&rel), d(&abs));
    }

    #[test]
    fn what_decides_caching_does_not_change_it() {
        let mut p = policy();
        p.ttl_s = Some(1);
        p.idempotency_window_s = Some(1);
        p.effect = Some(crate::config::EffectName::SideEffecting);
        assert_eq!(d(&p), d(&policy()));
    }
}
