"""voicecli's HTTP client (httpx2, set up in transport/client.py) at its edges: kept-alive
connections, one the server closed while idle, a POST never sent twice, replies cut short or
compressed, proxies from the environment.

The servers here are raw asyncio sockets that write exactly the bytes a test needs, so every
reply is what a real server could send, byte for byte; the simulator covers the rest.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import zlib

import pytest

from clihelp import run_cli
from voicecli.transport.client import Client, InvalidURL, Timeout, TransportError, _exempt, _Target, proxy_for


class LoopbackServer:
    """`_serve(reader, writer)` on 127.0.0.1, in an event loop of its own thread; `url`, `stop()`."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _serve(self, reader, writer):
        raise NotImplementedError

    def stop(self):
        """Connections cancelled, the loop closed (no "unclosed" or "never awaited" warnings later,
        whenever the garbage collector finds it)."""
        async def shutdown():
            self.server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class RawServer(LoopbackServer):
    """Answers each request on a connection with the next of `replies` (bytes, or a callable of
    the request bytes); records the requests and counts connections."""

    def __init__(self, *replies, close_after: int | None = None, read_body: bool | str = True):
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0  # connections that ended from the client's side
        self.hung_up = 0  # connections the server closed
        self.close_after = close_after  # requests per connection before the server hangs up silently
        # False: answer after the headers, leaving the body unread; "after": answer after the headers,
        # then read the body (as nginx's lingering close does)
        self.read_body = read_body
        super().__init__()

    async def _serve(self, reader, writer):
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + (await reader.readexactly(length) if self.read_body is True else b"")
                self.requests.append(request)
                reply = self.replies.pop(0)
                writer.write(reply(request) if callable(reply) else reply)
                await writer.drain()
                if self.read_body == "after":
                    await reader.readexactly(length)
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
        writer.close()
        self.hung_up += 1



@pytest.fixture
def raw():
    servers = []

    def make(*replies, **kw):
        servers.append(RawServer(*replies, **kw))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def ok(body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def run(coro):
    return asyncio.run(coro)


def body_of(url: str) -> bytes:
    """GET `url` with a new client: the body."""
    async def get():
        return (await Client(connect_timeout=5, read_timeout=5).get(url)).content

    return run(get())


def test_kept_alive_connection_serves_the_next_request(raw):
    server = raw(ok(b"one"), chunked(b"tw", b"o"))

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        first = await client.get(server.url + "/a")
        async with client.stream("POST", server.url + "/b", content=b"{}") as reply:
            second = b"".join([c async for c in reply.aiter_bytes()])
        await client.aclose()
        return first.content, second

    assert run(go()) == (b"one", b"two")
    assert server.connections == 1
    first, second = server.requests
    assert first.startswith(b"GET /a HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:" in first.lower()
    assert second.startswith(b"POST /b HTTP/1.1\r\n") and second.endswith(b"\r\n\r\n{}")
    assert b"content-length: 2\r\n" in second.lower()


def test_a_stream_left_at_its_last_event_keeps_its_connection(raw):
    """The SSE decoders stop reading at `[DONE]`; the final empty chunk is read for them, so the
    next turn reuses the connection (no new TCP or TLS handshake per chat turn)."""
    server = raw(chunked(b"data: 1\n\n", b"data: [DONE]\n\n"), ok(b"next"))

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        async with client.stream("POST", server.url + "/", content=b"{}") as reply:
            async for chunk in reply.aiter_bytes():
                if b"[DONE]" in chunk:
                    break
        return (await client.get(server.url + "/")).content

    assert run(go()) == b"next"
    assert server.connections == 1


def test_a_stream_left_with_more_to_come_closes_its_connection(raw):
    endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"  # and then nothing
    server = raw(endless, ok(b"next"))

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        async with client.stream("GET", server.url + "/") as reply:
            async for _ in reply.aiter_bytes():
                break
        return (await client.get(server.url + "/")).content

    assert run(go()) == b"next"
    assert server.connections == 2


def test_a_connection_the_server_closed_while_idle_is_replaced_once(raw):
    """A server that hangs up after each reply without saying so (no `Connection: close`): the
    next request finds the pooled connection dead and goes out once more on a new one."""
    server = raw(ok(b"one"), ok(b"two"), close_after=1)

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        first = await client.get(server.url + "/")
        for _ in range(500):  # the server's FIN arrives while the connection sits in the pool
            if server.hung_up:
                break
            await asyncio.sleep(0.01)
        second = await client.get(server.url + "/")
        await client.aclose()
        return first.content, second.content

    assert run(go()) == (b"one", b"two")
    assert server.connections == 2


def test_a_reply_cut_mid_body_says_so(raw):
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=1)

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        async with client.stream("GET", server.url + "/") as reply:
            return [chunk async for chunk in reply.aiter_bytes()]

    with pytest.raises(TransportError, match="closed the connection before the reply was complete"):
        run(go())


def test_silence_is_a_read_timeout(raw):
    server = raw(lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    async def go():
        client = Client(connect_timeout=5, read_timeout=0.2)
        async with client.stream("GET", server.url + "/") as reply:
            return [chunk async for chunk in reply.aiter_bytes()]

    with pytest.raises(Timeout) as caught:
        run(go())
    assert caught.value.phase == "read"


@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                             ("deflate", lambda b: zlib.compress(b)[2:-4])])  # raw deflate too
def test_compressed_bodies_are_decoded(raw, encoding, pack):
    body = b'{"id": "sim-1", "object": "model"}\n' * 50
    server = raw(ok(pack(body), f"Content-Encoding: {encoding}"))
    assert body_of(server.url + "/") == body


