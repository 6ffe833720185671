//! Turning `.wasm` files into ready-to-instantiate tools.
//!
//! Each file is checked in the order a user would want to be told: is it wasm
//! at all, is it a component (not a core module), does it compile, does it
//! need only what the sandbox provides, does it export the tool world, and is
//! what `describe` returns usable (a name, a valid JSON Schema). Whatever
//! fails becomes a [`LoadError`] naming the file and the reason; the other
//! files still load.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use wasmtime::Engine;
use wasmtime::component::Linker;

use super::artifacts::{ArtifactCache, LoadSource};
use super::bindings::{Effect, ToolPre, WorldVersion};
use super::capabilities::HostState;
use super::catalog::{Location, Origin};
use super::error::{CallError, LoadError};
use crate::config::EffectName;

/// A loaded tool: its metadata, digest and pre-linked component.
pub struct Tool {
    /// The name the tool gave itself in `describe`.
    pub name: String,
    pub description: String,
    pub version: String,
    /// The tool's own effect (a policy may make it stricter).
    pub effect: EffectName,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    /// The file it was loaded from (`builtin:NAME.wasm` for a built-in tool).
    pub path: PathBuf,
    /// Where on the search path it was found.
    pub origin: Origin,
    /// blake3 of the wasm bytes, hex.
    pub digest: String,
    /// The world it exports: whether it can `reconcile`, and which
    /// contract version it was built against.
    pub world: WorldVersion,
    pub(crate) location: Location,
    /// The pre-linked component, loaded on first use (a start that only
    /// lists tools, or calls another, never deserialises this one).
    pub(crate) component: tokio::sync::OnceCell<(ToolPre<HostState>, LoadSource)>,
    /// Compiled on first use: listing tools never compiles a schema, and a
    /// call compiles only its own tool's. (Both schemas were checked when
    /// the tool was described, before its metadata was recorded.)
    input_validator: OnceLock<Result<jsonschema::Validator, String>>,
    output_validator: OnceLock<Result<Option<jsonschema::Validator>, String>>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("effect", &self.effect)
            .field("digest", &self.digest)
            .field("world", &self.world)
            .field("path", &self.path)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// The compiled input schema.
    pub(crate) fn input_validator(&self) -> Result<&jsonschema::Validator, CallError> {
        self.input_validator
            .get_or_init(|| compile_schema("input", &self.input_schema))
            .as_ref()
            .map_err(|e| CallError::Internal(format!("{}: {e}", self.name)))
    }

    /// The compiled output schema, if the tool has one.
    pub(crate) fn output_validator(&self) -> Result<Option<&jsonschema::Validator>, CallError> {
        self.output_validator
            .get_or_init(|| {
                self.output_schema
                    .as_ref()
                    .map(|s| compile_schema("output", s))
                    .transpose()
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(|e| CallError::Internal(format!("{}: {e}", self.name)))
    }

    /// Whether this process compiled the component or read it from the
    /// cache; `None` until it is loaded (see `Sandbox::load`).
    pub fn source(&self) -> Option<LoadSource> {
        self.component.get().map(|(_, source)| *source)
    }
}

/// What the first bytes of a file say it is.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly file (no \\0asm header)".into());
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        1 => Ok(()),
        0 => Err("a core wasm module, not a component: build the tool for wasm32-wasip2".into()),
        layer => Err(format!("unknown wasm layer {layer}")),
    }
}

/// Compiles (or reads from cache) and links one component, before
/// `describe`; `digest` is blake3 of `bytes`.
pub(crate) fn prepare(
    engine: &Engine,
    linker: &Linker<HostState>,
    cache: &ArtifactCache,
    bytes: &[u8],
    digest: &str,
) -> Result<(ToolPre<HostState>, LoadSource), String> {
    check_header(bytes)?;
    let (component, source) = cache.load(engine, bytes, digest)?;
    link(engine, linker, &component).map(|pre| (pre, source))
}

/// The component of `digest` at `location`: the authenticated artifact if
/// the cache has one, else a compile of the bytes, which must still be
/// those `digest` names.
pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    cache: &ArtifactCache,
    location: &Location,
    digest: &str,
) -> Result<(ToolPre<HostState>, LoadSource), String> {
    if let Some(component) = cache.load_cached(engine, digest) {
        return link(engine, linker, &component).map(|pre| (pre, LoadSource::Cached));
    }
    let bytes = location.read().map_err(|e| format!("cannot read: {e}"))?;
    if blake3::hash(&bytes).to_hex().as_str() != digest {
        return Err("the file changed since the sandbox opened".into());
    }
    prepare(engine, linker, cache, &bytes, digest)
}

