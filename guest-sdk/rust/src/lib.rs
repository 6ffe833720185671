//! # toolhost-sdk: write a sandboxed tool in one function
//!
//! A toolhost tool is a WebAssembly component (`wasm32-wasip2`) that exports
//! the `toolhost:tool/tool@0.2.0` world, or `reconciling-tool@0.2.0` when it
//! can tell whether a call in doubt took effect (see `wit/world.wit`). This
//! crate hides those worlds: a tool author writes an input type, an output
//! type and one function (and, optionally, a `reconcile` function), and
//! [`export_tool!`] does the rest:
//!
//! - `describe` reports the tool's name, description, version (the crate's
//!   `Cargo.toml` version), effect and the JSON Schemas (2020-12) of its input
//!   and output, derived by `schemars` from the two types and kept to
//!   standard JSON Schema (no `uint16`-style formats; a field of any JSON
//!   value lists every type), see [`schema`];
//! - `call` parses the input JSON into the input type (a mismatch becomes
//!   [`ToolError::InvalidInput`] naming serde's path, such as `expr: invalid
//!   type: integer, expected a string`), runs the function and serialises the
//!   output;
//! - `reconcile` (with `reconcile: FUNCTION` in [`export_tool!`]) answers,
//!   for a call whose process died before its outcome was recorded, whether
//!   its effect happened ([`Reconciliation`]): the host asks it instead of
//!   leaving the call `in_doubt` for an operator.
//!
//! ```
//! use toolhost_sdk::{Context, JsonSchema, ToolError, Deserialize, Serialize};
//!
//! /// Input: the text to shout.
//! #[derive(Deserialize, JsonSchema)]
//! struct Input {
//!     /// What to shout.
//!     text: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Output {
//!     shouted: String,
//! }
//!
//! fn shout(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
//!     if input.text.is_empty() {
//!         return Err(ToolError::InvalidInput("text is empty".into()));
//!     }
//!     Ok(Output { shouted: input.text.to_uppercase() })
//! }
//!
//! toolhost_sdk::export_tool! {
//!     name: "shout",
//!     description: "Upper-cases a text.",
//!     effect: Pure,
//!     run: shout,
//! }
//! # fn main() {
//! #     let ctx = Context::for_tests();
//! #     let out = toolhost_sdk::invoke(&ctx, r#"{"text":"hi"}"#, shout).unwrap();
//! #     assert_eq!(out, r#"{"shouted":"HI"}"#);
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (the crate
//! must be a `cdylib`) and point toolhost's `tools_dir` at the `.wasm`.
//!
//! ## What a tool can touch
//!
//! Nothing, unless its policy in `toolhost.toml` grants it: no files, no
//! environment variables, no network. `std::fs` calls outside a granted
//! directory fail; convert such I/O errors with `?` (there is a `From` impl)
//! and the host reports them as `capability_denied`.
//!
//! ## The forwarded key
//!
//! For an `Idempotent` or `SideEffecting` tool the host adds an
//! `Idempotency-Key` header to every POST, PUT, PATCH or DELETE the tool
//! sends (unless the tool set it): a value derived from the call's key and
//! the endpoint, the same on every attempt of the key. A remote API that
//! dedups by it sees a re-run as the same request. [`Context::forwarded_key`]
//! computes the value the host sent, so `reconcile` can look the effect up.

// The generated bindings name their runtime by this crate's public path, so
// the same path must resolve inside the crate too.
extern crate self as toolhost_sdk;

use std::fmt;

mod forwarded;
pub mod http;
pub mod schema;

pub use schemars::{self, JsonSchema};
pub use serde::{self, Deserialize, Serialize};
pub use serde_json;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tool",
        pub_export_macro: true,
        default_bindings_module: "toolhost_sdk::bindings",
        runtime_path: "toolhost_sdk::__private::wit_bindgen::rt",
    });
}

/// The `reconciling-tool` world, over the same types as `tool`.
#[doc(hidden)]
pub mod reconciling_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "reconciling-tool",
        pub_export_macro: true,
        default_bindings_module: "toolhost_sdk::reconciling_bindings",
        runtime_path: "toolhost_sdk::__private::wit_bindgen::rt",
        with: { "toolhost:tool/types@0.2.0": crate::bindings::toolhost::tool::types },
    });
}