def test_an_unknown_content_encoding_is_an_error_not_garbage(raw):
    server = raw(ok(b"\x00\x01", "Content-Encoding: br"))
    with pytest.raises(TransportError, match="br encoding"):
        body_of(server.url + "/")


def test_multipart_body_parses_as_the_form_it_was_made_from(raw):
    """The form the speech-to-text request sends, read back by the standard library's MIME parser;
    quotes and line breaks in names and values cannot break out of their part."""
    from email import policy
    from email.parser import BytesParser

    server = raw(ok(b"{}"))

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        await client.request("POST", server.url + "/v1/audio/transcriptions", data={
            "model": "whisper-1", "prompt": 'say "hi"\nplease'},
            files={"file": ('spe"ech\r\nX: 1.wav', b"RIFF\x00\xffdata", "audio/wav")})
        await client.aclose()

    run(go())
    head, _, content = server.requests[0].partition(b"\r\n\r\n")
    kind = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type:"))
    message = BytesParser(policy=policy.HTTP).parsebytes(kind + b"\r\n\r\n" + content)
    parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
    assert list(parts) == ["model", "prompt", "file"]
    assert parts["model"].get_content() == "whisper-1"
    assert parts["prompt"].get_content() == 'say "hi"\nplease'
    assert parts["file"].get_content_type() == "audio/wav" and "X: 1" not in parts["file"]
    assert parts["file"].get_payload(decode=True) == b"RIFF\x00\xffdata"


@pytest.mark.parametrize("host, no_proxy, exempt", [
    ("api.openai.com", "openai.com", True), ("api.openai.com", ".openai.com", True),
    ("notopenai.com", "openai.com", False), ("127.0.0.1", "localhost,127.0.0.1:8080", True),
    ("example.com", "*", True), ("example.com", "", False), ("::1", "[::1]", True),
])
def test_no_proxy_matching(host, no_proxy, exempt):
    assert _exempt(host, no_proxy) is exempt


