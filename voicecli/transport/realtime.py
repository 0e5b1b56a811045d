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

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voicecli.events import Disconnected, Event
from voicecli.profiles import Connection
from voicecli.transport.base import parse_event, redact, scrub
from voicecli.transport.urls import endpoint_url, refuse_socks_for_websocket
from voicecli.transport.ws import close_websocket, open_websocket, too_big
from voicecli.wire.realtime import RealtimeDecoder

log = logging.getLogger("voicecli")


class RealtimeTransport:
    def __init__(self, conn: Connection, base_url: str, api_key: str | None, model: str | None,
                 query: dict[str, str] | None = None):
        self.conn = conn
        self.api_key = api_key
        params = {**({"model": model} if model else {}), **(query or {})}  # a transcription session has none
        self.url = endpoint_url(base_url, "/realtime", {k: str(v) for k, v in params.items()}, websocket=True)
        self.decoder = RealtimeDecoder()
        self._ws: ClientConnection | None = None

    async def connect(self) -> None:
        """Open the socket; a failure is a `ConnectError` carrying a neutral `Error` (a SOCKS proxy in the
        environment: a `ConfigError`)."""
        refuse_socks_for_websocket(self.url)
        self._ws = await open_websocket(self.url, self.conn, self.api_key)

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
                    yield scrub(event, self.api_key)  # an `error` event may quote the key
            reason = self._close_reason()
        except ConnectionClosed as exc:
            reason = too_big(exc) or redact(f"connection closed ({exc})", self.api_key)
        yield Disconnected(reason)

    def _close_reason(self) -> str:
        ws = self._ws
        code = ws.close_code if ws is not None else None
        why = ws.close_reason if ws is not None else ""
        return redact(f"connection closed ({code}{': ' + why if why else ''})", self.api_key)

    async def aclose(self) -> None:
        ws, self._ws = self._ws, None
        await close_websocket(ws)
