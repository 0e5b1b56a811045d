"""Hostile HTTP servers on loopback against the real CLI: gzip bombs, endless lines, a byte a
second, redirects, oversized JSON, a proxy that is not there. Each case ends with one line on
stderr and a documented exit code, in bounded work (≤ 15 s of CPU) and memory (peak RSS ≤ 200
MiB), measured in the CLI's own process; wall time only tells an end from a hang (≤ 60 s, however
busy the machine).

The servers write what a test needs byte for byte and generate big bodies lazily (a gigabyte is
never built in memory, here or in voicecli).
"""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from clihelp import run_cli_measured
from test_http_client import LoopbackServer

pytestmark = pytest.mark.slow

MAX_RSS_MIB, MAX_SECONDS = 200, 15
GIB = 1 << 30


class Hostile(LoopbackServer):
    """Reads one request's head (and body), then lets `answer(writer)` write whatever it likes."""

    def __init__(self, answer):
        self.answer = answer
        super().__init__()

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            await self.answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up, as it should
        finally:
            writer.close()


@pytest.fixture
def hostile():
    servers = []

    def make(answer):
        servers.append(Hostile(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def gzip_of(prefix: bytes, filler: bytes, size: int) -> bytes:
    """A valid gzip of `prefix` followed by `filler` repeated to `size` bytes, made in a fraction of a
    second: after a full flush the compressor's output for the same 1 MiB block is the same bytes, so
    one compressed block is repeated (the trailer's CRC and length are computed for the whole)."""
    block = filler * ((1 << 20) // len(filler))
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    head = packer.compress(prefix) + packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()[:-8]  # the last (empty) block; its trailer counted only what the packer saw
    blocks, crc = size // len(block), zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    trailer = struct.pack("<II", crc, (len(prefix) + blocks * len(block)) & 0xFFFFFFFF)
    return head + again * (blocks - 1) + end + trailer


def test_the_bombs_are_valid_gzip():
    bomb = gzip_of(b"data: ", b"a", 8 << 20)
    unpacker = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert unpacker.decompress(bomb) == b"data: " + b"a" * (8 << 20) and unpacker.eof and not unpacker.unused_data


@pytest.fixture(scope="module")
def bombs():
    return {"error": gzip_of(b'{"error": {"message": "', b"a", GIB),
            "line": gzip_of(b"data: ", b"a", GIB),
            "blank": gzip_of(b"", b"\n", GIB)}


def reply(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sent(data: bytes):
    async def answer(writer):
        writer.write(data)
        await writer.drain()
    return answer


def infer(home, server, transport="sse", read_timeout=2, **env):
    return run_cli_measured(home, "infer", "-p", "offline", "--base-url", server.url + "/v1", "-t", transport,
                            "-o", "connection.max_retries=0", "-o", f"connection.read_timeout={read_timeout}",
                            "hi", timeout=60, **env)


def bounded(r, code: int, *words: str) -> None:
    print(r)
    assert r.code == code, r.err
    lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith("  hint:")]
    assert len(lines) == 1, r.err
    for word in words:
        assert word in r.err, r.err
    r.bounded(cpu_seconds=MAX_SECONDS, rss_mib=MAX_RSS_MIB)


def test_a_gzip_bomb_in_an_error_reply_is_read_to_its_first_mib(tmp_path, hostile, bombs):
    server = hostile(sent(reply("400 Bad Request", bombs["error"], "Content-Encoding: gzip",
                                "Content-Type: application/json")))
    bounded(infer(tmp_path, server), 7, "400")


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_a_gzip_bomb_as_one_event_stream_line(tmp_path, hostile, bombs, transport):
    server = hostile(sent(reply("200 OK", bombs["line"], "Content-Encoding: gzip", "Content-Type: text/event-stream")))
    bounded(infer(tmp_path, server, transport=transport), 6)


def test_a_gzip_bomb_of_blank_lines(tmp_path, hostile, bombs):
    server = hostile(sent(reply("200 OK", bombs["blank"], "Content-Encoding: gzip", "Content-Type: text/event-stream")))
    bounded(infer(tmp_path, server), 6, "compression bomb")


def test_an_endless_event_stream_line(tmp_path, hostile):
    """3 GiB of one line with no newline, sent as fast as loopback takes it."""
    async def answer(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ")
        block = b"a" * (1 << 20)
        for _ in range(3 * 1024):
            writer.write(block)
            await writer.drain()

    bounded(infer(tmp_path, hostile(answer)), 6, "over 16 MiB")


def test_a_status_line_a_byte_a_second_is_a_timeout(tmp_path, hostile):
    """Each byte would restart a per-read timeout: the reply's head has one read_timeout in all."""
    async def answer(writer):
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.25)

    bounded(infer(tmp_path, hostile(answer)), 6, "no reply", "within 2 s", "read_timeout")


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_an_event_stream_a_byte_a_second_is_silence(tmp_path, hostile, transport):
    """Bytes that never make a complete event are no progress: read_timeout of them is silence."""
    async def answer(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        for _ in range(1000):
            writer.write(b"d")
            await writer.drain()
            await asyncio.sleep(0.25)

    bounded(infer(tmp_path, hostile(answer), transport=transport), 6, "no data", "for 2 s", "read_timeout")


def test_speech_a_byte_a_second_is_silence(tmp_path, hostile):
    """Text-to-speech trickling less than a tenth of a second of audio per read_timeout."""
    async def answer(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\n\r\n")
        for _ in range(1000):
            writer.write(b"\0")
            await writer.drain()
            await asyncio.sleep(0.25)

    server = hostile(answer)
    from voicecli.profiles import Connection
    from voicecli.transport.audio import AudioClient

    async def speak():
        client = AudioClient(Connection(read_timeout=2, max_retries=0), server.url + "/v1", None)
        return [piece async for piece in client.speak("hello", model="m", voice="alloy")]

    pieces = asyncio.run(asyncio.wait_for(speak(), 60))  # an end, not a hang
    assert len(pieces) == 1 and "no data" in pieces[0].message and pieces[0].kind == "timeout"


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_a_redirect_is_named_and_not_followed(tmp_path, hostile, transport):
    server = hostile(sent(reply("307 Temporary Redirect", b"", "Location: http://evil.test/v1/responses")))
    bounded(infer(tmp_path, server, transport=transport), 7, "redirect to http://evil.test/v1/responses not followed")


def test_a_json_reply_over_its_cap(tmp_path, hostile):
    async def answer(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"data\": [")
        item = b'{"id": "m", "object": "model"},' * 1000
        for _ in range(10_000):  # ~300 MB, never all read
            writer.write(item)
            await writer.drain()

    server = hostile(answer)
    r = run_cli_measured(tmp_path, "models", "-p", "offline", "--base-url", server.url + "/v1",
                         "-o", "connection.max_retries=0")
    bounded(r, 7, "larger than 4 MiB")


def test_a_proxy_that_is_not_there_is_named(tmp_path, hostile):
    server = hostile(sent(reply("200 OK", b"")))
    r = infer(tmp_path, server, HTTP_PROXY="http://127.0.0.1:9")  # nothing listens on the discard port
    bounded(r, 6, "proxy HTTP_PROXY=127.0.0.1:9 could not be reached: connection refused")
