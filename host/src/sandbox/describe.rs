//! What the components on the search path say they are: `describe` run on
//! each newly compiled one (what it returns is checked and sealed), and
//! which entry wins each name.

use std::collections::BTreeMap;

use wasmtime::Engine;

use super::capabilities::HostState;
use super::{LoadError, SandboxOptions, Tool};
use super::{bindings, call, catalog, engine, loader, metadata, wasm};

/// Runs `describe` on every component compiled at this open, turning each
/// into its metadata (or a load error). Returns the records to seal.
pub(super) async fn describe_compiled(
    entries: &mut [catalog::Entry],
    wasm: &wasm::Wasm,
    options: &SandboxOptions,
) -> Vec<(String, metadata::Record)> {
    let mut records = Vec::new();
    for entry in entries {
        let catalog::State::Compiled(pre, source) = &entry.state else {
            continue;
        };
        let (pre, source) = (pre.clone(), *source);
        entry.state = match describe_new(&wasm.engine, &wasm.ticker, &pre, options).await {
            Ok(described) => {
                let record = metadata::Record::Described(described.clone());
                records.push((entry.digest.clone(), record));
                catalog::State::Ready(described, pre, source)
            }
            Err(DescribeError::Refused(reason)) => {
                let record = metadata::Record::failed(reason.clone());
                records.push((entry.digest.clone(), record));
                catalog::State::Failed(reason)
            }
            Err(DescribeError::Failed(reason)) => catalog::State::Failed(reason),
        };
    }
    records
}

/// The [`Tool`] a winning entry makes (`None`: not described, so not
/// wanted), with its schemas checked.
pub(super) fn ready_tool(name: &str, entry: catalog::Entry) -> Option<Result<Tool, LoadError>> {
    let (described, component) = match entry.state {
        catalog::State::Described(d) => (d, None),
        catalog::State::Ready(d, pre, source) => (d, Some((pre, source))),
        _ => return None,
    };
    let path = entry.location.display();
    let (Some(meta), Some(world)) = (described.metadata(), described.world()) else {
        let reason = "its metadata names an unknown effect or world".into();
        return Some(Err(LoadError { path, reason }));
    };
    if meta.name != name {
        // Only a built-in tool is named before it is described.
        let reason = format!("describes itself as `{}`, not `{name}`", meta.name);
        return Some(Err(LoadError { path, reason }));
    }
    Some(loader::finish(
        entry.origin,
        entry.location,
        entry.digest,
        component,
        &meta,
        world,
    ))
}

/// Why a new component's `describe` gave no usable metadata.
enum DescribeError {
    /// What it returned is unusable (a bad name or schema): the bytes
    /// decide this, so it is recorded.
    Refused(String),
    /// The run failed (a limit, a trap): it may pass under other limits,
    /// so it is not recorded.
    Failed(String),
}

/// Runs `describe` on a new component and checks what it says.
async fn describe_new(
    engine: &Engine,
    ticker: &engine::Ticker,
    pre: &bindings::ToolPre<HostState>,
    options: &SandboxOptions,
) -> Result<metadata::Described, DescribeError> {
    let _running = ticker.enter();
    let meta = call::describe(engine, pre, &options.limits, &options.egress)
        .await
        .map_err(|e| DescribeError::Failed(format!("describe failed: {} ({e})", e.kind())))?;
    loader::check_metadata(&meta).map_err(DescribeError::Refused)?;
    Ok(metadata::Described::of(&meta, pre.world()))
}

/// Who wins each name: a later place on the search path replaces an
/// earlier one; two files of one place claiming a name are a load error
/// (the first keeps it). Files that cannot load are load errors.
pub(super) fn resolve(
    entries: Vec<catalog::Entry>,
) -> (BTreeMap<String, catalog::Entry>, Vec<LoadError>) {
    let mut winners: BTreeMap<String, catalog::Entry> = BTreeMap::new();
    let mut errors = Vec::new();
    for entry in entries {
        let name = match (&entry.state, entry.name()) {
            (catalog::State::Failed(reason), _) => {
                tracing::warn!(path = %entry.location.display().display(), reason, "skipping a tool");
                errors.push(LoadError {
                    path: entry.location.display(),
                    reason: reason.clone(),
                });
                continue;
            }
            (_, Some(name)) => name.to_string(),
            (_, None) => continue,
        };
        match winners.get(&name) {
            Some(first) if first.origin == entry.origin => errors.push(LoadError {
                path: entry.location.display(),
                reason: format!(
                    "tool name `{name}` is taken by {}",
                    first.location.display().display()
                ),
            }),
            _ => {
                winners.insert(name, entry);
            }
        }
    }
    (winners, errors)
}
