//! `jq`: runs a jq filter over a JSON value with jaq, a jq implementation in
//! Rust, and returns every result.
//!
//! `{"filter": ".a[1]", "input": {"a": [1, 2]}}` -> `{"results": [2]}`.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use toolhost_sdk::serde_json::{self, Value};
use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

/// More results than this is a runaway filter (`repeat(.)`), not an answer.
pub const MAX_RESULTS: usize = 10_000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A jq filter, such as `.a[1]` or `.[] | select(.ok)`.
    pub filter: String,
    /// The JSON value to run it on.
    pub input: Value,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct Output {
    /// Every value the filter produced, in order.
    pub results: Vec<Value>,
}

pub fn run(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    let program = File {
        code: input.filter.as_str(),
        path: (),
    };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(&arena, program)
        .map_err(|errs| ToolError::InvalidInput(format!("filter: cannot parse: {errs:?}")))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| ToolError::InvalidInput(format!("filter: cannot compile: {errs:?}")))?;

    // The input came from serde_json, so it is valid JSON for jaq too.
    let text = input.input.to_string();
    let value = jaq_json::read::parse_single(text.as_bytes())
        .map_err(|e| ToolError::InvalidInput(format!("input: {e}")))?;

    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut results = Vec::new();
    for out in filter.id.run((ctx, value)).map(unwrap_valr) {
        let val = out.map_err(|e| ToolError::Failed(format!("jq error: {e}")))?;
        if results.len() == MAX_RESULTS {
            return Err(ToolError::Failed(format!(
                "the filter produced more than {MAX_RESULTS} results"
            )));
        }
        let json = serde_json::from_str(&val.to_string())
            .map_err(|e| ToolError::Failed(format!("result {val} is not JSON: {e}")))?;
        results.push(json);
    }
    Ok(Output { results })
}

toolhost_sdk::export_tool! {
    name: "jq",
    description: "Runs a jq filter over a JSON value and returns every result.",
    effect: Pure,
    run: run,
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolhost_sdk::serde_json::json;

    fn jq(filter: &str, input: Value) -> Result<Vec<Value>, ToolError> {
        let input = Input {
            filter: filter.into(),
            input,
        };
        run(input, &Context::for_tests()).map(|o| o.results)
    }

    #[test]
    fn index() {
        assert_eq!(jq(".a[1]", json!({"a": [1, 2]})).unwrap(), vec![json!(2)]);
    }

    #[test]
    fn many_results_and_std_functions() {
        let out = jq(".[] | select(. > 1) | tostring", json!([1, 2, 3])).unwrap();
        assert_eq!(out, vec![json!("2"), json!("3")]);
        assert_eq!(jq("map(.*2) | add", json!([1, 2])).unwrap(), vec![json!(6)]);
    }

    #[test]
    fn objects_and_strings_round_trip() {
        let v = json!({"s": "a\"b", "n": null, "f": 1.5});
        assert_eq!(jq(".", v.clone()).unwrap(), vec![v]);
    }

    #[test]
    fn parse_errors_are_invalid_input() {
        assert!(matches!(
            jq(".[", json!(1)),
            Err(ToolError::InvalidInput(_))
        ));
    }

    #[test]
    fn runtime_errors_fail() {
        assert!(matches!(jq(".a", json!(1)), Err(ToolError::Failed(_))));
    }

    #[test]
    fn runaway_filters_stop() {
        assert!(matches!(
            jq("repeat(.)", json!(1)),
            Err(ToolError::Failed(_))
        ));
    }
}