use bindings::toolhost::tool::types as wit;

/// What a call does to the world; the host picks caching and claiming from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Same input, same output, no effects: results are replayed from cache.
    Pure,
    /// Reads the world but changes nothing: cached for a freshness TTL.
    ReadOnly,
    /// Changes the world, but running twice is as running once.
    Idempotent,
    /// Changes the world: run exactly once per idempotency key.
    SideEffecting,
}

impl From<Effect> for wit::Effect {
    fn from(e: Effect) -> Self {
        match e {
            Effect::Pure => wit::Effect::Pure,
            Effect::ReadOnly => wit::Effect::ReadOnly,
            Effect::Idempotent => wit::Effect::Idempotent,
            Effect::SideEffecting => wit::Effect::SideEffecting,
        }
    }
}

/// The call context the host hands to every call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The call's idempotency key (hex). Forward it to remote APIs that accept
    /// one, so a retried call is recognised there too.
    pub idempotency_key: String,
    /// 1 on the first execution of this key; higher when an operator retries.
    pub attempt: u32,
    /// Wall-clock budget left for this call, in milliseconds.
    pub deadline_ms: u64,
}

impl Context {
    /// The `Idempotency-Key` value the host adds to a `method` request to
    /// `url` in this call (for `Idempotent` and `SideEffecting` tools, on
    /// POST, PUT, PATCH and DELETE, unless the tool set the header): the
    /// same on every attempt of this key. `None` for a method that carries
    /// none, or a URL that is not absolute `http(s)`. A tool's `reconcile`
    /// looks its effect up by the value of the request that made it.
    pub fn forwarded_key(&self, method: &str, url: &str) -> Option<String> {
        if !forwarded::is_mutating(method) {
            return None;
        }
        let (origin, path) = forwarded::split_url(url)?;
        Some(forwarded::derive(
            &self.idempotency_key,
            method,
            &origin,
            path,
        ))
    }

    /// A context for unit tests run natively: a fixed key, attempt 1, 10 s.
    pub fn for_tests() -> Self {
        Context {
            idempotency_key: "00".repeat(32),
            attempt: 1,
            deadline_ms: 10_000,
        }
    }
}

/// What a tool's `reconcile` found out about a call in doubt: the remote
/// system's answer to "did the effect of this key happen?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciliation<O> {
    /// It happened: the output `call` would have returned. The host records
    /// it as the call's outcome (flagged `reconciled`).
    Committed(O),
    /// It did not happen: the host runs `call` again, with the next attempt.
    NotDone,
    /// The remote cannot tell (yet): the call stays in doubt, and is asked
    /// again later. The text says why.
    Unknown(String),
}

/// Why a call failed, as the tool sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolError {
    /// The caller's fault: not retried, shown to the model.
    InvalidInput(String),
    /// Ran and failed: not retried.
    Failed(String),
    /// Worth retrying later (a remote service is busy).
    Transient(String),
}

/// The prefix of a [`ToolError::Failed`] message that the host reports as
/// `capability_denied`. The WIT world has no case of its own for it, and a
/// tool cannot gain anything by claiming it.
pub const CAPABILITY_DENIED_PREFIX: &str = "capability_denied: ";

