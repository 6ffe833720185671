"""A FastMCP echo server, the PyPI baseline of the `mcp_serve` bench.

`python3 fastmcp_echo.py stdio` serves one client on stdin/stdout;
`python3 fastmcp_echo.py http` binds 127.0.0.1 on a free port itself,
prints `listening on PORT` on stderr and serves streamable HTTP at /mcp
(binding here, not in the bench, leaves no window for another process to
take the port). Needs `pip install fastmcp==4.1.6`; with it missing, exits
with status 3 so the bench can say so and go on.
"""

import socket
import sys

try:
    import uvicorn
    from fastmcp import FastMCP
except ImportError:
    sys.exit(3)

mcp = FastMCP("fastmcp-echo")


@mcp.tool
def echo(message: str) -> dict:
    """Returns its input."""
    return {"message": message}


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        mcp.run(transport="stdio", show_banner=False)
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"listening on {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    app = mcp.http_app(path="/mcp")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