class Proxy(LoopbackServer):
    """A forward proxy on loopback: absolute-form requests for http targets, CONNECT tunnels for
    https ones; it records the first line of each request it is asked."""

    def __init__(self):
        self.seen: list[str] = []
        super().__init__()

    async def _serve(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n")[0].decode().split(" ")
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream_r, upstream_w = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute form: http://host:port/path → origin form, for the server
            rest = target.split("//", 1)[1]
            hostport, _, path = rest.partition("/")
            host, port = hostport.rsplit(":", 1)
            upstream_r, upstream_w = await asyncio.open_connection(host, int(port))
            upstream_w.write(head.replace(target.encode(), b"/" + path.encode(), 1))
        await asyncio.gather(self._pipe(reader, upstream_w), self._pipe(upstream_r, writer))

    @staticmethod
    async def _pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()



@pytest.fixture
def proxy():
    server = Proxy()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_http_proxy_from_the_environment(tmp_path, sim, proxy, transport):
    port = sim.base_url.split(":")[2].split("/")[0]
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", transport, "hi",
                http_proxy=proxy.url)
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err
    path = "/v1/responses" if transport == "sse" else "/v1/chat/completions"
    assert proxy.seen == [f"POST http://127.0.0.1:{port}{path}"]
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", transport, "hi",
                HTTP_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1")
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err
    assert len(proxy.seen) == 1  # exempt: straight to the server


def test_a_socks_proxy_is_refused_by_name(tmp_path, sim):
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", "sse", "hi",
                "-o", "connection.max_retries=0", ALL_PROXY="socks5://127.0.0.1:1080")
    assert r.code == 3 and "SOCKS proxies are not supported" in r.err and "ALL_PROXY" in r.err, r.err


def test_a_header_http_cannot_carry_is_refused_without_quoting_it(raw):
    """The callers check header values first; this is the last line, and its message must not
    carry the value (it may be a key)."""
    server = raw(ok(b"never"))

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        return await client.get(server.url + "/", headers={"Authorization": "Bearer sk-secret\r\nX-Evil: 1"})

    with pytest.raises(TransportError) as caught:
        run(go())
    assert "sk-secret" not in str(caught.value) and "cannot carry" in str(caught.value)
    assert server.requests == []


# ---- what review found --------------------------------------------------------------------------