impl ToolError {
    /// The sandbox refused an access (a file outside every grant, say).
    pub fn capability_denied(what: impl fmt::Display) -> Self {
        ToolError::Failed(format!("{CAPABILITY_DENIED_PREFIX}{what}"))
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            ToolError::Failed(m) => write!(f, "failed: {m}"),
            ToolError::Transient(m) => write!(f, "transient: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// WASI's `ENOTCAPABLE`: the path lies outside every granted directory.
const ENOTCAPABLE: i32 = 76;

impl From<std::io::Error> for ToolError {
    /// Access outside the sandbox's grants becomes `capability_denied`;
    /// any other I/O error is a plain failure.
    fn from(e: std::io::Error) -> Self {
        let denied = e.kind() == std::io::ErrorKind::PermissionDenied
            || e.raw_os_error() == Some(ENOTCAPABLE);
        if denied {
            ToolError::capability_denied(e)
        } else {
            ToolError::Failed(e.to_string())
        }
    }
}

/// Converts an I/O error on `path` into a [`ToolError`], telling a path
/// outside every granted directory (`capability_denied`) from a file that is
/// merely missing inside one (`failed`).
///
/// WASI resolves paths against the preopened directories inside the guest,
/// so a path outside all of them fails with a plain "not found" that never
/// reached the host. The difference shows in the ancestors: inside a grant,
/// some ancestor directory is reachable; outside every grant, none is.
pub fn io_error(path: &std::path::Path, e: std::io::Error) -> ToolError {
    let refused =
        e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(ENOTCAPABLE);
    let outside = e.kind() == std::io::ErrorKind::NotFound
        && path.is_absolute()
        && !path
            .ancestors()
            .skip(1)
            .any(|a| std::fs::metadata(a).is_ok());
    if outside {
        ToolError::capability_denied(format!(
            "{} is outside every directory this tool was granted",
            path.display()
        ))
    } else if refused {
        ToolError::capability_denied(format!("{}: {e}", path.display()))
    } else {
        ToolError::Failed(format!("{}: {e}", path.display()))
    }
}

impl From<ToolError> for wit::ToolError {
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::InvalidInput(m) => wit::ToolError::InvalidInput(m),
            ToolError::Failed(m) => wit::ToolError::Failed(m),
            ToolError::Transient(m) => wit::ToolError::Transient(m),
        }
    }
}

/// The JSON Schema (2020-12, standard formats only) of `T` as a string.
fn schema_of<T: JsonSchema>() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .with_transform(schema::Standard)
        .into_generator()
        .into_root_schema_for::<T>();
    // A schema is a tree of maps and strings: serialising it cannot fail.
    serde_json::to_string(&schema).expect("a JSON Schema serialises")
}

/// Runs `f` on a JSON input: parse, call, serialise. Used by [`export_tool!`];
/// public so that tools can unit-test their whole call path natively.
pub fn invoke<I, O, F>(ctx: &Context, input: &str, f: F) -> Result<String, ToolError>
where
    I: serde::de::DeserializeOwned,
    O: Serialize,
    F: FnOnce(I, &Context) -> Result<O, ToolError>,
{
    let de = &mut serde_json::Deserializer::from_str(input);
    let parsed: I = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ToolError::InvalidInput(e.inner().to_string())
        } else {
            ToolError::InvalidInput(format!("{path}: {}", e.inner()))
        }
    })?;
    let output = f(parsed, ctx)?;
    serde_json::to_string(&output).map_err(|e| ToolError::Failed(format!("output: {e}")))
}

