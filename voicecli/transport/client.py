"""The HTTP client under the `sse` and `chat` transports, speech-to-text / text-to-speech,
`voicecli models` and `-f URL`: httpx2, set up in one place, with what a client of servers it does
not control needs on top of it.

- proxies read from the environment as curl reads them (`http_proxy`, `https_proxy`, `all_proxy`,
  `no_proxy`, the lower-case name winning even when empty), one httpx2 client per proxy;
- TLS trust: `SSL_CERT_FILE` / `SSL_CERT_DIR`, else the operating system's store (`truststore` on
  macOS and Windows), else certifi's bundle; loaded at the first TLS handshake, so a plain-http run
  never reads certificates;
- a POST is never sent twice on its own: only `max_retries` (the caller's) sends it again;
- bounds no server can push past: the reply's head within one `read_timeout` (a server trickling
  a byte a second cannot hold a run); a body that stays silent for `read_timeout` — no complete
  event, no tenth of a second of audio — ends as a timeout; whole bodies and streams capped after
  decompression (httpx2 inflates in 1 MiB pieces, so a gzip bomb is stopped at the cap);
- httpx2's exceptions in a few plain words ("connection refused", "cannot resolve the host name
  X"), each timeout naming its phase.

httpx2 is imported by the first request, never by `-t ws`, `--version`, `profiles` or `logs`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

ERROR_BODY_LIMIT = 1 << 20  # an error reply or other body read whole: its first MiB is plenty
JSON_LIMIT = 4 << 20  # a JSON reply (`models` of a large gateway is a few hundred KiB)
STREAM_LIMIT = 256 << 20  # an event stream or speech, decompressed: ~45 minutes of 24 kHz audio
# a compressed body that inflates past BOMB_AFTER bytes at more than BOMB_RATIO times its size is a bomb:
# real event streams and JSON compress 5-50 times; a gigabyte of zeros in a megabyte is 1000
BOMB_AFTER, BOMB_RATIO = 16 << 20, 200
_ENCODINGS = ("", "identity", "gzip", "x-gzip", "deflate")  # what Accept-Encoding asks for
_FINISH_BYTES, _FINISH_SECONDS = 65536, 0.25  # what is read of a reply's rest to keep its connection


class TransportError(Exception):
    """The exchange failed below HTTP: refused, reset, TLS, a reply that breaks HTTP/1.1, a body
    over its cap. The message says what in a few words, for "connection to URL failed: …";
    `address` is the server's (host, port) when connecting to it (not through a proxy) failed;
    `retryable` is False for what another attempt cannot change."""

    def __init__(self, message: str, address: tuple[str, int] | None = None, *, retryable: bool = True):
        super().__init__(message)
        self.address = address
        self.retryable = retryable


class Timeout(TransportError):
    """A timeout: `phase` is "connect" (connecting, TLS and any proxy tunnel included), "write"
    (sending the request), "reply" (waiting for the status line and headers) or "read" (silence
    in the body)."""

    def __init__(self, phase: str):
        super().__init__(f"{phase} timed out")
        self.phase = phase


class InvalidURL(TransportError, ValueError):
    """Not an http(s) URL this client can request."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class _Target:
    """What a URL means for a request: scheme, host (in its ASCII form), port, and any credentials
    it carries (sent as Basic authentication, never as part of the URL)."""

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
        try:  # a non-ASCII name goes on the wire (Host, CONNECT) in its ASCII (IDNA) form
            self.host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(f"the host name {parts.hostname!r} is not a valid domain name") from None
        self.port = port or (443 if self.scheme == "https" else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = name if port is None else f"{name}:{port}"
        self.url = urlunsplit((self.scheme, self.authority, parts.path or "/", parts.query, ""))
        self.basic_auth = _basic(parts.username, parts.password) if parts.username else None


def _basic(user: str, password: str | None) -> str:
    pair = f"{unquote(user)}:{unquote(password or '')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def proxy_for(target: _Target) -> tuple[str, str] | None:
    """(the variable's name, the proxy URL) the environment names for `target`, unless `no_proxy`
    exempts it."""
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
    if value.split("://")[0].lower() not in ("http", "https"):
        from voicecli.errors import ConfigError

        raise ConfigError(f"{name} names a {value.split('://')[0]}:// proxy, which voicecli cannot use "
                          "(SOCKS proxies are not supported)", hint=f"unset it for voicecli, or use an HTTP proxy "
                                                                     f"(http://host:port) in {name}")
    try:
        _Target(value)
    except InvalidURL as exc:
        raise TransportError(f"the proxy in {name} is not a valid URL ({exc})", retryable=False) from None
    return name, value


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
    """Certificates and host names checked against SSL_CERT_FILE, SSL_CERT_DIR, else the system's
    store, else certifi's bundle — read at the first TLS handshake instead of when the client is
    made: ~30 ms a run against a plain-http server never needs."""

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
            paths = ssl.get_default_verify_paths()  # the OS store (update-ca-certificates adds company roots)
            cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
            capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
            if cafile or capath:
                self.load_verify_locations(cafile, capath)
            if not self.cert_store_stats()["x509_ca"] and not capath:
                import certifi  # a system without a CA store (a slim container)

                self.load_verify_locations(cafile=certifi.where())
        if os.environ.get("SSLKEYLOGFILE") and not sys.flags.ignore_environment:
            self.keylog_filename = os.environ["SSLKEYLOGFILE"]  # as ssl.create_default_context does
        self._trusted = True

    def wrap_bio(self, *args, **kwargs):  # what asyncio (and so anyio) calls to start TLS
        self._trust()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args, **kwargs):
        self._trust()
        return super().wrap_socket(*args, **kwargs)