def test_a_name_whose_first_address_is_silent_connects_through_the_next(raw, monkeypatch):
    """A dead first address (a broken IPv6 route, a stale A record) costs 250 ms, not the whole
    connect timeout: the next address is tried meanwhile."""
    server = raw(ok(b"ok"))
    port = int(server.url.rsplit(":", 1)[1])
    silent = socket.socket()  # a listener that never accepts, its backlog full: connections hang
    silent.bind(("127.0.0.2", port))
    silent.listen(0)
    fillers = [socket.socket() for _ in range(3)]
    for f in fillers:
        f.setblocking(False)
        try:
            f.connect(("127.0.0.2", port))
        except BlockingIOError:
            pass
    real = socket.getaddrinfo

    def two_addresses(host, *args, **kw):
        if host in ("dual.test", b"dual.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)

    try:
        assert body_of(f"http://dual.test:{port}/") == b"ok"
    finally:
        for s_ in [silent, *fillers]:
            s_.close()


def test_international_host_names_go_out_in_their_ascii_form():
    target = _Target("https://bücher.example:8443/v1?q=ä")
    assert (target.host, target.authority) == ("xn--bcher-kva.example", "xn--bcher-kva.example:8443")
    assert target.url.startswith("https://xn--bcher-kva.example:8443/v1?q=")
    with pytest.raises(InvalidURL, match="not a valid domain name"):
        _Target("http://" + "a" * 64 + ".example/")  # a label over 63 characters


def test_a_corrupt_compressed_body_is_a_transport_error(raw):
    server = raw(ok(b"plainly not gzip", "Content-Encoding: gzip"))
    with pytest.raises(TransportError, match="gzip body is corrupt"):
        body_of(server.url + "/")


def test_a_request_on_a_connection_the_server_drops_is_never_sent_again(raw):
    """The server reads the whole second request on a kept-alive connection, then hangs up
    without replying: the POST may have been acted on (a billed turn), so the client fails —
    retrying is the caller's `max_retries`, never a silent second send."""
    server = raw(ok(b"one"), lambda request: b"", close_after=2)

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        await client.get(server.url + "/")
        try:
            await client.request("POST", server.url + "/v1/responses", content=b'{"input": "turn"}')
        finally:
            await client.aclose()

    with pytest.raises(TransportError, match="closed the connection without replying"):
        run(go())
    assert [r.split(b" ")[0] for r in server.requests] == [b"GET", b"POST"]
    assert server.connections == 1


def test_cancelled_while_reading_the_rest_of_a_stream_closes_the_connection(raw):
    """A barge-in while the stream's last chunk is awaited after [DONE]: the connection is closed
    at once, never left open (until garbage collection) or pooled."""
    server = raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\ndata: [DONE]\r\n")  # no last chunk

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        done_seen = asyncio.Event()

        async def consume():
            async with client.stream("GET", server.url + "/") as reply:
                async for chunk in reply.aiter_bytes():
                    if b"[DONE]" in chunk:
                        done_seen.set()
                        break

        task = asyncio.create_task(consume())
        await asyncio.wait_for(done_seen.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(500):  # the server sees the connection end, without the client being closed
            if server.closed_by_client:
                break
            await asyncio.sleep(0.01)
        return server.closed_by_client

    assert run(go()) == 1


def test_a_refused_tunnel_closes_its_connection_at_once(raw, monkeypatch):
    proxy = raw(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("https_proxy", proxy.url)

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        with pytest.raises(TransportError, match="refused the tunnel .*407") as caught:
            await client.get("https://api.example.test/v1/models")
        for _ in range(50):  # the error (and its traceback) still held: the socket must be closed anyway
            if proxy.closed_by_client:
                break
            await asyncio.sleep(0.02)
        return caught

    assert run(go()) and proxy.closed_by_client == 1


@pytest.mark.parametrize("env, expected", [
    ({"https_proxy": "", "HTTPS_PROXY": "http://proxy.test:3128"}, None),  # lower case wins, even empty
    ({"HTTPS_PROXY": "http://proxy.test:3128"}, "proxy.test:3128"),
    ({"all_proxy": "proxy.test:8080"}, "proxy.test:8080"),
    ({"HTTPS_PROXY": "http://proxy.test:3128", "no_proxy": "", "NO_PROXY": "example.com"}, "proxy.test:3128"),
])
def test_proxy_variables_as_curl_reads_them(monkeypatch, env, expected):
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxy = proxy_for(_Target("https://api.example.com/v1"))
    assert (_Target(proxy[1]).authority if proxy else None) == expected


def test_a_reply_sent_before_the_server_hung_up_on_a_large_upload_is_shown(raw):
    """A 413 from a proxy in front of a speech-to-text server, sent before it reads the upload (and
    drains it, as nginx does, before closing): the 413 is the answer, not "connection reset"."""
    too_large = b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
    server = raw(too_large, close_after=1, read_body="after")

    async def go():
        client = Client(connect_timeout=5, read_timeout=5)
        reply = await client.request("POST", server.url + "/v1/audio/transcriptions", content=b"\0" * 8_000_000)
        return reply.status_code, reply.content

    assert run(go()) == (413, b"too large")


def test_plain_words_for_what_failed(raw):
    """httpx2's exceptions, in the words the error lines use."""
    async def get(url):
        client = Client(connect_timeout=5, read_timeout=5)
        try:
            await client.get(url)
        finally:
            await client.aclose()

    with pytest.raises(TransportError, match=r"^cannot resolve the host name nonexistent\.invalid"):
        run(get("http://nonexistent.invalid/v1/models"))  # .invalid never resolves (RFC 6761)
    with pytest.raises(TransportError, match="^connection refused$") as caught:
        run(get("http://127.0.0.1:9/v1/models"))
    assert caught.value.address == ("127.0.0.1", 9)  # so a refusal on loopback is not retried
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=1)
    with pytest.raises(TransportError, match="closed the connection before the reply was complete"):
        run(get(server.url + "/"))
    with pytest.raises(InvalidURL):
        run(get("ftp://example.com/"))
