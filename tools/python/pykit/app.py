"""`pykit`: the test kit's Python tool. One side-effecting component with a
mode per behaviour the suite checks against the host's contracts, HTTP included (the http-tool world) (one
component keeps the suite to one 18 MB compile): effects, limits, error
kinds and grants."""

import time
from dataclasses import dataclass
from typing import Literal, Optional

import toolhost_sdk as toolhost
from toolhost_sdk import http


@dataclass
class Input:
    mode: Literal["append", "append_then_spin", "spin", "alloc", "raise", "read", "context", "post", "flood"]
    line: Optional[str] = None
    path: Optional[str] = None
    sleep_ms: int = 0


@dataclass
class Output:
    done: str
    key: Optional[str] = None
    attempt: Optional[int] = None
    text: Optional[str] = None


def _append(line: str):
    with open("/data/lines.txt", "a") as f:
        f.write(line + "\n")


@toolhost.tool(name="pykit", description="Test kit: effects, limits, errors and grants.",
               effect=toolhost.SIDE_EFFECTING)
def run(ctx: toolhost.Context, input: Input) -> Output:
    if input.mode == "append":
        _append(input.line or "")
        time.sleep(input.sleep_ms / 1000)
        return Output(done="appended")
    if input.mode == "append_then_spin":
        # The effect lands, then the process is killed while "running".
        _append(input.line or "")
        while True:
            pass
    if input.mode == "spin":
        n = 0
        while True:
            n += 1
    if input.mode == "alloc":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if input.mode == "flood":
        # Past the host's output cap (1 MiB by default).
        return Output(done="flood", text="x" * (2 << 20))
    if input.mode == "raise":
        raise ValueError("boom in python")
    if input.mode == "read":
        with open(input.path or "/etc/passwd") as f:
            return Output(done="read", text=f.read())
    if input.mode == "post":
        # A charge through wasi:http; `path` is the URL, `line` the body.
        r = http.request("POST", input.path, headers={"content-type": "application/json"},
                         body=(input.line or "{}").encode())
        return Output(done=str(r.status), text=r.text(), key=ctx.forwarded_key("POST", input.path))
    return Output(done="context", key=ctx.idempotency_key, attempt=ctx.attempt,
                  text=ctx.forwarded_key("POST", "https://api.example.com/v1/charges"))


WitWorld = toolhost.world(run)
