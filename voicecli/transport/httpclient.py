"""The HTTP/1.1 client under the `sse` and `chat` transports, speech-to-text / text-to-speech,
`voicecli models` and `-f URL`: h11 (the sans-I/O HTTP/1.1 core httpx itself runs on) over
asyncio streams.

Why not httpx: for the one streamed POST of an `infer`, httpx brings httpcore and anyio — some
120 modules, a quarter of the whole run's wall time (bench/infer.py) — for what this file does
on the event loop the program already runs:

- keep-alive connections, pooled per origin; a kept-alive connection the server closed while
  idle is replaced once, transparently;
- TLS with certificates and host names checked (the CA bundle is SSL_CERT_FILE, SSL_CERT_DIR or
  certifi's, read at the first handshake: plain-http runs never load it);
- the proxy variables (`http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`, either case):
  http(s) proxies, https targets through a CONNECT tunnel;
- connect, write and read timeouts, each saying which fired (`Timeout.phase`);
- gzip and deflate bodies decoded (`aiter_bytes`, `aread`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import h11

_READ_SIZE = 65536
_FINISH_BYTES, _FINISH_SECONDS = 65536, 0.25  # what is read of a reply's rest to keep its connection
_SAFE_TARGET = "/?#[]@!$&'()*+,;=:%-._~"  # kept as they are when a path or query is percent-encoded


class TransportError(Exception):
    """The exchange failed below HTTP: refused, reset, TLS, a reply that breaks HTTP/1.1.
    The message says what, in a few words, for "connection to URL failed: …"; `address` is the
    server's (host, port) when connecting to it (not through a proxy) failed."""

    def __init__(self, message: str, address: tuple[str, int] | None = None):
        super().__init__(message)
        self.address = address


class Timeout(TransportError):
    """A timeout: `phase` is "connect" (connecting, TLS and any proxy tunnel included), "write"
    (sending the request) or "read" (waiting for the reply, or for more of it)."""

    def __init__(self, phase: str):
        super().__init__(f"{phase} timed out")
        self.phase = phase


class InvalidURL(TransportError, ValueError):
    """Not an http(s) URL this client can request."""


class Headers(dict):
    """Response headers: names lower-cased, a repeated header's values joined with ", ";
    looked up in any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Target:
    """What a URL means for a request: where to connect and what to ask for."""

    def __init__(self, url: str):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"{exc}") from None
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("http", "https"):
            raise InvalidURL(f"{parts.scheme or 'no'} scheme: only http:// and https:// URLs")
        if not parts.hostname:
            raise InvalidURL("no host name")
        self.url = url
        try:  # a non-ASCII name goes on the wire (Host, CONNECT) in its ASCII (IDNA) form
            self.host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(f"the host name {parts.hostname!r} is not a valid domain name") from None
        self.port = port or (443 if self.scheme == "https" else 80)
        self.origin = (self.scheme, self.host, self.port)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = name if port is None else f"{name}:{port}"
        path = quote(parts.path or "/", safe=_SAFE_TARGET)
        self.path = path + ("?" + quote(parts.query, safe=_SAFE_TARGET) if parts.query else "")
        self.basic_auth = _basic(parts.username, parts.password) if parts.username else None


def _basic(user: str, password: str | None) -> str:
    pair = f"{unquote(user)}:{unquote(password or '')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def proxy_for(target: _Target) -> _Target | None:
    """The proxy the environment names for `target`, if `no_proxy` does not exempt it."""
    env = os.environ
    for lower in (f"{target.scheme}_proxy", "all_proxy"):
        name = lower if lower in env else lower.upper()  # the lower-case one wins, even empty (as curl)
        value = env.get(name, "")
        if value:
            break
    else:
        return None
    if _exempt(target.host, env["no_proxy"] if "no_proxy" in env else env.get("NO_PROXY", "")):
        return None
    if "://" not in value:
        value = "http://" + value
    try:
        return _Target(value)
    except InvalidURL:
        raise TransportError(f"the proxy {name}={value.split('://')[0]}://… is not an http(s) proxy "
                             "(SOCKS proxies are not supported)") from None


def _exempt(host: str, no_proxy: str) -> bool:
    """`no_proxy` as curl reads it: "*", or host names and domains (".example.com" or
    "example.com" for it and its subdomains), ports ignored."""
    for entry in no_proxy.split(","):
        entry = entry.strip().lower().split("://")[-1]
        if entry.startswith("[") and "]" in entry:
            entry = entry[1:entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.split(":")[0]
        entry = entry.lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


class TrustOnFirstUse(ssl.SSLContext):
    """The TLS context: certificates and host names checked against SSL_CERT_FILE, SSL_CERT_DIR
    or certifi's CA bundle, read at the first TLS handshake instead of when it is made: ~30 ms
    a run against a plain-http server never needs."""

    _trusted = False

    def _trust(self) -> None:
        if self._trusted:
            return
        for name, where in (("SSL_CERT_FILE", "cafile"), ("SSL_CERT_DIR", "capath")):
            if os.environ.get(name):
                try:
                    self.load_verify_locations(**{where: os.environ[name]})
                except OSError as exc:  # say which setting points nowhere
                    raise OSError(exc.errno, f"cannot read the CA certificates in {name}={os.environ[name]} "
                                             f"({exc.strerror or exc})") from None
                break
        else:
            import certifi

            self.load_verify_locations(cafile=certifi.where())
        if os.environ.get("SSLKEYLOGFILE") and not sys.flags.ignore_environment:
            self.keylog_filename = os.environ["SSLKEYLOGFILE"]  # as ssl.create_default_context does
        self._trusted = True

    def wrap_bio(self, *args, **kwargs):  # what asyncio calls to start TLS
        self._trust()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args, **kwargs):
        self._trust()
        return super().wrap_socket(*args, **kwargs)


def tls_context() -> ssl.SSLContext:
    context = TrustOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def describe(exc: BaseException, host: str = "") -> str:
    """An exception from connecting or reading, in a few words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS error: the server's certificate was refused ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "the server reset the connection"
    if isinstance(exc, OSError) and exc.__class__.__name__ == "gaierror":
        return f"cannot resolve the host name {host} ({exc.strerror or exc})".replace(" ()", "")
    if isinstance(exc, h11.RemoteProtocolError):
        return f"the reply breaks HTTP/1.1 ({exc})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


