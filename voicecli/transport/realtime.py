"""Realtime API over one WebSocket (`wss://…/v1/realtime?model=…`), for `voicecli talk`.

A thin I/O shell around `voicecli.wire.realtime`: it opens the socket (GA: no OpenAI-Beta
header), sends client events, and turns each server event into neutral events. The voice
session above it (`voicecli.voice.session`) never reads a wire dict.

Timeouts: opening and every send are bounded by the profile's `connect_timeout`. A live voice
session may be silent for minutes, so reads have no deadline of their own; a dead connection
is found by WebSocket pings instead (answered within `read_timeout`), which ends the event
stream with `Disconnected`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voicecli.events import Disconnected, Error, Event
from voicecli.profiles import Connection
from voicecli.transport.base import parse_event, redact
from voicecli.transport.http import request_headers
from voicecli.transport.urls import endpoint_url
from voicecli.wire import errors
from voicecli.wire.realtime import RealtimeDecoder

log = logging.getLogger("voicecli")


class RealtimeTransport:
    def __init__(self, conn: Connection, base_url: str, api_key: str | None, model: str,
                 query: dict[str, str] | None = None):
        self.conn = conn
        self.api_key = api_key
        params = {"model": model, **(query or {})}
        self.url = endpoint_url(base_url, "/realtime", {k: str(v) for k, v in params.items()}, websocket=True)
        self.decoder = RealtimeDecoder()
        self._ws: ClientConnection | None = None

    async def connect(self) -> None:
        """Open the socket; failures come back as one-line `VoicecliError`-ready `Error`s."""
        try:
            self._ws = await connect(
                self.url, additional_headers=request_headers(self.conn, self.api_key),
                open_timeout=self.conn.connect_timeout, max_size=None, compression=None,
                ping_interval=20, ping_timeout=self.conn.read_timeout, close_timeout=2)
        except InvalidStatus as exc:
            resp = exc.response
            raise ConnectError(errors.from_http(resp.status_code, resp.body, dict(resp.headers))) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise ConnectError(errors.connection_error(
                redact(f"could not open a WebSocket to {self.url} within {self.conn.connect_timeout:g} s "
                       "(connection.connect_timeout)", self.api_key), timeout=True)) from None
        except (InvalidHandshake, OSError) as exc:
            raise ConnectError(errors.connection_error(
                redact(f"cannot connect to {self.url}: {exc}", self.api_key))) from None

    async def send(self, event: dict[str, Any]) -> bool:
        """Send one client event; False if the socket is gone (the event stream reports why)."""
        if self._ws is None:
            return False
        try:
            await asyncio.wait_for(self._ws.send(json.dumps(event)), self.conn.connect_timeout)
            return True
        except (ConnectionClosed, asyncio.TimeoutError, TimeoutError, OSError) as exc:
            log.debug("send failed: %s", exc)
            return False

    async def events(self) -> AsyncIterator[Event]:
        """Server events as neutral events until the socket closes (then one `Disconnected`)."""
        assert self._ws is not None
        try:
            async for raw in self._ws:
                data = parse_event(raw)
                if data is None:
                    continue
                for event in self.decoder.feed(data):
                    yield event
            reason = self._close_reason()
        except ConnectionClosed as exc:
            reason = redact(f"connection closed ({exc})", self.api_key)
        yield Disconnected(reason)

    def _close_reason(self) -> str:
        ws = self._ws
        code = ws.close_code if ws is not None else None
        why = ws.close_reason if ws is not None else ""
        return f"connection closed ({code}{': ' + why if why else ''})"

    async def aclose(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 2)
            except Exception:  # closing a broken socket: nothing left to save
                pass


class ConnectError(Exception):
    def __init__(self, error: Error):
        super().__init__(error.message)
        self.error = error