def tls_context() -> ssl.SSLContext:
    """The TLS context for every https request: the system's own verifier where `truststore`
    has one (macOS, Windows), else certificates checked against the files TrustOnFirstUse names."""
    if sys.platform in ("darwin", "win32") and not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
        try:
            import truststore

            return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        except ImportError:
            pass
    context = TrustOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def describe(exc: BaseException, host: str = "") -> str:
    """An exception from connecting or reading (httpx2's, or what it wraps), in a few words."""
    import httpx2

    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS error: the server's certificate was refused ({cause.verify_message or cause})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "the server reset the connection"
        if isinstance(cause, OSError) and cause.__class__.__name__ == "gaierror":
            return f"cannot resolve the host name {host} ({cause.strerror or cause})".replace(" ()", "")
        if isinstance(cause, OSError) and cause.errno and cause.strerror and "CA certificates" in cause.strerror:
            return cause.strerror
    if isinstance(exc, httpx2.RemoteProtocolError):
        text = str(exc)
        if "without sending complete message body" in text or "incomplete" in text.lower():
            return "the server closed the connection before the reply was complete"
        if "without sending a response" in text or "disconnected" in text.lower():
            return "the server closed the connection without replying"
        return f"the reply breaks HTTP/1.1 ({text})"
    for cause in chain:
        if isinstance(cause, OSError) and (cause.strerror or str(cause)):
            return cause.strerror or str(cause)
    return str(exc) or type(exc).__name__


class _Phase:
    """Which part of an exchange is under way, from httpcore's trace events; once the request is
    sent, the reply's status line and headers have `read_timeout` in all (each byte of a trickled
    head would otherwise restart httpx2's per-read timeout)."""

    def __init__(self, read_timeout: float, deadline: asyncio.Timeout):
        self.name, self.read_timeout, self.deadline = "connect", read_timeout, deadline

    async def __call__(self, event: str, info: dict) -> None:
        if event.endswith("send_request_headers.started"):
            self.name = "write"
        elif event.endswith("receive_response_headers.started"):
            self.name = "reply"
            self.deadline.reschedule(asyncio.get_running_loop().time() + self.read_timeout)


