//! Host-side bindings of the tool worlds, generated from the WIT files
//! themselves so host and guests cannot disagree on them: `tool` and
//! `reconciling-tool` of `toolhost:tool@0.2.0` (the guest SDK's WIT), and
//! the frozen `tool` of `toolhost:tool@0.1.0` (`host/wit/tool-0.1.0`).
//!
//! The three share one set of Rust types: 0.2.0 only added a type
//! (`reconciliation`) and a world, so every type a 0.1.0 component's
//! exports use is, field for field and case for case, the 0.2.0 one, and
//! the component model checks types by structure. [`ToolPre`] is whichever
//! world a component exports (decision 0083).

use wasmtime::component::{Component, InstancePre};
use wasmtime::{AsContextMut, Engine};

mod reconciling {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "reconciling-tool",
        exports: { default: async },
    });
}

mod plain {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "tool",
        exports: { default: async },
        with: { "toolhost:tool/types": super::reconciling::toolhost::tool::types },
    });
}

pub use self::reconciling::toolhost::tool::types;
pub use self::types::Effect;
use self::types::{CallContext, Metadata, Reconciliation, ToolError};

/// Which contract a component was built against, as `tools inspect` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorldVersion {
    /// `toolhost:tool/tool@0.1.0`: `describe` and `call`.
    Tool010,
    /// `toolhost:tool/tool@0.2.0`: the same exports.
    Tool020,
    /// `toolhost:tool/reconciling-tool@0.2.0`: `reconcile` too.
    Reconciling020,
}

impl WorldVersion {
    /// The world's full name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorldVersion::Tool010 => "toolhost:tool/tool@0.1.0",
            WorldVersion::Tool020 => "toolhost:tool/tool@0.2.0",
            WorldVersion::Reconciling020 => "toolhost:tool/reconciling-tool@0.2.0",
        }
    }

    /// Whether a component of this world exports `reconcile`.
    pub fn reconciles(self) -> bool {
        self == WorldVersion::Reconciling020
    }

    /// Back from [`WorldVersion::as_str`] (a sealed metadata record).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            WorldVersion::Tool010,
            WorldVersion::Tool020,
            WorldVersion::Reconciling020,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

/// A component linked and checked against the world it exports.
pub(crate) enum ToolPre<T: 'static> {
    Plain(plain::ToolPre<T>, WorldVersion),
    Reconciling(reconciling::ReconcilingToolPre<T>),
}

impl<T: 'static> Clone for ToolPre<T> {
    fn clone(&self) -> Self {
        match self {
            ToolPre::Plain(p, w) => ToolPre::Plain(p.clone(), *w),
            ToolPre::Reconciling(p) => ToolPre::Reconciling(p.clone()),
        }
    }
}

impl<T: Send + 'static> ToolPre<T> {
    /// The world `component` exports, checked: `reconciling-tool` if it
    /// exports `reconcile`, else `tool` (of the version its types import
    /// names).
    pub(crate) fn new(
        engine: &Engine,
        component: &Component,
        instance_pre: InstancePre<T>,
    ) -> Result<Self, String> {
        if let Ok(pre) = reconciling::ReconcilingToolPre::new(instance_pre.clone()) {
            return Ok(ToolPre::Reconciling(pre));
        }
        let pre = plain::ToolPre::new(instance_pre).map_err(|e| {
            format!(
                "is not a toolhost:tool/tool component (of 0.1.0 or 0.2.0) \
                 nor a toolhost:tool/reconciling-tool@0.2.0 one: {e}"
            )
        })?;
        Ok(ToolPre::Plain(pre, plain_version(engine, component)))
    }

    /// Which world it exports.
    pub(crate) fn world(&self) -> WorldVersion {
        match self {
            ToolPre::Plain(_, w) => *w,
            ToolPre::Reconciling(_) => WorldVersion::Reconciling020,
        }
    }

    /// A fresh instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<Instance> {
        Ok(match self {
            ToolPre::Plain(pre, _) => Instance::Plain(pre.instantiate_async(store).await?),
            ToolPre::Reconciling(pre) => Instance::Reconciling(pre.instantiate_async(store).await?),
        })
    }
}

/// The 0.1.0 and 0.2.0 `tool` worlds export the same functions of the same
/// types; what tells them apart is the version of the `types` interface
/// the component imports.
fn plain_version(engine: &Engine, component: &Component) -> WorldVersion {
    let legacy = component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name == "toolhost:tool/types@0.1.0");
    if legacy {
        WorldVersion::Tool010
    } else {
        WorldVersion::Tool020
    }
}

/// One instantiated tool.
pub(crate) enum Instance {
    Plain(plain::Tool),
    Reconciling(reconciling::ReconcilingTool),
}

impl Instance {
    pub(crate) async fn describe<S: AsContextMut<Data: Send>>(
        &self,
        store: S,
    ) -> wasmtime::Result<Metadata> {
        match self {
            Instance::Plain(t) => t.call_describe(store).await,
            Instance::Reconciling(t) => t.call_describe(store).await,
        }
    }

    pub(crate) async fn call<S: AsContextMut<Data: Send>>(
        &self,
        store: S,
        ctx: &CallContext,
        input: &str,
    ) -> wasmtime::Result<Result<String, ToolError>> {
        match self {
            Instance::Plain(t) => t.call_call(store, ctx, input).await,
            Instance::Reconciling(t) => t.call_call(store, ctx, input).await,
        }
    }

    /// `reconcile`, or `None` for a component without it.
    pub(crate) async fn reconcile<S: AsContextMut<Data: Send>>(
        &self,
        store: S,
        ctx: &CallContext,
        input: &str,
    ) -> wasmtime::Result<Option<Result<Reconciliation, ToolError>>> {
        match self {
            Instance::Plain(_) => Ok(None),
            Instance::Reconciling(t) => t.call_reconcile(store, ctx, input).await.map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_names_round_trip() {
        for w in [
            WorldVersion::Tool010,
            WorldVersion::Tool020,
            WorldVersion::Reconciling020,
        ] {
            assert_eq!(WorldVersion::parse(w.as_str()), Some(w));
        }
        assert!(WorldVersion::Reconciling020.reconciles());
        assert!(!WorldVersion::Tool010.reconciles());
        assert_eq!(WorldVersion::parse("toolhost:tool/tool@9.0.0"), None);
    }
}
