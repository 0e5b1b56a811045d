"""Responses API over one persistent WebSocket (`ws`).

- One connection serves many turns. When the caller's anchor is this connection's latest
  response, only the new items go up, with `previous_response_id` (works with `store: false`:
  the server keeps the latest response per connection in memory).
- `previous_response_not_found` (new connection, cache miss): resend the full history, once.
- The server caps a connection at 60 minutes: rotate between turns after `ws_max_age`; on
  `websocket_connection_limit_reached` or a dropped socket before any output, reconnect with
  backoff and replay the full context.
- There is no cancel event: stopping a response (Ctrl-C) closes the socket without waiting for
  the close handshake; the next turn reconnects lazily.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator

from voicecli.events import Error, Event, TurnEnd
from voicecli.items import Request
from voicecli.profiles import Connection
from voicecli.transport.base import Anchor, Retries, give_up, log, parse_event, redact, scrub
from voicecli.transport.urls import endpoint_url, refuse_socks_for_websocket
from voicecli.transport.ws import (ClientConnection, ConnectError, ConnectionClosed, close_websocket, open_websocket,
                                  too_big)
from voicecli.wire import errors, responses

CACHE_MISS = "previous_response_not_found"
CONNECTION_CAP = "websocket_connection_limit_reached"


class ResponsesWebSocketTransport:
    name = "ws"

    def __init__(self, conn: Connection, base_url: str, api_key: str | None):
        self.conn = conn
        self.base_url = base_url.rstrip("/")
        self.url = endpoint_url(base_url, "/responses", websocket=True)
        self.api_key = api_key
        self.bytes_sent = 0
        self.retries = Retries(conn.max_retries, api_key)  # the latest turn's
        self.make_retries = lambda: Retries(conn.max_retries, api_key)  # a front end may set its own policy
        self.connections_opened = 0
        self._ws: ClientConnection | None = None
        self._opened_at = 0.0
        self._latest_response: str | None = None  # what this connection's cache holds

    @property
    def retries_used(self) -> int:
        return self.retries.used

    async def _ensure_open(self) -> None:
        if self._ws is not None and time.monotonic() - self._opened_at > self.conn.ws_max_age:
            log.info("rotating the WebSocket after %.0f s", time.monotonic() - self._opened_at)
            await self._drop()
        if self._ws is None:
            refuse_socks_for_websocket(self.url)
            self._ws = await open_websocket(self.url, self.conn, self.api_key)
            self._opened_at = time.monotonic()
            self._latest_response = None
            self.connections_opened += 1

    async def _drop(self, *, leaving: bool = False) -> None:
        """Close the socket. `leaving` (the turn was cancelled, or the process ends): send the close
        frame but do not wait for the server's reply, which a busy server sends only between events."""
        ws, self._ws, self._latest_response = self._ws, None, None
        await close_websocket(ws, leaving=leaving)

    async def stream(self, request: Request, anchor: Anchor | None = None) -> AsyncIterator[Event]:
        self.retries = retries = self.make_retries()
        while True:
            use_anchor = anchor is not None and self._ws is not None and anchor.response_id == self._latest_response
            emitted = False
            failure: Error | None = None
            try:
                await self._ensure_open()
                use_anchor = use_anchor and self._latest_response is not None
                wire_request = request
                if use_anchor:
                    wire_request = dataclasses.replace(request, items=request.items[anchor.covered:],
                                                       previous_response_id=anchor.response_id)
                message = json.dumps(responses.build_ws_create(wire_request))
                self.bytes_sent = len(message.encode())
                await self._ws.send(message)
                decoder = responses.ResponsesDecoder()
                while True:
                    data = parse_event(await asyncio.wait_for(self._ws.recv(), self.conn.read_timeout))
                    if data is None:
                        continue
                    if data.get("type") == "error" and not emitted:
                        error = errors.from_error_frame(data)
                        if error.code == CACHE_MISS and use_anchor:
                            log.info("cache miss on %s: resending the full history", anchor.response_id)
                            anchor = None
                            break
                        if error.code == CONNECTION_CAP or error.retryable:
                            failure = error
                            if error.code == CONNECTION_CAP:
                                await self._drop()
                            break
                    for event in decoder.feed(data):
                        emitted = True
                        if isinstance(event, TurnEnd) and event.status == "completed":
                            self._latest_response = event.response_id  # the server's cache now holds it
                        yield scrub(event, self.api_key)  # an `error` event may quote the key
                    if decoder.finished:
                        if decoder.gaps:
                            log.debug("sequence_number gaps: %s", decoder.gaps)
                        return
                if failure is None:
                    continue  # cache miss: go round again with the full history
            except ConnectError as exc:
                await self._drop()
                failure = exc.error
            except (asyncio.TimeoutError, TimeoutError):
                await self._drop()
                failure = errors.connection_error(
                    f"no data from {self.url} for {self.conn.read_timeout:g} s (connection.read_timeout)", timeout=True)
            except (ConnectionClosed, OSError) as exc:
                await self._drop()
                reason = too_big(exc) if isinstance(exc, ConnectionClosed) else None
                if reason is not None:  # sending the same request again would bring the same message
                    failure = Error("network", reason)
                else:
                    failure = errors.connection_error(redact(f"connection to {self.url} failed: {exc}", self.api_key))
            except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
                # no cancel event exists: closing the socket stops the response
                await asyncio.shield(self._drop(leaving=True))
                raise
            if not await retries.wait(failure, emitted=emitted, force=failure.code == CONNECTION_CAP):
                for event in give_up(failure, self.api_key):
                    yield event
                return
            anchor = None  # a new or troubled connection: replay the full context

    async def aclose(self, *, leaving: bool = False) -> None:
        await self._drop(leaving=leaving)

