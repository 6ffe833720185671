"""`echo_py`: returns its message, the Python twin of the Rust `echo`, so
the benchmarks can put the languages side by side on the same call."""

from dataclasses import dataclass

import toolhost_sdk as toolhost


@dataclass
class Message:
    message: str


@toolhost.tool(name="echo_py", description="Returns its message unchanged.", effect=toolhost.PURE)
def run(ctx: toolhost.Context, input: Message) -> Message:
    return input


WitWorld = toolhost.world(run)
