//! `echo`: returns its message. The trivial tool: benchmarks use it to
//! measure what the host adds around a call.

use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Any text.
    pub message: String,
}

pub fn echo(input: Message, _ctx: &Context) -> Result<Message, ToolError> {
    Ok(input)
}

toolhost_sdk::export_tool! {
    name: "echo",
    description: "Returns its message unchanged.",
    effect: Pure,
    run: echo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes() {
        let out = toolhost_sdk::invoke(&Context::for_tests(), r#"{"message":"hi"}"#, echo);
        assert_eq!(out.unwrap(), r#"{"message":"hi"}"#);
    }
}