class Response:
    """A reply whose body is read as it arrives (`aiter_bytes`) or whole (`aread`), within the
    caps and silence deadlines above."""

    def __init__(self, reply: Any, client: Client, host: str):
        self._reply, self._client, self._host = reply, client, host
        self.url, self.status_code = str(reply.url), reply.status_code
        self.reason_phrase, self.headers = reply.reason_phrase, reply.headers
        self._content: bytes | None = None
        self.truncated = False  # `aread` stopped at its limit
        self._silent = 0.0  # seconds waited for the body since it last made progress
        encoding = reply.headers.get("content-encoding", "").strip().lower()
        if encoding not in _ENCODINGS:  # httpx2 would pass it through undecoded: garbage
            raise TransportError(f"the reply is in {encoding} encoding, which voicecli cannot read", retryable=False)
        self._encoding = encoding
        self._pieces = reply.aiter_bytes()  # one generator: httpx2 reads a body once
        self._finished = False

    def progress(self) -> None:
        """The caller's word that the body made progress (a complete event arrived): the silence
        clock starts again."""
        self._silent = 0.0

    async def aiter_bytes(self, *, limit: int = STREAM_LIMIT, progress_bytes: int | None = 1) -> AsyncIterator[bytes]:
        """The body, decompressed, piece by piece. Silence: `read_timeout` of waiting without
        progress — each `progress_bytes` received, or (None) each `progress()` of the caller.
        More than `limit` bytes is an error."""
        import httpx2

        loop = asyncio.get_running_loop()
        pieces, total, since = self._pieces, 0, 0
        timeout = self._client.read_timeout
        try:
            while True:
                started = loop.time()
                try:
                    async with asyncio.timeout(max(timeout - self._silent, 0.001)):
                        chunk = await anext(pieces)
                except StopAsyncIteration:
                    self._finished = True
                    return
                except TimeoutError:
                    raise Timeout("read") from None
                finally:
                    self._silent += loop.time() - started
                total += len(chunk)
                if total > limit:
                    raise TransportError(f"the reply is larger than {_mib(limit)} (decompressed); "
                                         "voicecli stopped reading it", retryable=False)
                if self._encoding and total > BOMB_AFTER and total > BOMB_RATIO * self._reply.num_bytes_downloaded:
                    raise TransportError(f"the reply's {self._encoding} body inflates more than {BOMB_RATIO} times "
                                         "(a compression bomb?); voicecli stopped reading it", retryable=False)
                since += len(chunk)
                if progress_bytes is not None and since >= progress_bytes:
                    self._silent, since = 0.0, 0
                yield chunk
        except httpx2.DecodingError:
            raise TransportError(f"the reply's {self._encoding} body is corrupt", retryable=False) from None
        except httpx2.HTTPError as exc:
            raise _translate(exc, "read", self._host) from None

    async def aread(self, limit: int = ERROR_BODY_LIMIT) -> bytes:
        """The body, whole — at most `limit` bytes of it (`truncated` says if there was more),
        all within one `read_timeout`."""
        if self._content is None:
            body = bytearray()
            try:
                async with asyncio.timeout(self._client.read_timeout):
                    async for chunk in self.aiter_bytes(limit=1 << 62, progress_bytes=None):
                        body += chunk
                        if len(body) > limit:
                            self.truncated = True
                            break
            except TimeoutError:
                raise Timeout("read") from None
            self._content = bytes(body[:limit])
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
        """Done with the reply: read what little is left of it (an event stream's last chunk,
        after its `[DONE]`), so that the connection can serve the next turn; if more is left, or
        it takes long, the connection is closed instead."""
        if self._finished:
            return
        budget = _FINISH_BYTES
        try:
            async with asyncio.timeout(_FINISH_SECONDS):
                async for chunk in self._pieces:
                    budget -= len(chunk)
                    if budget < 0:
                        break
                else:
                    self._finished = True
        except Exception:  # noqa: BLE001 — anything but a clean end closes the connection below
            pass

    async def aclose(self) -> None:
        await self._pieces.aclose()
        await self._reply.aclose()


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _translate(exc: BaseException, phase: str, host: str, address: tuple[str, int] | None = None) -> TransportError:
    """httpx2's exception as ours: a timeout names its phase; the rest in a few words."""
    import httpx2

    if isinstance(exc, (httpx2.ConnectTimeout, httpx2.PoolTimeout)):
        return Timeout("connect")
    if isinstance(exc, httpx2.WriteTimeout):
        return Timeout("write")
    if isinstance(exc, httpx2.ReadTimeout):
        return Timeout("reply" if phase == "reply" else "read")
    if isinstance(exc, (httpx2.InvalidURL, httpx2.UnsupportedProtocol)):
        return InvalidURL(str(exc))
    if isinstance(exc, httpx2.LocalProtocolError):  # a header h11 will not send (its message quotes the value)
        return TransportError("the request could not be sent: a header HTTP/1.1 cannot carry", retryable=False)
    if isinstance(exc, httpx2.ProxyError):
        return TransportError(f"the proxy refused the tunnel to {host} ({exc})")
    return TransportError(describe(exc, host), address if isinstance(exc, httpx2.ConnectError) else None)


