"""HTTP streaming transports: Responses over SSE (`sse`) and Chat Completions over SSE (`chat`).

One httpx client per process; explicit connect/read timeouts; retries (bounded by the profile)
on connection errors and retryable statuses, but only before any output reached the caller —
retrying after text was shown would show it twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voicecli import __version__
from voicecli.errors import ConfigError
from voicecli.events import Error, Event
from voicecli.profiles import Connection
from voicecli.sanitize import header_value_problem
from voicecli.transport.base import Anchor, give_up, log, parse_event, redact, retry_delay
from voicecli.wire import chat, errors, responses
from voicecli.wire.sse import SSEDecoder
from voicecli.wire.types import Request

_client: httpx.AsyncClient | None = None


def shared_client(conn: Connection) -> httpx.AsyncClient:
    """The process-wide client (connection pooling across turns and transports)."""
    global _client
    if _client is None or _client.is_closed:
        timeout = httpx.Timeout(connect=conn.connect_timeout, read=conn.read_timeout,
                                write=conn.read_timeout, pool=conn.connect_timeout)
        _client = httpx.AsyncClient(timeout=timeout, http2=False, follow_redirects=False)
    return _client


def request_headers(conn: Connection, api_key: str | None) -> dict[str, str]:
    """The headers of every request and WebSocket handshake (ws, sse, chat, realtime).

    Profiles and `Profile.api_key()` already refuse values with line breaks; this checks again
    right before use, so a CR/LF can never end a header early and inject another.
    """
    headers = {"User-Agent": f"voicecli/{__version__}", **conn.headers}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for name, value in headers.items():
        problem = header_value_problem(value)
        if problem:
            what = "the API key" if name == "Authorization" and api_key else f"connection.headers.{name}"
            raise ConfigError(f"{what} {problem}")
    return headers


class HttpStreamTransport:
    """`sse` (dialect "responses") or `chat` (dialect "chat")."""

    def __init__(self, conn: Connection, base_url: str, api_key: str | None, dialect: str):
        self.name = "sse" if dialect == "responses" else "chat"
        self.dialect = dialect
        self.conn = conn
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + ("/responses" if dialect == "responses" else "/chat/completions")
        self.api_key = api_key
        self.bytes_sent = 0
        self.retries_used = 0

    def _body(self, request: Request, anchor: Anchor | None) -> dict[str, Any]:
        if self.dialect == "chat":
            return chat.build_body(request, stream=True)
        if anchor is not None and request.store:  # stored server-side: continue instead of resending
            request = dataclasses.replace(request, items=request.items[anchor.covered:],
                                          previous_response_id=anchor.response_id)
        return responses.build_body(request, stream=True)

    async def stream(self, request: Request, anchor: Anchor | None = None) -> AsyncIterator[Event]:
        client = shared_client(self.conn)
        headers = request_headers(self.conn, self.api_key)
        self.retries_used = 0
        attempt = 0
        while True:
            body = self._body(request, anchor)
            content = json.dumps(body).encode()
            self.bytes_sent = len(content)
            emitted = False
            retry_error: Error | None = None
            try:
                async with client.stream("POST", self.url, content=content,
                                         headers={**headers, "Content-Type": "application/json"}) as resp:
                    if resp.status_code >= 400:
                        error = errors.from_http(resp.status_code, await resp.aread(), resp.headers)
                        if error.code == "previous_response_not_found" and anchor is not None:
                            anchor = None  # the stored response is gone: resend everything, once
                            continue
                        retry_error = error
                    else:
                        async for event in self._decode(resp):
                            emitted = True
                            yield event
                        return
            except httpx.TimeoutException as exc:
                retry_error = errors.connection_error(
                    f"no data from {self.base_url} for {self.conn.read_timeout:g} s"
                    if isinstance(exc, httpx.ReadTimeout) else f"timed out connecting to {self.base_url}",
                    timeout=True)
            except (httpx.TransportError, OSError) as exc:
                retry_error = errors.connection_error(redact(f"connection to {self.base_url} failed: {exc}"
                                                             if str(exc) else f"connection to {self.base_url} failed",
                                                             self.api_key))
            delay = retry_delay(retry_error, attempt, self.conn.max_retries, emitted=emitted)
            if delay is None:
                for event in give_up(retry_error, self.api_key):
                    yield event
                return
            log.info("retrying in %.2f s after: %s", delay, redact(retry_error.message, self.api_key))
            attempt += 1
            self.retries_used = attempt
            await asyncio.sleep(delay)

    async def _decode(self, resp: httpx.Response) -> AsyncIterator[Event]:
        sse = SSEDecoder()
        decoder = chat.ChatDecoder() if self.dialect == "chat" else responses.ResponsesDecoder()
        done = False
        async for chunk in resp.aiter_raw():
            for message in sse.feed(chunk):
                for event in self._events(decoder, message):
                    yield event
                done = done or message.is_done
            if done or getattr(decoder, "finished", False):
                break
        if not done:
            for message in sse.flush():
                for event in self._events(decoder, message):
                    yield event
        for event in decoder.finish():
            yield event
        if isinstance(decoder, responses.ResponsesDecoder) and decoder.gaps:
            log.debug("sequence_number gaps: %s", decoder.gaps)

    @staticmethod
    def _events(decoder: Any, message: Any) -> list[Event]:
        if message.is_done or not message.data:
            return []
        data = parse_event(message.data)
        return decoder.feed(data) if data is not None else []

    async def aclose(self) -> None:
        pass  # the shared client is closed by `close_shared_client` at exit


async def close_shared_client() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
