"""HTTP streaming transports: Responses over SSE (`sse`) and Chat Completions over SSE (`chat`).

One HTTP client (`client`, on httpx2) per process; explicit connect/read timeouts; retries (bounded by the profile)
on connection errors and retryable statuses, but only before any output reached the caller —
retrying after text was shown would show it twice.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TypeVar

from voicecli.events import Error, Event
from voicecli.items import Request
from voicecli.profiles import Connection
from voicecli.transport.base import Anchor, Retries, give_up, log, parse_event, redact, refused_here, request_headers
from voicecli.transport.base import redact_error, scrub
from voicecli.transport.client import JSON_LIMIT, Client, Response, Timeout, TransportError
from voicecli.transport.urls import endpoint_url
from voicecli.wire import chat, errors, responses
from voicecli.wire.sse import EventTooLarge, SSEDecoder

_client: Client | None = None
T = TypeVar("T")
_HEAD_BYTES = 512  # of a reply that is not an event stream, kept to say what it was


def shared_client(conn: Connection) -> Client:
    """The process-wide client (connection pooling across turns and transports)."""
    global _client
    if _client is None or _client.is_closed:
        _client = Client(connect_timeout=conn.connect_timeout, read_timeout=conn.read_timeout)
    return _client


class HttpStreamTransport:
    """`sse` (dialect "responses") or `chat` (dialect "chat")."""

    def __init__(self, conn: Connection, base_url: str, api_key: str | None, dialect: str):
        self.name = "sse" if dialect == "responses" else "chat"
        self.dialect = dialect
        self.conn = conn
        self.base_url = base_url.rstrip("/")
        self.url = endpoint_url(self.base_url, "/responses" if dialect == "responses" else "/chat/completions")
        self.api_key = api_key
        self.bytes_sent = 0
        self.retries = Retries(conn.max_retries, api_key)  # the latest turn's
        # a front end may set these: its own retry policy (batch: a larger, time-bound budget for
        # 429/503) and a look at each successful reply's headers (batch: x-ratelimit-* pacing)
        self.make_retries: Callable[[], Retries] = lambda: Retries(conn.max_retries, api_key)
        self.on_headers: Callable[[Any], None] | None = None
        # its own client instead of the shared one (batch: one per job, each keeping one connection:
        # httpcore2's pool scans all its connections at every request, 13 % of batch's CPU at -j 64)
        self.client: Client | None = None

    @property
    def retries_used(self) -> int:
        return self.retries.used

    def _body(self, request: Request, anchor: Anchor | None) -> dict[str, Any]:
        if self.dialect == "chat":
            return chat.build_body(request, stream=True)
        if anchor is not None and request.store:  # stored server-side: continue instead of resending
            request = dataclasses.replace(request, items=request.items[anchor.covered:],
                                          previous_response_id=anchor.response_id)
        return responses.build_body(request, stream=True)

    async def stream(self, request: Request, anchor: Anchor | None = None) -> AsyncIterator[Event]:
        headers = {**request_headers(self.conn, self.api_key), "Content-Type": "application/json"}
        self.retries = self.make_retries()
        state = {"anchor": anchor}

        def body() -> dict[str, Any]:
            content = json.dumps(self._body(request, state["anchor"])).encode()
            self.bytes_sent = len(content)
            return {"content": content, "headers": headers}

        def rejected(error: Error) -> bool:
            if error.code == "previous_response_not_found" and state["anchor"] is not None:
                state["anchor"] = None  # the stored response is gone: resend everything, once
                return True
            return False

        # aclosing (here and below): a caller that stops early closes the request at once, in its own
        # task — left to the garbage collector, httpx2 would be closed from another task and complain
        async with aclosing(post_stream(self.conn, self.base_url, self.url, self.api_key, self.retries, body,
                                        lambda resp: self._decode(resp, request), rejected=rejected,
                                        client=self.client)) as events:
            async for event in events:
                yield event

    async def _decode(self, resp: Response, request: Request) -> AsyncIterator[Event]:
        if self.on_headers is not None:
            self.on_headers(resp.headers)
        sse = SSEDecoder()
        if self.dialect == "chat":
            decoder: Any = chat.ChatDecoder(think_tags=request.settings.get("think_tags") or "auto")
        else:
            decoder = responses.ResponsesDecoder()
        done = False
        head = b""  # the first bytes, to show what came back if it was not an event stream
        messages = 0
        async for chunk in resp.aiter_bytes(progress_bytes=None):  # silence: no complete event
            if len(head) < _HEAD_BYTES:
                head += chunk[: _HEAD_BYTES - len(head)]
            for message in sse.feed(chunk):
                messages += 1
                resp.progress()
                for event in self._events(decoder, message):
                    yield event
                done = done or message.is_done
            if done or getattr(decoder, "finished", False):
                break
        if not done:
            for message in sse.flush():
                messages += 1
                for event in self._events(decoder, message):
                    yield event
        content_type = resp.headers.get("content-type", "")
        if messages == 0 and not content_type.lower().startswith("text/event-stream"):
            # not one event and not even the right type: an HTML page, a plain JSON reply, an empty
            # body (an event stream cut before its first event stays a dropped stream, exit 6)
            error = errors.not_a_stream(content_type, head, request_id=resp.headers.get("x-request-id"))
            for event in give_up(error, self.api_key):
                yield event
            return
        for event in decoder.finish():
            yield event
        if isinstance(decoder, responses.ResponsesDecoder) and decoder.gaps:
            log.debug("sequence_number gaps: %s", decoder.gaps)

    @staticmethod
    def _events(decoder: Any, message: Any) -> list[Event]:
        if message.is_done or not message.data:
            return []
        data = parse_event(message.data)
        if message.event == "error" and not (data or {}).get("error"):
            # `event: error` (Groq) whose data is not an error object: it is still an error
            data = {"error": {"message": message.data.strip() or "the server reported an error", **(data or {})}}
        return decoder.feed(data) if data is not None else []

    async def aclose(self, *, leaving: bool = False) -> None:
        if self.client is not None:  # its own; the shared client is closed by `close_shared_client` at exit
            await self.client.aclose()


async def post_stream(conn: Connection, base_url: str, url: str, api_key: str | None, retries: Retries,
                      body: Callable[[], dict[str, Any]], decode: Callable[[Response], AsyncIterator[T]], *,
                      rejected: Callable[[Error], bool] | None = None,
                      client: Client | None = None) -> AsyncIterator[T | Event]:
    """POST `body()` (`Client.stream` arguments: content, headers) to `url`; yield what `decode(response)` yields.

    Connection failures, timeouts and retryable statuses are retried with `retries`, but only
    before anything was yielded; a failure for good yields the `give_up` events (an `Error`, then
    a failed `TurnEnd`). `rejected(error)` may ask for one more attempt at once, after changing
    what `body()` returns. Used by the text transports and by speech-to-text / text-to-speech.
    `client`: the one to use, if not the shared one.
    """
    client = client or shared_client(conn)
    while True:
        emitted = answered = False  # answered: the status line and headers arrived
        try:
            async with client.stream("POST", url, **body()) as resp:
                answered = True
                if resp.status_code >= 400:
                    failure = errors.from_http(resp.status_code, await resp.aread(), resp.headers)
                    if rejected is not None and rejected(failure):
                        continue
                elif 300 <= resp.status_code < 400:
                    failure = not_followed(resp)
                else:
                    async with aclosing(decode(resp)) as items:
                        async for item in items:
                            emitted = True
                            yield scrub(item, api_key)  # an in-stream error may quote the key
                    return
        except TransportError as exc:
            failure = _failure(exc, conn, base_url, api_key, answered)
        except EventTooLarge as exc:  # a hostile or broken stream: another attempt would get the same
            failure = dataclasses.replace(errors.connection_error(exc.message), retryable=False)
        if not await retries.wait(failure, emitted=emitted):
            for event in give_up(failure, api_key):
                yield event
            return


def not_followed(resp: Response) -> Error:
    """A redirect: never followed (it would carry the key and the request to wherever it points)."""
    where = resp.headers.get("location") or "nowhere (no Location header)"
    return Error("protocol", f"the server answered {resp.status_code} {resp.reason_phrase}: redirect to {where} "
                 "not followed (point --base-url at the final address if you trust it)".replace("  ", " "),
                 code="redirect_not_followed", request_id=resp.headers.get("x-request-id"))


def _failure(exc: TransportError, conn: Connection, base_url: str, api_key: str | None, answered: bool) -> Error:
    """The retryable error for a failed exchange; a timeout names the one that fired:
    connecting, sending, waiting for the reply, or silence mid-stream."""
    if not isinstance(exc, Timeout):
        refused = refused_here(exc, *exc.address) if exc.address else None  # on loopback: not retried
        failure = refused or errors.connection_error(redact(f"connection to {base_url} failed: {exc}", api_key))
        return failure if exc.retryable else dataclasses.replace(failure, retryable=False)
    if exc.phase == "connect":
        message = f"could not connect to {base_url} within {conn.connect_timeout:g} s (connection.connect_timeout)"
    elif exc.phase == "write":
        message = f"could not send the request to {base_url} within {conn.read_timeout:g} s (connection.read_timeout)"
    elif exc.phase == "reply" or not answered:
        message = f"connected, but no reply from {base_url} within {conn.read_timeout:g} s (connection.read_timeout)"
    else:
        message = f"no data from {base_url} for {conn.read_timeout:g} s (connection.read_timeout)"
    return errors.connection_error(message, timeout=True)


async def get_json(conn: Connection, base_url: str, api_key: str | None, path: str,
                   retries: Retries | None = None) -> tuple[Any, Error | None]:
    """`GET {base_url}{path}` with the profile's headers, timeouts and retries, as the streams do:
    (the decoded JSON, None), or (None, the error) once retrying is over (`retries.used` says how
    often it tried again)."""
    client = shared_client(conn)
    url = endpoint_url(base_url.rstrip("/"), path)
    headers = request_headers(conn, api_key)
    retries = retries or Retries(conn.max_retries, api_key)
    while True:
        answered = False
        try:
            resp = await client.get(url, headers=headers, limit=JSON_LIMIT)
            answered = True
            if resp.status_code >= 400:
                failure = errors.from_http(resp.status_code, resp.content, resp.headers)
            elif 300 <= resp.status_code < 400:
                return None, redact_error(not_followed(resp), api_key)
            elif resp.truncated:
                return None, Error("protocol", f"the reply from {url} is larger than {JSON_LIMIT >> 20} MiB; "
                                   "voicecli stopped reading it", request_id=resp.headers.get("x-request-id"))
            else:
                try:
                    return resp.json(), None
                except ValueError:
                    return None, Error("protocol", f"expected JSON from {url} but got: "
                                       f"{resp.text[:120].strip() or 'an empty body'}",
                                       request_id=resp.headers.get("x-request-id"))
        except TransportError as exc:
            failure = _failure(exc, conn, base_url, api_key, answered)
        if not await retries.wait(failure):
            return None, redact_error(failure, api_key)


async def close_shared_client() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
