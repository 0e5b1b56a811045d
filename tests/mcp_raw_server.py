"""A lean hand-written MCP server (no SDK, a few MiB of memory) whose `big` tool answers with a text
result of `mib` MiB, generated as it is written out: for tests of how voicecli bounds a huge result,
without the server's own memory in the measurement. Over stdio when run (`python mcp_raw_server.py
[TAG]`); `answer(message)` gives the reply's bytes for an HTTP server in a test."""

import json
import sys
from collections.abc import Iterator

MIB = 1 << 20
TOOLS = [
    {"name": "big", "description": "A text result of MIB MiB.",
     "inputSchema": {"type": "object", "properties": {"mib": {"type": "number"}}, "required": ["mib"]}},
    {"name": "small", "description": "A short text result.", "inputSchema": {"type": "object"}},
]


def _reply(rid, result) -> Iterator[bytes]:
    yield json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


def answer(msg: dict) -> Iterator[bytes] | None:
    """The reply to one JSON-RPC message, in pieces (no newline); None for a notification."""
    rid, method = msg.get("id"), msg.get("method")
    if rid is None:
        return None
    if method == "initialize":
        return _reply(rid, {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                            "serverInfo": {"name": "raw", "version": "1"}})
    if method == "tools/list":
        return _reply(rid, {"tools": TOOLS})
    if method == "tools/call" and msg["params"]["name"] == "big":
        return _big(rid, int(msg["params"]["arguments"]["mib"] * MIB))
    if method == "tools/call":
        return _reply(rid, {"content": [{"type": "text", "text": "small result"}], "isError": False})
    return _reply(rid, {})


def _big(rid, size: int) -> Iterator[bytes]:
    yield b'{"jsonrpc": "2.0", "id": ' + json.dumps(rid).encode() + b', "result": {"content": [{"type": "text", "text": "'
    piece = b"x" * (MIB - 1) + b" "
    for _ in range(size // MIB):
        yield piece
    yield b"y" * (size % MIB)
    yield b'"}], "isError": false}}'


if __name__ == "__main__":
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        pieces = answer(json.loads(line))
        if pieces is not None:
            for piece in pieces:
                out.write(piece)
            out.write(b"\n")
            out.flush()
