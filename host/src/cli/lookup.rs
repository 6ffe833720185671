//! A key or run id given by any unique prefix (`cache show 3f2a`), and the
//! exact commands a hint tells people to run.

use toolhost::store::{Prefixed, Store};

use super::{Env, Failure};

/// How many candidates an ambiguous prefix lists.
const CANDIDATES: usize = 10;

impl Env {
    /// The full call key `given` names: itself if it is one, else the one
    /// key it is a prefix of. A prefix of nothing comes back unchanged, so
    /// each command reports a missing key in its own words.
    pub async fn resolve_key(&self, store: &Store, given: &str) -> Result<String, Failure> {
        resolve(
            store,
            Prefixed::CallKey,
            given,
            "key",
            "toolhost cache list",
        )
        .await
    }

    /// The full run id `given` names (see [`Env::resolve_key`]).
    pub async fn resolve_run(&self, store: &Store, given: &str) -> Result<String, Failure> {
        resolve(
            store,
            Prefixed::RunId,
            given,
            "run id",
            "toolhost runs list",
        )
        .await
    }

    /// `text` with every suggested `` `toolhost ...` `` command carrying the
    /// global flags this invocation used (`--config`, `--tools-dir`, `--db`,
    /// made absolute), so a hint can be pasted as it is.
    pub fn with_flags(&self, text: &str) -> String {
        toolhost::hint::with_flags(text, &self.flags)
    }
}

async fn resolve(
    store: &Store,
    what: Prefixed,
    given: &str,
    noun: &str,
    list: &str,
) -> Result<String, Failure> {
    if given.is_empty() {
        return Err(Failure::usage(format!("an empty {noun} names nothing")));
    }
    let found = store
        .with_prefix(what, given, CANDIDATES + 1)
        .await
        .map_err(|e| Failure::new(1, "store_unavailable", e.to_string()))?;
    match found.as_slice() {
        [] => Ok(given.to_string()),
        [first, ..] if first == given => Ok(first.clone()),
        [only] => Ok(only.clone()),
        many => {
            let shown: Vec<&str> = many.iter().take(CANDIDATES).map(String::as_str).collect();
            let more = if many.len() > CANDIDATES { ", ..." } else { "" };
            Err(Failure::usage(format!(
                "{noun} prefix `{given}` is ambiguous: it matches {}{more}; give more characters (see `{list}`)",
                shown.join(", ")
            ))
            .with_kind("ambiguous_prefix"))
        }
    }
}

pub use toolhost::hint::shell_quote;