/// Runs a reconcile function on a JSON input: parse, ask, serialise a
/// committed output. Used by [`export_tool!`]; public so that tools can
/// unit-test it natively.
pub fn invoke_reconcile<I, O, F>(
    ctx: &Context,
    input: &str,
    f: F,
) -> Result<Reconciliation<String>, ToolError>
where
    I: serde::de::DeserializeOwned,
    O: Serialize,
    F: FnOnce(I, &Context) -> Result<Reconciliation<O>, ToolError>,
{
    let mut answer = None;
    invoke(ctx, input, |i: I, ctx: &Context| {
        answer = Some(f(i, ctx)?);
        Ok(())
    })?;
    Ok(match answer {
        Some(Reconciliation::Committed(out)) => Reconciliation::Committed(
            serde_json::to_string(&out).map_err(|e| ToolError::Failed(format!("output: {e}")))?,
        ),
        Some(Reconciliation::Unknown(why)) => Reconciliation::Unknown(why),
        Some(Reconciliation::NotDone) | None => Reconciliation::NotDone,
    })
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use super::*;

    pub use super::bindings::Guest;
    pub use super::bindings::toolhost::tool::types::{
        CallContext, Metadata, Reconciliation as WitReconciliation, ToolError as WitToolError,
    };
    pub use super::reconciling_bindings::Guest as ReconcilingGuest;

    /// `describe`, with the schemas taken from the run function's types.
    pub fn describe<I, O, F>(
        name: &str,
        description: &str,
        version: &str,
        effect: Effect,
        _run: F,
    ) -> Metadata
    where
        I: JsonSchema,
        O: JsonSchema,
        F: FnOnce(I, &Context) -> Result<O, ToolError>,
    {
        Metadata {
            name: name.to_string(),
            description: description.to_string(),
            version: version.to_string(),
            input_schema: schema_of::<I>(),
            output_schema: Some(schema_of::<O>()),
            effect: effect.into(),
        }
    }

    /// `call`, converting the WIT context and error types.
    pub fn call<I, O, F>(ctx: CallContext, input: &str, run: F) -> Result<String, WitToolError>
    where
        I: serde::de::DeserializeOwned,
        O: Serialize,
        F: FnOnce(I, &Context) -> Result<O, ToolError>,
    {
        invoke(&context(ctx), input, run).map_err(Into::into)
    }

    /// `reconcile`, converting the WIT context, answer and error types.
    pub fn reconcile<I, O, F>(
        ctx: CallContext,
        input: &str,
        f: F,
    ) -> Result<WitReconciliation, WitToolError>
    where
        I: serde::de::DeserializeOwned,
        O: Serialize,
        F: FnOnce(I, &Context) -> Result<Reconciliation<O>, ToolError>,
    {
        Ok(match invoke_reconcile(&context(ctx), input, f)? {
            Reconciliation::Committed(out) => WitReconciliation::Committed(out),
            Reconciliation::NotDone => WitReconciliation::NotDone,
            Reconciliation::Unknown(why) => WitReconciliation::Unknown(why),
        })
    }

    fn context(ctx: CallContext) -> Context {
        Context {
            idempotency_key: ctx.idempotency_key,
            attempt: ctx.attempt,
            deadline_ms: ctx.deadline_ms,
        }
    }
}

/// Exports a tool: its name, a one-line description, its [`Effect`] and the
/// function that runs it, `fn(Input, &Context) -> Result<Output, ToolError>`.
///
/// With `reconcile: FUNCTION`, `fn(Input, &Context) ->
/// Result<Reconciliation<Output>, ToolError>`, the component exports the
/// `reconciling-tool` world: the host asks that function about calls in
/// doubt (it must look the effect up, never perform it).
///
/// The version is the tool crate's `CARGO_PKG_VERSION`.
#[macro_export]
macro_rules! export_tool {
    (
        name: $name:expr,
        description: $description:expr,
        effect: $effect:ident,
        run: $run:path,
        reconcile: $reconcile:path $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __ToolhostExport;

        impl $crate::__private::ReconcilingGuest for __ToolhostExport {
            $crate::__export_tool_fns!($name, $description, $effect, $run);

            fn reconcile(
                ctx: $crate::__private::CallContext,
                input: String,
            ) -> Result<$crate::__private::WitReconciliation, $crate::__private::WitToolError>
            {
                $crate::__private::reconcile(ctx, &input, $reconcile)
            }
        }

        $crate::reconciling_bindings::export!(
            __ToolhostExport with_types_in $crate::reconciling_bindings
        );
    };
    (
        name: $name:expr,
        description: $description:expr,
        effect: $effect:ident,
        run: $run:path $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __ToolhostExport;

        impl $crate::__private::Guest for __ToolhostExport {
            $crate::__export_tool_fns!($name, $description, $effect, $run);
        }

        $crate::bindings::export!(__ToolhostExport with_types_in $crate::bindings);
    };
}

