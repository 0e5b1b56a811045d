"""The one WebSocket opener and closer for the Responses-WS and Realtime transports: the profile's
headers, timeouts and limits in one place, and a failure to open as one neutral `Error`."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from voicecli.events import Error
from voicecli.profiles import Connection
from voicecli.transport.base import redact, request_headers
from voicecli.wire import errors

CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's close frame


class ConnectError(Exception):
    """The socket could not be opened; `error` says why (HTTP status, timeout, refused)."""

    def __init__(self, error: Error):
        super().__init__(error.message)
        self.error = error


async def open_websocket(url: str, conn: Connection, api_key: str | None) -> ClientConnection:
    """Open `url` with the profile's headers, within `connection.connect_timeout`; pings answered
    within `read_timeout` keep it known to be alive."""
    try:
        return await connect(url, additional_headers=request_headers(conn, api_key),
                             open_timeout=conn.connect_timeout, max_size=None, compression=None,
                             ping_interval=20, ping_timeout=conn.read_timeout, close_timeout=CLOSE_TIMEOUT)
    except InvalidStatus as exc:
        resp = exc.response
        raise ConnectError(errors.from_http(resp.status_code, resp.body, dict(resp.headers))) from None
    except (asyncio.TimeoutError, TimeoutError):
        raise ConnectError(errors.connection_error(
            redact(f"could not open a WebSocket to {url} within {conn.connect_timeout:g} s "
                   "(connection.connect_timeout)", api_key), timeout=True)) from None
    except (InvalidHandshake, OSError) as exc:
        raise ConnectError(errors.connection_error(redact(f"cannot connect to {url}: {exc}", api_key))) from None


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
