"""Issue 22, hostile servers: memory and time stay bounded whatever a server sends. The real CLI as a
subprocess against tiny loopback servers that generate their huge replies lazily (nothing of gigabyte
size is ever built); each run is measured — exit code, one-line message, CPU seconds, and the child's peak
RSS (getrusage(RUSAGE_CHILDREN) in a wrapper process that runs only the CLI)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from clihelp import Measured, run_cli_measured
from hostile import GIB, MIB, SSE_HEAD, Server, lazily, read_head, read_request, server, ws_frame_head, ws_server  # noqa: F401 (server: a fixture)

pytestmark = pytest.mark.slow  # each case streams or waits for seconds

MAX_RSS_MIB = 200
MAX_SECONDS = 15

def measured(home: Path, *args: str, timeout: float = 90) -> Measured:
    return run_cli_measured(home, *args, timeout=timeout)


def infer(home: Path, base_url: str, transport: str, *args: str) -> Measured:
    return measured(home, "infer", "-p", "offline", "--base-url", base_url, "-t", transport,
                    "-o", "connection.max_retries=0", *args, "hello")


def assert_bounded(r: Measured) -> None:
    print(r)  # the measurement, shown with -s
    r.bounded(cpu_seconds=MAX_SECONDS, rss_mib=MAX_RSS_MIB)
    assert "Traceback" not in r.err, r
    assert len(r.err.strip().splitlines()) == 1, r  # one line


# ---- SSE: a line or event over the cap -----------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_sse_line_of_3_gib_without_a_newline_is_dropped_at_the_cap(tmp_path, server, transport):
    def handle(conn):
        read_head(conn)
        server_.send(conn, SSE_HEAD + b"data: ")
        for piece in lazily(3 * GIB, b"x" * MIB):
            server_.send(conn, piece)

    server_ = server(handle)
    r = infer(tmp_path, server_.base_url, transport)
    assert r.code == 6, r
    assert r.err.strip().endswith(": the server sent a line over 16 MiB; the stream was dropped"), r
    assert r.err.count("\n") == 1, r
    assert_bounded(r)
    assert server_.sent < 512 * MIB  # it stopped reading soon after the cap, not at 3 GiB


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_sse_event_of_many_data_lines_is_dropped_at_the_cap(tmp_path, server, transport):
    def handle(conn):
        read_head(conn)
        server_.send(conn, SSE_HEAD)
        for piece in lazily(3 * GIB, b"data:\n" * (MIB // 6)):  # empty data lines, never a blank one
            server_.send(conn, piece)

    server_ = server(handle)
    r = infer(tmp_path, server_.base_url, transport)
    assert r.code == 6, r
    assert r.err.strip().endswith(": the server sent an event over 16 MiB; the stream was dropped"), r
    assert r.err.count("\n") == 1, r
    assert_bounded(r)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_sse_flood_of_blank_lines_costs_little_cpu(tmp_path, server, eol):
    """200 MiB of blank lines (under the 256 MiB a stream may hold), then an ordinary answer: it
    arrives, in bounded time and memory."""
    body = [b'data: {"choices":[{"index":0,"delta":{"content":"after the flood"}}]}\n\n',
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"]

    def handle(conn):
        read_head(conn)
        server_.send(conn, SSE_HEAD)
        for piece in lazily(200 * MIB, eol * (MIB // len(eol))):
            server_.send(conn, piece)
        for piece in body:
            server_.send(conn, piece)

    server_ = server(handle)
    r = infer(tmp_path, server_.base_url, "chat")
    assert r.code == 0, r
    assert r.out == "after the flood\n"
    print(r)
    r.bounded(cpu_seconds=MAX_SECONDS, rss_mib=MAX_RSS_MIB)


# ---- WebSocket: a message over the cap, and silence ----------------------------------------------


def test_ws_one_message_of_3_gib_is_refused_at_the_cap(tmp_path, server):
    def send(srv, conn):
        srv.send(conn, ws_frame_head(0x1, 3 * GIB))
        for piece in lazily(3 * GIB, b"x" * MIB):
            srv.send(conn, piece)

    srv = ws_server(server, send)
    r = infer(tmp_path, srv.base_url, "ws")
    assert r.code == 6, r
    assert r.err.startswith("voicecli: network error talking to ")
    assert r.err.strip().endswith(": the server sent a WebSocket message over 16 MiB; the connection was dropped"), r
    assert_bounded(r)
    # (websockets reads on, discarding, for up to close_timeout while it waits for the server's close frame)


def test_ws_message_in_endless_fragments_is_refused_at_the_cap(tmp_path, server):
    def send(srv, conn):
        srv.send(conn, ws_frame_head(0x1, MIB, fin=False) + b"x" * MIB)
        for piece in lazily(3 * GIB, ws_frame_head(0x0, MIB, fin=False) + b"x" * MIB):
            srv.send(conn, piece)

    srv = ws_server(server, send)
    r = infer(tmp_path, srv.base_url, "ws")
    assert r.code == 6, r
    assert "WebSocket message over 16 MiB" in r.err, r
    assert_bounded(r)


@pytest.mark.parametrize("how", ["nothing", "pings", "trickle"])
def test_ws_no_complete_message_within_read_timeout_is_a_timeout(tmp_path, server, how):
    """A server that sends nothing, only pings, or one message a byte at a time that never ends:
    no complete message within read_timeout (1 s) is silence, exit 6."""
    gone = threading.Event()

    def send(srv, conn):
        if how == "trickle":
            srv.send(conn, ws_frame_head(0x1, 1, fin=False) + b"{")
        while not gone.wait(0.1):
            if how == "pings":
                srv.send(conn, ws_frame_head(0x9, 0))
            elif how == "trickle":
                srv.send(conn, ws_frame_head(0x0, 1, fin=False) + b" ")

    srv = ws_server(server, send)
    try:
        r = infer(tmp_path, srv.base_url, "ws", "-o", "connection.read_timeout=1")
    finally:
        gone.set()
    assert r.code == 6, r
    assert r.err.strip() == (f"voicecli: timed out waiting for {srv.base_url}: no data from "
                             f"ws://127.0.0.1:{srv.port}/v1/responses for 1 s (connection.read_timeout)"), r
    assert_bounded(r)


def test_realtime_message_over_the_cap_ends_the_event_stream_with_a_clear_reason(server):
    """talk's Realtime socket: the same cap; the event stream ends with `Disconnected` naming it (the
    voice session then starts a new session, as after any lost connection)."""
    import asyncio

    from voicecli.events import Disconnected
    from voicecli.profiles import Connection
    from voicecli.transport.realtime import RealtimeTransport

    def send(srv, conn):
        srv.send(conn, ws_frame_head(0x1, 3 * GIB))
        for piece in lazily(3 * GIB, b"x" * MIB):
            srv.send(conn, piece)

    srv = ws_server(server, send)

    async def run():
        transport = RealtimeTransport(Connection(), srv.base_url, None, "gpt-realtime")
        await transport.connect()
        try:
            return [e async for e in transport.events()]
        finally:
            await transport.aclose()

    start = time.monotonic()
    events = asyncio.run(asyncio.wait_for(run(), 60))  # an end, not a hang (wall time: however busy)
    assert events == [Disconnected("the server sent a WebSocket message over 16 MiB; the connection was dropped")]
    assert time.monotonic() - start < 60


# ---- MCP: a huge tool result ------------------------------------------------------------------------

MCP_RAW = Path(__file__).parent / "mcp_raw_server.py"


def mcp_http_server(server) -> Server:
    """The raw MCP server over Streamable HTTP (JSON answers), in a thread of the test."""
    from mcp_raw_server import answer

    def handle(conn):
        head, body = read_request(conn)
        if not head.startswith(b"POST "):
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        pieces = answer(json.loads(body))
        if pieces is None:
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        for piece in pieces:
            srv.send(conn, piece)

    srv = server(handle)
    return srv


@pytest.mark.parametrize("via", ["stdio", "http"])
@pytest.mark.parametrize("mib", [7.5, 50, 1024])
def test_a_huge_mcp_tool_result_is_bounded(tmp_path, server, via, mib):
    """Under the 8 MiB message cap the result is kept (its first 64 KiB, as for any tool); over it
    the call fails at once for the model with one clear line, the bytes skipped as they come, and the
    server goes on answering."""
    if via == "stdio":
        table = f'command = {json.dumps([sys.executable, str(MCP_RAW)])}\n'
    else:
        table = f'url = "http://127.0.0.1:{mcp_http_server(server).port}/mcp"\n'
    profile = tmp_path / "big.toml"
    profile.write_text(f'extends = "offline"\n[[mcp]]\nname = "r"\n{table}approval = "auto"\n')
    r = measured(tmp_path / "home", "infer", "-p", str(profile), "-t", "sse", "--json",
                 f'r__big {{"mib": {mib}}} r__small')
    print(r)
    assert r.code == 0, r
    results = {t["name"]: t for t in json.loads(r.out)["tool_results"]}
    assert results["r__small"]["ok"] and results["r__small"]["output"] == "small result"
    big = results["r__big"]
    if mib < 8:
        assert big["ok"] and big["output"].endswith(f"[output truncated: showing the first 65536 of "
                                                    f"{int(mib * MIB)} bytes]"), big["output"][-200:]
    else:
        assert not big["ok"]
        assert big["output"].startswith("error: MCP server 'r': ") and big["output"].endswith(
            "its answer was over 8 MiB (voicecli's limit for one MCP message) and was skipped"), big["output"]
    r.bounded(cpu_seconds=MAX_SECONDS, rss_mib=MAX_RSS_MIB)
    assert "Traceback" not in r.err


def _through_bounded_lines(chunks: list[bytes], limit: int) -> bytes:
    import asyncio

    import anyio

    from voicecli.mcp import _BoundedLines

    class Source:
        def __init__(self):
            self.chunks = list(chunks)

        async def receive(self, max_bytes: int = 65536) -> bytes:
            if not self.chunks:
                raise anyio.EndOfStream
            return self.chunks.pop(0)

    async def run() -> bytes:
        lines, out = _BoundedLines(Source(), limit), []
        try:
            while True:
                out.append(await lines.receive())
        except anyio.EndOfStream:
            return b"".join(out)

    return asyncio.run(run())


def test_mcp_stdio_lines_pass_whole_and_unchanged_however_they_are_split():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=10),
           st.lists(st.integers(0, 500)))
    def check(lines, cuts):
        data = b"".join(line + b"\n" for line in lines)
        points = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
        chunks, start = [], 0
        for p in points:
            if p > start:
                chunks.append(data[start:p])
            start = p
        assert _through_bounded_lines(chunks, 64) == data

    check()


def test_an_mcp_stdio_line_over_the_limit_becomes_an_error_for_its_request():
    over = b'{"jsonrpc": "2.0", "id": "a\\"b", "result": {"x": "' + b"x" * 200 + b'"}}\n'
    out = _through_bounded_lines([b'{"id": 1}\n' + over[:50], over[50:120], over[120:] + b'{"id": 2}\n'], 100)
    first, error, last, end = out.split(b"\n")
    assert (first, last, end) == (b'{"id": 1}', b'{"id": 2}', b"")
    assert json.loads(error) == {"jsonrpc": "2.0", "id": 'a"b', "error": {
        "code": -32603, "message": "its answer was over 0 MiB (voicecli's limit for one MCP message) and was skipped"}}
    notification = b'{"jsonrpc": "2.0", "method": "notifications/message", "params": "' + b"y" * 200 + b'"}\n'
    assert _through_bounded_lines([notification, b'{"id": 3}\n'], 100) == b'{"id": 3}\n'


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_an_sse_event_just_under_the_cap_is_still_read_within_bounds(tmp_path, server, transport):
    size = 15 * MIB
    if transport == "chat":
        before, after = b'data: {"choices":[{"index":0,"delta":{"content":"', b'"}}]}\n\n'
        end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    else:
        before, after = b'data: {"type":"response.output_text.delta","item_id":"m","output_index":0,' \
                        b'"content_index":0,"delta":"', b'"}\n\n'
        end = b'data: {"type":"response.completed","response":{"id":"r","status":"completed","output":[]}}\n\n'

    def handle(conn):
        read_head(conn)
        srv.send(conn, SSE_HEAD + before)
        for piece in lazily(size, b"x" * MIB):
            srv.send(conn, piece)
        srv.send(conn, after + end)

    srv = server(handle)
    r = infer(tmp_path, srv.base_url, transport, "--no-stream")
    print(r)
    assert r.code == 0, r
    assert len(r.out) == size + 1
    r.bounded(cpu_seconds=MAX_SECONDS, rss_mib=MAX_RSS_MIB)