/// `describe` and `call` of [`export_tool!`], the same in both worlds.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_tool_fns {
    ($name:expr, $description:expr, $effect:ident, $run:path) => {
        fn describe() -> $crate::__private::Metadata {
            $crate::__private::describe(
                $name,
                $description,
                env!("CARGO_PKG_VERSION"),
                $crate::Effect::$effect,
                $run,
            )
        }

        fn call(
            ctx: $crate::__private::CallContext,
            input: String,
        ) -> Result<String, $crate::__private::WitToolError> {
            $crate::__private::call(ctx, &input, $run)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, JsonSchema)]
    struct In {
        n: u32,
    }
    #[derive(Serialize, JsonSchema)]
    struct Out {
        double: u32,
    }

    fn double(i: In, _: &Context) -> Result<Out, ToolError> {
        Ok(Out { double: i.n * 2 })
    }

    #[test]
    fn runs_the_function_on_parsed_input() {
        let out = invoke(&Context::for_tests(), r#"{"n": 21}"#, double).unwrap();
        assert_eq!(out, r#"{"double":42}"#);
    }

    #[test]
    fn a_type_mismatch_names_the_path() {
        let err = invoke(&Context::for_tests(), r#"{"n": "x"}"#, double).unwrap_err();
        let ToolError::InvalidInput(msg) = err else {
            panic!("expected invalid input, got {err:?}")
        };
        assert!(msg.starts_with("n: invalid type: string"), "{msg}");
    }

    #[test]
    fn bad_json_is_invalid_input() {
        let err = invoke(&Context::for_tests(), "{", double).unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
    }

    #[test]
    fn describe_carries_both_schemas() {
        let m = __private::describe("double", "d", "1.0.0", Effect::Pure, double);
        let input: serde_json::Value = serde_json::from_str(&m.input_schema).unwrap();
        assert_eq!(
            input["properties"]["n"],
            serde_json::json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
        );
        assert_eq!(
            input["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let output: serde_json::Value = serde_json::from_str(&m.output_schema.unwrap()).unwrap();
        assert_eq!(output["properties"]["double"]["type"], "integer");
    }

    fn look_up(i: In, ctx: &Context) -> Result<Reconciliation<Out>, ToolError> {
        match (i.n, ctx.attempt) {
            (0, _) => Ok(Reconciliation::NotDone),
            (_, 1) => Ok(Reconciliation::Committed(Out { double: i.n * 2 })),
            _ => Ok(Reconciliation::Unknown("the remote is busy".into())),
        }
    }

    #[test]
    fn reconcile_serialises_a_committed_output_and_passes_the_rest() {
        let ctx = Context::for_tests();
        let answer = invoke_reconcile(&ctx, r#"{"n": 4}"#, look_up).unwrap();
        assert_eq!(answer, Reconciliation::Committed(r#"{"double":8}"#.into()));
        let answer = invoke_reconcile(&ctx, r#"{"n": 0}"#, look_up).unwrap();
        assert_eq!(answer, Reconciliation::NotDone);
        let later = Context {
            attempt: 2,
            ..ctx.clone()
        };
        let answer = invoke_reconcile(&later, r#"{"n": 4}"#, look_up).unwrap();
        assert_eq!(answer, Reconciliation::Unknown("the remote is busy".into()));
        let err = invoke_reconcile(&ctx, r#"{"n": "x"}"#, look_up).unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(_)), "{err:?}");
    }

    #[test]
    fn the_forwarded_key_depends_on_key_and_endpoint_only() {
        let ctx = Context::for_tests();
        let a = ctx
            .forwarded_key("POST", "http://127.0.0.1:9/v1/charges")
            .unwrap();
        let later = Context {
            attempt: 7,
            deadline_ms: 1,
            ..ctx.clone()
        };
        assert_eq!(
            later.forwarded_key("POST", "http://127.0.0.1:9/v1/charges?x=1"),
            Some(a.clone())
        );
        assert_ne!(
            ctx.forwarded_key("POST", "http://127.0.0.1:9/v1/refunds"),
            Some(a)
        );
        assert_eq!(
            ctx.forwarded_key("GET", "http://127.0.0.1:9/v1/charges"),
            None
        );
        assert_eq!(ctx.forwarded_key("POST", "v1/charges"), None);
    }

    #[test]
    fn a_missing_file_in_a_reachable_directory_is_a_failure() {
        let dir = std::env::temp_dir();
        let path = dir.join("toolhost-sdk-no-such-file");
        let e = std::fs::read(&path).unwrap_err();
        assert!(matches!(io_error(&path, e), ToolError::Failed(_)));
    }

    #[test]
    fn io_errors_outside_grants_are_capability_denied() {
        let e: ToolError = std::io::Error::from_raw_os_error(ENOTCAPABLE).into();
        assert!(matches!(&e, ToolError::Failed(m) if m.starts_with(CAPABILITY_DENIED_PREFIX)));
        let e: ToolError = std::io::Error::other("disk full").into();
        assert_eq!(e, ToolError::Failed("disk full".into()));
    }
}
