#!/usr/bin/env python3
"""Whole-process timings of `toolhost`: start to exit, as a user pays them.

For each count N of installed tools (default 1, 10, 100) this makes a fresh
user (HOME and every XDG directory in a temporary directory, so nothing of
the real user's is read or written) whose tools directory holds `echo` and
N-1 other tools, warms the caches (compiles everything once, waits out the
index's 2 s "racily clean" window, lists again so the index records every
file), then times R runs of each command and prints p50 and p90 in ms as a
Markdown table. `/bin/true` is timed in the same run as the baseline: what
starting any process costs from here.

The N-1 other tools are copies of `echo` whose name (in its `describe`
answer) is patched to `e000`, `e001`, ...: distinct tools with distinct
digests, each compiled, described and indexed like any other.

    python3 scripts/bench_whole_process.py [--binary target/release/toolhost]
        [--wasm target/wasm-tools/wasm32-wasip2/wasm-tools/echo.wasm]
        [--counts 1,10,100] [--runs 200]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def renamed(wasm: bytes, name: str) -> bytes:
    """`echo` calling itself `name` (4 characters, as `echo` is)."""
    marker = b"echoReturns its message"
    at = wasm.find(marker)
    if at < 0 or len(name) != 4:
        sys.exit("cannot find echo's name in the component to patch")
    return wasm[:at] + name.encode() + wasm[at + 4 :]


def user_env(root: str) -> dict:
    env = dict(os.environ)
    env.pop("TOOLHOST_LOG", None)
    for var, sub in [
        ("HOME", "home"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ]:
        env[var] = os.path.join(root, sub)
    return env


def run(argv, env, cwd, check=True):
    done = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if check and done.returncode != 0:
        sys.exit(f"{argv} failed ({done.returncode}): {done.stderr.decode()}")


def timed(argv, env, cwd, runs):
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(argv, env, cwd)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    return p50, p90


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/toolhost"))
    ap.add_argument(
        "--wasm",
        default=os.path.join(ROOT, "target/wasm-tools/wasm32-wasip2/wasm-tools/echo.wasm"),
    )
    ap.add_argument("--counts", default="1,10,100")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    echo = open(args.wasm, "rb").read()
    message = '{"message":"hi"}'
    commands = [
        ("`call echo` (replayed: pure, warm store)", ["call", "echo", "--input", message]),
        ("`call echo --no-cache` (runs the wasm)", ["call", "echo", "--no-cache", "--input", message]),
        ("`tools list`", ["tools", "list"]),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.path.join(tmp, "cwd")
        os.makedirs(cwd)
        base = timed(["/bin/true"], dict(os.environ), cwd, args.runs)
        rows.append(("`/bin/true` (baseline: process start)", "-", base))
        for n in [int(c) for c in args.counts.split(",")]:
            root = os.path.join(tmp, f"user{n}")
            env = user_env(root)
            tools = os.path.join(env["XDG_DATA_HOME"], "toolhost", "tools")
            os.makedirs(tools)
            with open(os.path.join(tools, "echo.wasm"), "wb") as f:
                f.write(echo)
            for i in range(n - 1):
                with open(os.path.join(tools, f"e{i:03}.wasm"), "wb") as f:
                    f.write(renamed(echo, f"e{i:03}"))
            t0 = time.perf_counter()
            run([args.binary, "tools", "list"], env, cwd)
            cold = time.perf_counter() - t0
            time.sleep(2.1)  # past the index's "racily clean" window
            run([args.binary, "tools", "list"], env, cwd)
            for _, argv in commands:
                for _ in range(5):
                    run([args.binary] + argv, env, cwd)
            print(f"{n} tools: first `tools list` (compiles all) {cold:.1f} s", file=sys.stderr)
            for label, argv in commands:
                rows.append((label, n, timed([args.binary] + argv, env, cwd, args.runs)))
    print(f"| command | tools installed | p50 ms | p90 ms |  ({args.runs} runs each)")
    print("|---|---|---|---|")
    for label, n, (p50, p90) in rows:
        print(f"| {label} | {n} | {p50:.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
