#!/usr/bin/env python3
"""Sequential `tools/call`s of `echo` over one kept-alive HTTP connection.

Speaks streamable HTTP with the standard library only (no MCP SDK), so the
client adds as little as possible of its own. Prints the wall-clock p50 and
p99 per call and, with `--pid`, the server's CPU time per call read from
`/proc/PID/stat` (utime + stime) before and after the calls.

    toolhost serve --http 127.0.0.1:8765 &
    python3 scripts/mcp_keepalive_calls.py --port 8765 --calls 1000 \\
        [--cached] [--pid $(pgrep -f 'serve --http')]

Decision 0080 used it to find the 40 ms Nagle/delayed-ACK stall.
"""

import argparse
import http.client
import json
import os
import sys
import time


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); here after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--calls", type=int, default=1000)
    args.add_argument("--cached", action="store_true", help="the same input every call")
    args.add_argument("--pid", type=int, help="the server's pid, for its CPU time")
    opts = args.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", opts.port)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

    def post(body: dict) -> tuple[int, bytes]:
        conn.request("POST", "/mcp", json.dumps(body), headers)
        response = conn.getresponse()
        if "Mcp-Session-Id" not in headers and response.getheader("Mcp-Session-Id"):
            headers["Mcp-Session-Id"] = response.getheader("Mcp-Session-Id")
            headers["MCP-Protocol-Version"] = "2025-06-18"
        return response.status, response.read()

    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "keepalive", "version": "0"}}
    post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    before = cpu_seconds(opts.pid) if opts.pid else 0.0
    latencies = []
    for i in range(opts.calls):
        message = "same" if opts.cached else f"m{i}"
        call = {"name": "echo", "arguments": {"message": message}}
        started = time.perf_counter()
        status, body = post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": call})
        latencies.append(time.perf_counter() - started)
        if status != 200 or b'"isError":true' in body:
            sys.exit(f"call {i} failed: {status} {body[:300]!r}")
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    line = f"{opts.calls} calls: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    if opts.pid:
        line += f", server CPU {(cpu_seconds(opts.pid) - before) / opts.calls * 1e3:.3f} ms per call"
    print(line)


if __name__ == "__main__":
    main()
