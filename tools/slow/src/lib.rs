//! `slow`: sleeps for `ms` milliseconds by the monotonic clock, then says how
//! long it slept. The sleep is a host call (WASI `poll`), so it exercises the
//! host-side deadline rather than fuel.

use std::time::{Duration, Instant};
use toolhost_sdk::{Context, Deserialize, JsonSchema, Serialize, ToolError};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// How long to sleep, in milliseconds (at most ten minutes).
    #[schemars(range(max = 600_000))]
    pub ms: u64,
}

#[derive(Serialize, JsonSchema, Debug, PartialEq)]
pub struct Output {
    /// How long the tool slept, in whole milliseconds.
    pub slept_ms: u64,
}

pub fn sleep(input: Input, _ctx: &Context) -> Result<Output, ToolError> {
    if input.ms > 600_000 {
        return Err(ToolError::InvalidInput("ms: at most 600000".into()));
    }
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(input.ms));
    // Report what was asked for unless the clock says we slept short.
    let slept = start.elapsed().as_millis() as u64;
    Ok(Output {
        slept_ms: slept.min(input.ms),
    })
}

toolhost_sdk::export_tool! {
    name: "slow",
    description: "Sleeps for the given number of milliseconds, then returns.",
    effect: Pure,
    run: sleep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_at_least_as_asked() {
        let start = Instant::now();
        let out = sleep(Input { ms: 20 }, &Context::for_tests()).unwrap();
        assert_eq!(out.slept_ms, 20);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn refuses_absurd_sleeps() {
        assert!(sleep(Input { ms: 10_000_000 }, &Context::for_tests()).is_err());
    }
}
