//! `calc`: evaluates an arithmetic expression with `evalexpr`.
//!
//! `{"expr": "2*(3+4)"}` -> `{"value": 14}`. Integers stay integers
//! (`7/2` is `3`, as in `evalexpr`); any float makes the result a float.

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

/// The expression to evaluate.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// An arithmetic expression, such as `2*(3+4)` or `sqrt(2) * 1.5`.
    pub expr: String,
}

/// A number: integer when the expression stayed in integers.
#[derive(Serialize, JsonSchema, Debug, PartialEq)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
}

#[derive(Serialize, JsonSchema, Debug, PartialEq)]
pub struct Output {
    pub value: Number,
}

pub fn calc(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    let value = evalexpr::eval(&input.expr).map_err(|e| match e {
        evalexpr::EvalexprError::DivisionError { .. } => ToolError::Failed(e.to_string()),
        other => ToolError::InvalidInput(format!("expr: {other}")),
    })?;
    let value = match value {
        evalexpr::Value::Int(i) => Number::Int(i),
        evalexpr::Value::Float(f) if f.is_finite() => Number::Float(f),
        evalexpr::Value::Float(f) => return Err(ToolError::Failed(format!("result is {f}"))),
        other => {
            return Err(ToolError::InvalidInput(format!(
                "expr: evaluates to {other}, not a number"
            )));
        }
    };
    Ok(Output { value })
}

toolhost_sdk::export_tool! {
    name: "calc",
    description: "Evaluates an arithmetic expression, such as 2*(3+4).",
    effect: Pure,
    run: calc,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str) -> Result<Output, ToolError> {
        calc(Input { expr: expr.into() }, &Context::for_tests())
    }

    #[test]
    fn integer_arithmetic() {
        assert_eq!(eval("2*(3+4)").unwrap().value, Number::Int(14));
    }

    #[test]
    fn floats_stay_floats() {
        assert_eq!(eval("1.5 * 2").unwrap().value, Number::Float(3.0));
    }

    #[test]
    fn the_whole_call_path_prints_plain_json() {
        let out = toolhost_sdk::invoke(&Context::for_tests(), r#"{"expr":"2*(3+4)"}"#, calc);
        assert_eq!(out.unwrap(), r#"{"value":14}"#);
    }

    #[test]
    fn syntax_errors_are_invalid_input() {
        assert!(matches!(eval("2*("), Err(ToolError::InvalidInput(_))));
        assert!(matches!(eval("true"), Err(ToolError::InvalidInput(_))));
    }

    #[test]
    fn division_by_zero_fails() {
        assert!(matches!(eval("1/0"), Err(ToolError::Failed(_))));
    }
}