class _Connection:
    """One TCP (or TLS) connection and its HTTP/1.1 state."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, key: tuple):
        self.reader, self.writer, self.host, self.key = reader, writer, host, key
        self.loop = asyncio.get_running_loop()
        self.http = h11.Connection(h11.CLIENT)

    def idle_and_open(self) -> bool:
        """Fit for the next request: on this event loop (a process may run several one after
        the other), and not closed by the server meanwhile."""
        # bytes waiting on an idle connection are no reply to anything we will send (a 408 before
        # the server hangs up): such a connection is done. StreamReader has no public peek.
        return (self.loop is asyncio.get_running_loop() and self.http.our_state is h11.IDLE
                and not self.reader.at_eof() and not self.reader._buffer and not self.writer.is_closing())

    async def send(self, data: bytes, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                self.writer.write(data)
                await self.writer.drain()
        except TimeoutError:
            raise Timeout("write") from None
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(describe(exc, self.host)) from exc

    async def next_event(self, timeout: float) -> Any:
        """The next h11 event of the reply, reading as much as it takes."""
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError as exc:
                raise TransportError(_cut_short(exc)) from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(_READ_SIZE)
            except TimeoutError:
                raise Timeout("read") from None
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(describe(exc, self.host)) from exc
            self.http.receive_data(data)

    def abort(self) -> None:
        try:
            self.writer.transport.abort()
        except RuntimeError:  # its event loop is closed: the socket goes with the object
            pass


def _cut_short(exc: h11.RemoteProtocolError) -> str:
    text = str(exc)
    if "without sending complete message body" in text:
        return "the server closed the connection before the reply was complete"
    if "before sending complete response" in text or "unexpected EOF" in text.lower():
        return "the server closed the connection without replying"
    return describe(exc)


class Response:
    """A reply whose body is read as it arrives (`aiter_bytes`, `aiter_raw`) or whole (`aread`)."""

    def __init__(self, url: str, status_code: int, reason: str, headers: Headers,
                 connection: _Connection, client: Client):
        self.url, self.status_code, self.reason_phrase, self.headers = url, status_code, reason, headers
        self._connection: _Connection | None = connection
        self._client = client
        self._content: bytes | None = None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as sent (content encoding not undone)."""
        connection = self._connection
        if connection is None:
            raise TransportError("the reply's body was already read")
        while True:
            event = await connection.next_event(self._client.read_timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._client._release(connection)
                self._connection = None
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError("the server closed the connection before the reply was complete")

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body with gzip or deflate undone."""
        encoding = self.headers.get("content-encoding", "")
        decoder = _decoder(encoding)
        try:
            async for chunk in self.aiter_raw():
                chunk = decoder.decompress(chunk) if decoder else chunk
                if chunk:
                    yield chunk
            rest = decoder.flush() if decoder else b""
        except zlib.error:
            raise TransportError(f"the reply's {encoding.strip().lower()} body is corrupt") from None
        if rest:
            yield rest

    async def aread(self) -> bytes:
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise TransportError("the reply's body was not read")
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    async def finish(self) -> None:
        """Done with the reply: read what little is left of it (an event stream's final chunk, after
        its `[DONE]`), so that the connection can serve the next turn; if more is left, or it takes
        long, close the connection instead."""
        connection, budget = self._connection, _FINISH_BYTES
        try:
            async with asyncio.timeout(_FINISH_SECONDS):
                while connection is self._connection and connection is not None and budget > 0:
                    event = await connection.next_event(_FINISH_SECONDS)
                    if isinstance(event, h11.Data):
                        budget -= len(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        self._client._release(connection)
                        self._connection = None
                    else:
                        break
        except (TimeoutError, TransportError):
            pass
        self.close()

    def close(self) -> None:
        """Done with the reply: a connection whose reply was not read to its end is closed."""
        if self._connection is not None:
            self._connection.abort()
            self._connection = None


class _Deflate:
    """deflate as servers send it: zlib-wrapped, as the RFC says, or raw, as some do."""

    def __init__(self):
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS)
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""


def _decoder(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _Deflate()
    raise TransportError(f"the reply is in {encoding} encoding, which voicecli cannot read")


class Client:
    """Requests with pooled keep-alive connections; `connect_timeout` covers connecting (proxy
    tunnel and TLS included), `read_timeout` each write and each wait for more of the reply."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, context: ssl.SSLContext | None = None):
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._context = context
        self._idle: dict[tuple, list[_Connection]] = {}
        self.is_closed = False

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, content: bytes | None = None,
                     headers: dict[str, str] | None = None) -> AsyncIterator[Response]:
        """`async with client.stream("POST", url, content=…, headers=…) as response:` — the status
        and headers have arrived; the body is read from `response`."""
        response = await self._send(method, url, content, headers or {})
        try:
            yield response
            await response.finish()
        except BaseException:  # cancelled (a barge-in) or failed: the connection is mid-exchange
            response.close()
            raise

    async def request(self, method: str, url: str, *, content: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        """The whole reply, body read (`response.content`)."""
        async with self.stream(method, url, content=content, headers=headers) as response:
            await response.aread()
        return response

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", url, headers=headers)

    async def _send(self, method: str, url: str, content: bytes | None, headers: dict[str, str]) -> Response:
        target = _Target(url)
        proxy = proxy_for(target)
        lines = [("Host", target.authority), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate")]
        given = {name.lower() for name in headers}
        lines = [(k, v) for k, v in lines if k.lower() not in given] + list(headers.items())
        if target.basic_auth and "authorization" not in given:
            lines.append(("Authorization", target.basic_auth))
        if content is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(("Content-Length", str(len(content or b""))))
        absolute = proxy is not None and target.scheme == "http"  # a plain-http proxy is asked for the whole URL
        if absolute and proxy.basic_auth:
            lines.append(("Proxy-Authorization", proxy.basic_auth))
        path = f"http://{target.authority}{target.path}" if absolute else target.path
        key = (target.origin, proxy.origin if proxy else None)
        while True:
            connection, reused = self._idle_connection(key), True
            if connection is None:
                connection, reused = await self._connect(target, proxy), False
            try:
                http = connection.http
                data = http.send(h11.Request(method=method, target=path, headers=lines))
                data += http.send(h11.Data(data=content)) if content else b""
                try:
                    await connection.send(data + http.send(h11.EndOfMessage()), self.read_timeout)
                except Timeout:
                    raise
                except TransportError as unsent:  # the server may have answered, then hung up
                    event = await _early_reply(connection, self.read_timeout, unsent)
                else:
                    event = await connection.next_event(self.read_timeout)
                while isinstance(event, h11.InformationalResponse):  # 100 Continue and the like
                    event = await connection.next_event(self.read_timeout)
            except TransportError as exc:
                connection.abort()
                if reused and not isinstance(exc, Timeout):
                    # the server closed it while it sat idle, before this request reached it: sent
                    # again once on a new connection (as browsers do), outside max_retries
                    continue
                raise
            except h11.LocalProtocolError:  # a header h11 will not send (its message quotes the value: not shown)
                connection.abort()
                raise TransportError("the request could not be sent: a header HTTP/1.1 cannot carry") from None
            except BaseException:  # cancelled: the connection is mid-exchange
                connection.abort()
                raise
            if isinstance(event, h11.ConnectionClosed):
                connection.abort()
                if reused:
                    continue
                raise TransportError("the server closed the connection without replying")
            return Response(url, event.status_code, event.reason.decode("latin-1"), _headers(event.headers),
                            connection, self)

    def _idle_connection(self, key: tuple) -> _Connection | None:
        pool = self._idle.get(key) or []
        while pool:
            connection = pool.pop()
            if connection.idle_and_open():
                return connection
            connection.abort()
        return None

    def _release(self, connection: _Connection) -> None:
        """A reply read to its end: keep the connection for the next request if both sides may."""
        http = connection.http
        if (http.our_state is h11.DONE and http.their_state is h11.DONE and not self.is_closed
                and not http.trailing_data[0]):  # bytes past the reply's end: no clean next exchange
            http.start_next_cycle()
            self._idle.setdefault(connection.key, []).append(connection)
        else:
            connection.abort()

    async def _connect(self, target: _Target, proxy: _Target | None) -> _Connection:
        hop = proxy or target
        tls = self._tls() if hop.scheme == "https" else None
        connection = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                # every address of the name, the next one tried after 250 ms without an answer
                # (a silently broken IPv6 route must not take the whole timeout)
                reader, writer = await asyncio.open_connection(hop.host, hop.port, ssl=tls,
                                                               server_hostname=hop.host if tls else None,
                                                               happy_eyeballs_delay=0.25, interleave=1)
                connection = _Connection(reader, writer, target.host,
                                         (target.origin, proxy.origin if proxy else None))
                if proxy is not None and target.scheme == "https":
                    await self._tunnel(connection, target, proxy)
                    await writer.start_tls(self._tls(), server_hostname=target.host)
            return connection
        except BaseException as exc:
            if connection is not None:
                connection.abort()
            if isinstance(exc, TimeoutError):
                raise Timeout("connect") from None
            if isinstance(exc, (OSError, ssl.SSLError)) and not isinstance(exc, TransportError):
                # the address only for the server itself: a proxy that refuses keeps the usual retries
                raise TransportError(describe(exc, hop.host), None if proxy else (hop.host, hop.port)) from exc
            raise

    async def _tunnel(self, connection: _Connection, target: _Target, proxy: _Target) -> None:
        """CONNECT through the proxy; afterwards the connection carries the target's TLS."""
        where = f"{target.host}:{target.port}" if ":" not in target.host else f"[{target.host}]:{target.port}"
        lines = [("Host", where)] + ([("Proxy-Authorization", proxy.basic_auth)] if proxy.basic_auth else [])
        http = connection.http
        await connection.send(http.send(h11.Request(method="CONNECT", target=where, headers=lines))
                              + http.send(h11.EndOfMessage()), self.connect_timeout)
        event = await connection.next_event(self.connect_timeout)
        if not isinstance(event, h11.Response) or not 200 <= event.status_code < 300:
            status = getattr(event, "status_code", "no reply")
            raise TransportError(f"the proxy {proxy.authority} refused the tunnel to {where} ({status})")
        connection.http = h11.Connection(h11.CLIENT)  # the tunnel is open: a new exchange starts

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context()
        return self._context

    async def aclose(self) -> None:
        """Close every pooled connection at once (nothing is waited for)."""
        self.is_closed = True
        for pool in self._idle.values():
            for connection in pool:
                connection.abort()
        self._idle.clear()


async def _early_reply(connection: _Connection, timeout: float, unsent: TransportError) -> Any:
    """The reply a server sent before it closed the connection on a request it would not read to
    the end (a 413 for a large upload): it says more than "connection reset". Else `unsent`."""
    # what arrived before the reset: StreamReader.read() raises the reset first, however much is buffered
    connection.http.receive_data(bytes(connection.reader._buffer))
    connection.reader._buffer.clear()
    try:
        event = await connection.next_event(timeout)
    except TransportError:
        raise unsent from None
    if not isinstance(event, (h11.Response, h11.InformationalResponse)):
        raise unsent
    return event


def _headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    headers = Headers()
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{dict.__getitem__(headers, key)}, {text}" if dict.__contains__(headers, key) else text
    return headers


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type: text `fields`, then `files` as
    (filename, bytes, content type)."""
    boundary = os.urandom(16).hex()
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    for name, (filename, data, kind) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