class Client:
    """Requests with pooled keep-alive connections (httpx2); `connect_timeout` covers connecting
    (proxy tunnel and TLS included), `read_timeout` each write, the reply's head, and silence in
    its body."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, context: ssl.SSLContext | None = None):
        """`context`: the TLS context, to share one between clients (its certificates are read once)."""
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._context = context
        self._clients: dict[str | None, Any] = {}  # per proxy URL (None: direct)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.is_closed = False

    def _httpx(self, proxy: str | None) -> Any:
        if self._loop is not asyncio.get_running_loop():  # a pool serves one event loop only
            self._clients, self._loop = {}, asyncio.get_running_loop()
        client = self._clients.get(proxy)
        if client is None:
            import httpx2

            if self._context is None:
                self._context = tls_context()
            timeout = httpx2.Timeout(connect=self.connect_timeout, read=self.read_timeout,
                                     write=self.read_timeout, pool=self.connect_timeout)
            client = self._clients[proxy] = httpx2.AsyncClient(
                timeout=timeout, verify=self._context, trust_env=False, proxy=proxy, follow_redirects=False,
                headers={"Accept": "*/*", "Accept-Encoding": "gzip, deflate"})
        return client

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, content: bytes | None = None, headers: dict[str, str] | None = None,
                     files: dict[str, tuple[str, bytes, str]] | None = None,
                     data: dict[str, str] | None = None) -> AsyncIterator[Response]:
        """`async with client.stream("POST", url, content=…, headers=…) as response:` — the status
        and headers have arrived; the body is read from `response`. `files` and `data` make a
        multipart form (httpx2 escapes its names)."""
        import httpx2

        target = _Target(url)
        found = proxy_for(target)
        headers = dict(headers or {})
        if target.basic_auth and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = target.basic_auth
        client = self._httpx(found[1] if found else None)
        deadline = asyncio.timeout(None)
        phase = _Phase(self.read_timeout, deadline)
        try:
            request = client.build_request(method, target.url, content=content, headers=headers, files=files,
                                           data=data, extensions={"trace": phase})
        except httpx2.HTTPError as exc:
            raise _translate(exc, "connect", target.host) from None
        address = None if found else (target.host, target.port)
        try:
            async with deadline:
                reply = await client.send(request, stream=True)
        except TimeoutError:
            if deadline.expired():
                raise Timeout("reply") from None
            raise
        except OSError as exc:  # TrustOnFirstUse's unreadable SSL_CERT_FILE, raised through the TLS start
            raise TransportError(describe(exc, target.host), retryable=False) from None
        except httpx2.ProxyError as exc:
            raise TransportError(f"the proxy {_Target(found[1]).authority} refused the tunnel to "
                                 f"{target.authority} ({exc})") from None
        except httpx2.HTTPError as exc:
            if found and isinstance(exc, httpx2.ConnectError):
                raise TransportError(f"the proxy {found[0]}={_Target(found[1]).authority} could not be reached: "
                                     f"{describe(exc, _Target(found[1]).host)}") from None
            raise _translate(exc, phase.name, target.host, address) from None
        try:
            response = Response(reply, self, target.host)
        except BaseException:
            await reply.aclose()
            raise
        try:
            yield response
            await response.finish()
        finally:  # cancelled (a barge-in) or failed mid-body: httpx2 closes the connection
            await response.aclose()

    async def request(self, method: str, url: str, *, limit: int = JSON_LIMIT, **kwargs: Any) -> Response:
        """The whole reply, body read (`response.content`, at most `limit` bytes); `kwargs` as `stream`'s."""
        async with self.stream(method, url, **kwargs) as response:
            await response.aread(limit)
        return response

    async def get(self, url: str, *, headers: dict[str, str] | None = None, limit: int = JSON_LIMIT) -> Response:
        return await self.request("GET", url, headers=headers, limit=limit)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        self.is_closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.aclose()
            except RuntimeError:  # made on an event loop that is gone: its sockets go with it
                pass
