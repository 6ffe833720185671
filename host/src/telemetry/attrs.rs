//! The attribute names spans carry: the OpenTelemetry GenAI semantic
//! conventions where they name a thing, `toolhost.*` for what only
//! toolhost knows. One place, so a span and a test spell them alike.
//!
//! What is never an attribute: idempotency keys, header values, API keys,
//! prompts. Tool inputs and outputs are attributes only with
//! `[telemetry] capture_content = true` ([`super::content_captured`]).

/// What the span does: `execute_tool`, `chat`, `invoke_agent`.
pub const OPERATION: &str = "gen_ai.operation.name";
/// The provider of a model attempt: `anthropic`, `openai`, `scripted`.
pub const PROVIDER: &str = "gen_ai.provider.name";
/// The model an attempt asked for (the provider's model id).
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// The model that answered, as the provider named it.
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// The agent of an `invoke_agent` span: always `toolhost`.
pub const AGENT_NAME: &str = "gen_ai.agent.name";
/// A run's id: the conversation an `invoke_agent` session continues.
pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
pub const TOOL_NAME: &str = "gen_ai.tool.name";
/// The model's id for one tool call (agent runs), or the JSON-RPC request
/// id of an MCP `tools/call`.
pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// A tool call's canonical input, only with `capture_content`.
pub const TOOL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// A tool call's output, only with `capture_content`.
pub const TOOL_RESULT: &str = "gen_ai.tool.call.result";
/// The stable error kind (`timeout`, `server_error`, ...) of a failure.
pub const ERROR_TYPE: &str = "error.type";
/// The MCP method of a server span: `tools/call`.
pub const MCP_METHOD: &str = "mcp.method.name";

/// The effect the host acted on: `pure`, `read-only`, `idempotent`,
/// `side-effecting`.
pub const EFFECT: &str = "toolhost.effect";
/// How a tool call (or a step) was answered: a [`CacheOutcome`].
pub const CACHE: &str = "toolhost.cache";
/// Fuel the guest burned in this process (0 unless it ran).
pub const FUEL: &str = "toolhost.fuel";
/// Retries within a model turn.
pub const RETRIES: &str = "toolhost.retries";
/// Moves down the fallback chain within a model turn.
pub const FALLBACKS: &str = "toolhost.fallbacks";
/// Why the chain moved on to this attempt's model (the previous model's
/// error kind), on the first attempt of a fallback.
pub const FALLBACK_REASON: &str = "toolhost.fallback.reason";
/// The breaker's state when the attempt asked it: `closed`, `open`,
/// `half_open`.
pub const BREAKER_STATE: &str = "toolhost.breaker.state";
/// The chain entry (`[[models]] name`) an attempt went to, or that served
/// a turn.
pub const MODEL_ENTRY: &str = "toolhost.model";
/// The attempt's number on its model, from 1.
pub const ATTEMPT: &str = "toolhost.attempt";
/// A step's number in its run, from 1.
pub const STEP: &str = "toolhost.step";
/// A streamed attempt: ms from its start to its first content event (the
/// GenAI conventions name this a metric, `gen_ai.server.time_to_first_token`;
/// on the attempt's span it is toolhost's own attribute).
pub const TIME_TO_FIRST_TOKEN_MS: &str = "toolhost.time_to_first_token_ms";
/// A streamed attempt that broke: the output tokens it threw away.
pub const TOKENS_DISCARDED: &str = "toolhost.tokens_discarded";
/// How a run session ended: `completed`, `failed`, `partial`.
pub const RUN_STATUS: &str = "toolhost.run.status";
/// Steps a session served from the journal.
pub const STEPS_RESUMED: &str = "toolhost.steps_resumed";

/// How a tool call was answered. A replayed or journal-served call is never
/// `executed`: only a call whose guest ran in this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The guest ran in this process.
    Executed,
    /// A recorded outcome was replayed from the idempotency cache.
    Replayed,
    /// An agent resume served the outcome from the run's journal.
    ServedFromJournal,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Executed => "executed",
            CacheOutcome::Replayed => "replayed",
            CacheOutcome::ServedFromJournal => "served_from_journal",
        }
    }
}
