//! What a tool's `describe` said, kept beside its artifact so a start does
//! not run every tool to learn its name.
//!
//! The record is keyed by the wasm digest (the same bytes describe
//! themselves the same way) and sealed like the artifact (`artifacts`): it
//! decides which component a name runs and which schema an input must meet,
//! so a file anyone could write must never be believed. A failure that the
//! bytes alone decide (not wasm, not a component, does not compile or link,
//! a bad name or schema) is recorded too, so a broken file is not recompiled
//! on every start; a failed `describe` run is not (it depends on the limits,
//! which a config edit can raise). A recorded failure names the pool limits
//! it happened under ([`super::engine::pool_limits`]): "does not compile"
//! can be the pool's refusal of a component with more core instances than
//! it allows, which a toolhost with larger limits accepts, so a record made
//! under other limits is not believed.

use serde::{Deserialize, Serialize};

use super::artifacts::{ArtifactCache, METADATA};
use super::bindings::types::Metadata;
use super::bindings::{Effect, WorldVersion};

/// A sealed metadata record: what `describe` returned, or why the bytes
/// cannot load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    Described(Described),
    Failed(Failure),
}

/// Why the bytes cannot load, and under which pool limits that was found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub(crate) reason: String,
    pub(crate) limits: String,
}

impl Record {
    /// A failure found now, under this build's pool limits.
    pub(crate) fn failed(reason: String) -> Self {
        Record::Failed(Failure {
            reason,
            limits: super::engine::pool_limits(),
        })
    }
}

/// `describe`'s answer, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Described {
    name: String,
    description: String,
    version: String,
    input_schema: String,
    output_schema: Option<String>,
    effect: String,
    /// The world the component exports (`toolhost:tool/tool@0.1.0`...).
    world: String,
}

impl Described {
    pub(crate) fn of(meta: &Metadata, world: WorldVersion) -> Self {
        Described {
            name: meta.name.clone(),
            description: meta.description.clone(),
            version: meta.version.clone(),
            input_schema: meta.input_schema.clone(),
            output_schema: meta.output_schema.clone(),
            effect: effect_name(meta.effect).to_string(),
            world: world.as_str().to_string(),
        }
    }

    /// The world the component exports; `None` for one this build does
    /// not know.
    pub(crate) fn world(&self) -> Option<WorldVersion> {
        WorldVersion::parse(&self.world)
    }

    /// The name the tool gave itself.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Back to the WIT type; `None` for an effect this build does not know.
    pub(crate) fn metadata(&self) -> Option<Metadata> {
        let effect = [
            Effect::Pure,
            Effect::ReadOnly,
            Effect::Idempotent,
            Effect::SideEffecting,
        ]
        .into_iter()
        .find(|e| effect_name(*e) == self.effect)?;
        Some(Metadata {
            name: self.name.clone(),
            description: self.description.clone(),
            version: self.version.clone(),
            input_schema: self.input_schema.clone(),
            output_schema: self.output_schema.clone(),
            effect,
        })
    }
}

fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Pure => "pure",
        Effect::ReadOnly => "read-only",
        Effect::Idempotent => "idempotent",
        Effect::SideEffecting => "side-effecting",
    }
}

/// The authentic record for `digest`, if the cache has one.
pub(crate) fn read(cache: &ArtifactCache, digest: &str) -> Option<Record> {
    let bytes = cache.read_sealed(METADATA, digest)?;
    match serde_json::from_slice(&bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            // Authentic but unreadable: written by another toolhost version.
            tracing::debug!(digest, error = %e, "ignoring a metadata record of another format");
            None
        }
    }
}

/// Records what `digest`'s bytes are.
pub(crate) fn write(cache: &ArtifactCache, digest: &str, record: &Record) {
    if let Ok(bytes) = serde_json::to_vec(record) {
        cache.write_sealed(METADATA, digest, &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal recorded by a build with the old 8-instance pool (a bare
    /// reason) no longer reads as a record: it is ignored and the component
    /// compiled again; a new one carries the limits it was found under.
    #[test]
    fn a_failure_names_its_pool_limits_and_an_old_one_is_not_believed() {
        let old = br#"{"failed":"does not compile: 14 core module instances exceed 8"}"#;
        assert!(serde_json::from_slice::<Record>(old).is_err());
        let text = serde_json::to_vec(&Record::failed("bad".into())).unwrap();
        let Record::Failed(back) = serde_json::from_slice(&text).unwrap() else {
            panic!("not a failure");
        };
        assert_eq!(back.reason, "bad");
        assert_eq!(back.limits, super::super::engine::pool_limits());
    }

    #[test]
    fn a_record_round_trips_every_effect() {
        for effect in [
            Effect::Pure,
            Effect::ReadOnly,
            Effect::Idempotent,
            Effect::SideEffecting,
        ] {
            let meta = Metadata {
                name: "t".into(),
                description: "d".into(),
                version: "1".into(),
                input_schema: "{}".into(),
                output_schema: Some("{}".into()),
                effect,
            };
            let described = Described::of(&meta, WorldVersion::Reconciling020);
            let text = serde_json::to_vec(&Record::Described(described)).unwrap();
            let Record::Described(back) = serde_json::from_slice(&text).unwrap() else {
                panic!("not described");
            };
            let meta_back = back.metadata().unwrap();
            assert_eq!(meta_back.name, "t");
            assert_eq!(effect_name(meta_back.effect), effect_name(effect));
            assert_eq!(back.world(), Some(WorldVersion::Reconciling020));
            let back = back.metadata().unwrap();
            assert_eq!(back.output_schema.as_deref(), Some("{}"));
        }
    }
}