fn link(
    engine: &Engine,
    linker: &Linker<HostState>,
    component: &wasmtime::component::Component,
) -> Result<ToolPre<HostState>, String> {
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("needs an import the sandbox does not provide: {e}"))?;
    ToolPre::new(engine, component, instance_pre)
}

/// Metadata that passed [`check_metadata`] when it was described, a
/// digest and (maybe) a loaded component, as a [`Tool`]. Its schemas are
/// parsed now and compiled on first use.
pub(crate) fn finish(
    origin: Origin,
    location: Location,
    digest: String,
    component: Option<(ToolPre<HostState>, LoadSource)>,
    meta: &super::bindings::types::Metadata,
    world: WorldVersion,
) -> Result<Tool, LoadError> {
    let path = location.display();
    let fail = |reason: String| LoadError {
        path: path.clone(),
        reason,
    };
    if !valid_name(&meta.name) {
        return Err(fail(format!("tool name `{}` is not valid", meta.name)));
    }
    let parse = |what: &str, text: &str| {
        serde_json::from_str::<Value>(text)
            .map_err(|e| fail(format!("{what} schema is not JSON: {e}")))
    };
    let input_schema = parse("input", &meta.input_schema)?;
    let output_schema = match &meta.output_schema {
        Some(text) => Some(parse("output", text)?),
        None => None,
    };
    let cell = match component {
        Some(c) => tokio::sync::OnceCell::new_with(Some(c)),
        None => tokio::sync::OnceCell::new(),
    };
    Ok(Tool {
        name: meta.name.clone(),
        description: meta.description.clone(),
        version: meta.version.clone(),
        effect: effect_name(meta.effect),
        input_schema,
        output_schema,
        path,
        origin,
        digest,
        world,
        location,
        component: cell,
        input_validator: OnceLock::new(),
        output_validator: OnceLock::new(),
    })
}

fn compile_schema(what: &str, schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::draft202012::new(schema)
        .map_err(|e| format!("{what} schema is not a valid JSON Schema: {e}"))
}

fn effect_name(effect: Effect) -> EffectName {
    match effect {
        Effect::Pure => EffectName::Pure,
        Effect::ReadOnly => EffectName::ReadOnly,
        Effect::Idempotent => EffectName::Idempotent,
        Effect::SideEffecting => EffectName::SideEffecting,
    }
}

/// Whatever a tool's `describe` returns (it is the tool's to choose): a
/// usable name and JSON Schemas that compile, or the reason they are not.
/// Checked once, when a component is described; what passes is recorded.
pub(crate) fn check_metadata(meta: &super::bindings::types::Metadata) -> Result<(), String> {
    if !valid_name(&meta.name) {
        return Err(format!(
            "tool name `{}` must be 1-64 characters of a-z, 0-9, `_` or `-`",
            meta.name
        ));
    }
    let schemas = [
        ("input", Some(&meta.input_schema)),
        ("output", meta.output_schema.as_ref()),
    ];
    for (what, text) in schemas {
        let Some(text) = text else { continue };
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("{what} schema is not JSON: {e}"))?;
        compile_schema(what, &schema)?;
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The `.wasm` files of a directory, sorted so loading order is stable.
pub(crate) fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_modules_from_components() {
        assert!(check_header(b"\0asm\x0d\x00\x01\x00").is_ok());
        assert!(
            check_header(b"\0asm\x01\x00\x00\x00")
                .unwrap_err()
                .contains("core wasm module")
        );
        assert!(
            check_header(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly")
        );
        assert!(check_header(b"").is_err());
    }

    use proptest::prelude::*;

    use super::super::bindings::types::Metadata;

    fn json_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            crate::sandbox::tests_support::json_value().prop_map(|v| v.to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever `describe` returns, checking it never panics: it is a
        /// usable tool or a reason.
        #[test]
        fn arbitrary_metadata_is_checked_without_panicking(
            name in prop_oneof![any::<String>(), "[a-z_-]{1,70}"],
            input_schema in json_text(),
            output_schema in proptest::option::of(json_text()),
            effect in 0u8..4,
        ) {
            let meta = Metadata {
                name: name.clone(),
                description: String::new(),
                version: String::new(),
                input_schema,
                output_schema,
                effect: [Effect::Pure, Effect::ReadOnly, Effect::Idempotent, Effect::SideEffecting][effect as usize],
            };
            match check_metadata(&meta) {
                Ok(_) => prop_assert!(valid_name(&name)),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }
    }

    #[test]
    fn names_are_restricted() {
        assert!(valid_name("http_fetch"));
        assert!(!valid_name(""));
        assert!(!valid_name("Calc"));
        assert!(!valid_name("a/b"));
    }
}
