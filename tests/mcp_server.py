"""A real MCP server for the tests, written with the SDK's MCPServer (FastMCP before mcp 2).

    python mcp_server.py [stdio|http|crash|hang|badschema] [TAG]

stdio: serves on stdin/stdout. http: Streamable HTTP on 127.0.0.1 at an ephemeral port, printing
its URL on stdout. crash: exits at start with a message on stderr. hang: never answers
`initialize`. badschema: one tool lists an invalid input schema. TAG is ignored: the tests put a
unique word on the command line to find leftover processes.
"""

import asyncio
import base64
import os
import sys
import time

# a 1×1 red PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def build(mode: str):
    from mcp.server.mcpserver import Context, Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("voicecli-test", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow(seconds: float, mark: str = "") -> str:
        """Wait, then say so (first creating the file `mark`, if given, so a test knows it started)."""
        if mark:
            open(mark, "w").close()
        await asyncio.sleep(seconds)
        return f"slept {seconds:g} s"

    @server.tool()
    def fail(message: str) -> str:
        """Always fails."""
        raise ToolError(message)

    @server.tool()
    def image() -> Image:
        """A tiny red picture."""
        return Image(data=PNG, format="png")

    @server.tool()
    def env(name: str) -> str:
        """The value of an environment variable in the server, or <unset>."""
        return os.environ.get(name, "<unset>")

    @server.tool()
    def die() -> str:
        """Ends the server process at once (a crash in the middle of a session)."""
        os._exit(7)

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    def header(name: str, ctx: Context) -> str:
        """An HTTP request header as the server received it (Streamable HTTP only)."""
        request = ctx.request_context.request
        return request.headers.get(name, "<none>") if request is not None else "<not http>"

    if mode == "badschema":
        @server.tool()
        def broken(x: str) -> str:
            """Lists a schema no model can use."""
            return x

        tool = server._tool_manager.get_tool("broken")
        tool.parameters = {"type": "object", "properties": {"x": {"type": "strang"}}}
    return server


def serve_http(server) -> None:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "crash":
        print("fatal: the test server was told to crash", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(3600)
        return
    server = build(mode)
    if mode == "http":
        serve_http(server)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
