"""Drives `toolhost serve` with the official MCP Python SDK (pip package `mcp`).

Usage: client.py stdio BINARY WORKDIR | client.py http URL

Lists the tools and checks their annotations, calls tools, checks a failure
and a cache replay, and prints one JSON line with what it saw. Any mismatch
raises, so the process exits non-zero.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def text_of(result):
    return result.content[0].text


async def exercise(read, write):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "toolhost", init.server_info

        tools = {t.name: t for t in (await session.list_tools()).tools}
        calc = tools["calc"].annotations
        assert (calc.read_only_hint, calc.idempotent_hint, calc.destructive_hint) == (True, True, False), calc
        assert tools["calc"].output_schema["type"] == "object"

        first = await session.call_tool("calc", {"expr": "2*(3+4)"})
        assert not first.is_error, text_of(first)
        assert first.structured_content == {"value": 14}, first
        again = await session.call_tool("calc", {"expr": "2*(3+4)"})
        assert again.meta["toolhost/cached"] is True, again.meta

        echo = await session.call_tool("echo", {"message": "from python"})
        assert json.loads(text_of(echo)) == {"message": "from python"}

        bad = await session.call_tool("calc", {"expr": 7})
        assert bad.is_error
        assert bad.meta["toolhost/error"]["kind"] == "invalid_input", bad.meta
        assert text_of(bad).startswith("invalid_input: "), text_of(bad)

        flood = await session.call_tool("flood", {})
        assert flood.is_error and flood.meta["toolhost/error"]["kind"] == "output_too_large"

        print(json.dumps({
            "protocol": init.protocol_version,
            "tools": sorted(tools),
            "value": first.structured_content["value"],
        }))


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        params = StdioServerParameters(
            command=sys.argv[2],
            args=["--db", "mcp.db", "serve", "--stdio"],
            cwd=sys.argv[3],
            # The SDK hands the server only a few safe variables by default;
            # the test's XDG directories (where its config is trusted and
            # its state lives) must reach it too.
            env=dict(os.environ),
        )
        async with stdio_client(params) as (read, write):
            await exercise(read, write)
    elif mode == "http":
        async with streamable_http_client(sys.argv[2]) as (read, write):
            await exercise(read, write)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), timeout=60))
