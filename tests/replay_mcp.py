"""Replay a recorded Streamable HTTP MCP session (../shared/traffic-audio/mcp_http_*) on 127.0.0.1.

Each POSTed JSON-RPC request gets the recorded answer to the same method — status, headers
(`Mcp-Session-Id`, content type) and event-stream body as recorded — with only the JSON-RPC `id`
of the answer set to the request's. GET and DELETE get the recorded 405. A method the recording
never saw gets JSON-RPC "method not found", as a server of that protocol version answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path


def _exchanges(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@contextlib.contextmanager
def start_replay(path: Path, *, ping_first: bool = False) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """Serve the session in `path` (its `*.http.jsonl`). Yields (url, seen): `seen` collects
    (method, Mcp-Session-Id header) per POST. `ping_first`: each event stream starts with the
    server's keep-alive (`event: ping`, recorded at the end of each), as while a slow call runs."""
    from aiohttp import web

    by_method: dict[str, dict] = {}
    other: dict[str, dict] = {}
    for ex in _exchanges(path):
        body = ex["request"]["body"]
        if ex["request"]["method"] == "POST" and body:
            by_method.setdefault(json.loads(body)["method"], ex["response"])
        else:
            other.setdefault(ex["request"]["method"], ex["response"])
    seen: list[tuple[str, str | None]] = []

    def respond(recorded: dict, request_id=None) -> web.Response:
        headers = {k: v[0] for k, v in recorded["headers"].items()
                   if k.lower() in ("content-type", "mcp-session-id", "cache-control")}
        body = recorded["body"] or ""
        if request_id is not None:  # only the id changes: `"id":N` on the data lines
            body = re.sub(r'("id":)\d+', lambda m: m.group(1) + json.dumps(request_id), body, count=1)
        if ping_first and body.startswith("event: message"):
            body = "event: ping\ndata: ping\n\n" + body
        return web.Response(status=recorded["status"]["code"], body=body.encode(), headers=headers)

    async def post(request: web.Request) -> web.Response:
        message = await request.json()
        method = message.get("method", "")
        seen.append((method, request.headers.get("mcp-session-id")))
        recorded = by_method.get(method)
        if recorded is None:
            if "id" not in message:
                return web.Response(status=202)
            error = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "Method not found"}}
            return web.json_response(error)
        return respond(recorded, message.get("id"))

    async def get_or_delete(request: web.Request) -> web.Response:
        return respond(other[request.method])

    app = web.Application()
    app.router.add_post("/mcp", post)
    app.router.add_get("/mcp", get_or_delete)
    app.router.add_delete("/mcp", get_or_delete)

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(site._server.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}/mcp", seen
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
