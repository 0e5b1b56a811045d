"""The one WebSocket opener and closer for the Responses-WS and Realtime transports: the profile's
headers, timeouts and limits in one place, and a failure to open as one neutral `Error`."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import types
from typing import Literal


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module until something looks up one of its names: then the real module is
    imported, replaces it, and answers."""

    def __getattr__(self, attr: str):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)  # also makes it the parent package's attribute again
        self.__dict__.update(real.__dict__)  # for whoever kept a reference to the stand-in
        return getattr(real, attr)


def _import_on_first_use(name: str) -> None:
    if name not in sys.modules:
        stand_in = sys.modules[name] = _ImportedOnFirstUse(name)
        parent, _, child = name.rpartition(".")
        setattr(importlib.import_module(parent), child, stand_in)  # as `import parent.child` does


# websockets/version.py imports importlib.metadata (~10 ms: email, zipfile, csv, …) for the
# version of a development checkout only; a released websockets never uses it.
_import_on_first_use("importlib.metadata")
# websockets/uri.py imports urllib.request (~10 ms: http.client, email, …) to look up a proxy as a
# connection opens; `_proxy()` skips the lookup when it could find none.
_import_on_first_use("urllib.request")

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI  # noqa: E402,F401

from voicecli.events import Error  # noqa: E402
from voicecli.profiles import Connection  # noqa: E402
from voicecli.transport.base import redact, redact_error, refused_here, request_headers  # noqa: E402
from voicecli.wire import errors  # noqa: E402

CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's close frame
# The largest message a server may send (a Realtime audio delta is ~100 KiB, a Responses event rarely
# over 1 MiB); a bigger one closes the socket with 1009 instead of filling memory (`too_big`).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ConnectError(Exception):
    """The socket could not be opened; `error` says why (HTTP status, timeout, refused)."""

    def __init__(self, error: Error):
        super().__init__(error.message)
        self.error = error


def _proxy() -> Literal[True] | None:
    """websockets' `proxy` argument: True (look one up, as websockets does by default) unless the
    lookup cannot find any. Outside macOS and Windows, urllib.request's lookup reads only the
    environment variables named *_proxy (any case): with none set there is no proxy."""
    if sys.platform in ("darwin", "win32") or any(k.lower().endswith("_proxy") and v for k, v in os.environ.items()):
        return True
    return None


class _NoRedirects(connect):
    """`connect` that follows no redirect (as the HTTP transports): websockets would follow one to
    another origin with the profile's custom credential headers (`api-key`, `OpenAI-Project`), and
    a `Location: http://…` would end in an exception no caller expects."""

    def process_redirect(self, exc: Exception) -> Exception:
        return exc


def _credentials(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """`url` without its userinfo, and the headers with Basic auth from that userinfo unless an
    `Authorization` (the Bearer key) is already there: one Authorization header, as over HTTP."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, headers
    if not any(name.lower() == "authorization" for name in headers):
        from websockets.headers import build_authorization_basic

        user, _, password = userinfo.partition(":")
        headers = {**headers, "Authorization": build_authorization_basic(unquote(user), unquote(password))}
    return parts._replace(netloc=host).geturl(), headers


async def open_websocket(url: str, conn: Connection, api_key: str | None) -> ClientConnection:
    """Open `url` with the profile's headers, within `connection.connect_timeout`; pings answered
    within `read_timeout` keep it known to be alive. No redirect is followed."""
    try:
        target, headers = _credentials(url, request_headers(conn, api_key))
        return await _NoRedirects(target, additional_headers=headers, proxy=_proxy(),
                                  open_timeout=conn.connect_timeout, max_size=MAX_MESSAGE_BYTES, compression=None,
                                  ping_interval=20, ping_timeout=conn.read_timeout, close_timeout=CLOSE_TIMEOUT)
    except InvalidStatus as exc:
        resp = exc.response
        if 300 <= resp.status_code < 400:
            where = resp.headers.get("Location") or "an unnamed place"
            raise ConnectError(Error("protocol", redact(f"redirect to {where} not followed (is connection.base_url "
                                                        "right?)", api_key), status=resp.status_code,
                                     request_id=resp.headers.get("x-request-id"))) from None
        error = errors.from_http(resp.status_code, resp.body, dict(resp.headers))
        raise ConnectError(redact_error(error, api_key)) from None
    except (asyncio.TimeoutError, TimeoutError):
        raise ConnectError(errors.connection_error(
            redact(f"could not open a WebSocket to {url} within {conn.connect_timeout:g} s "
                   "(connection.connect_timeout)", api_key), timeout=True)) from None
    except (InvalidHandshake, OSError) as exc:
        refused = _refused_here(exc, url)
        raise ConnectError(refused or errors.connection_error(redact(f"cannot connect to {url}: {exc}", api_key))) \
            from None


def _refused_here(exc: BaseException, url: str) -> Error | None:
    """`refused_here` for a WebSocket opened straight to the server (a proxy keeps the usual retries)."""
    from websockets.uri import parse_uri

    try:
        uri = parse_uri(url)
    except InvalidURI:
        return None
    if _proxy():
        from websockets.proxy import get_proxy

        if get_proxy(uri):
            return None
    return refused_here(exc, uri.host, uri.port)


def too_big(exc: ConnectionClosed) -> str | None:
    """The one-line reason when `exc` is voicecli closing the socket over `MAX_MESSAGE_BYTES`, else None."""
    if exc.sent is not None and exc.sent.code == 1009:
        return (f"the server sent a WebSocket message over {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB; "
                "the connection was dropped")
    return None


async def close_websocket(ws: ClientConnection | None, *, leaving: bool = False) -> None:
    """Close `ws`. `leaving` (the user is going): send the close frame but do not wait for the
    server's reply, which a busy server sends only between events."""
    if ws is None:
        return
    if leaving:
        ws.close_timeout = 0  # the close frame goes out, then the connection is aborted
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
    except Exception:  # closing a broken socket: nothing left to save
        pass
