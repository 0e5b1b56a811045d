"""Fault injection for the simulator: errors, delays, broken streams.

A fault comes either from the request header `x-sim-fault` (so a client profile can set it
through its extra headers) or from a script turn's `"fault"` (a dict with the same keys, or the
same string). The header syntax is `key=value` pairs separated by `;` (a bare `key` means
`key=1`), e.g.

    x-sim-fault: status=429; retry_after_ms=100; times=1

Keys (every one optional; combine freely):

| key | effect |
|---|---|
| `status=N` | answer HTTP N with the real error body (429 rate_limit_exceeded, 500/503 server_error, …); over the Responses WebSocket an `error` event with `status` and `error.headers` |
| `retry_after=S` / `retry_after_ms=MS` | with `status`: send the `retry-after` / `retry-after-ms` header |
| `quota` | 429 with type and code `insufficient_quota` (must not be retried) |
| `code=…`, `type=…`, `message=…` | override the error's code / type / message |
| `latency=S` | wait S seconds before the first byte of the reply |
| `delta_delay=S` | wait S seconds between streamed events |
| `drop=N` | send N events, then cut the connection (no terminal event, no close frame) |
| `close=CODE` | WebSocket: after `after` events close with CODE (HTTP streams: like `drop`) |
| `malformed=N` | after N events send one event whose JSON is broken, then go on |
| `unknown=N` | after N events send one event of an unknown type, then go on |
| `stall=S` | after `after` events send nothing for S seconds, then go on |
| `error=flat` / `error=nested` | after `after` events send a mid-stream `error` event (SDK flat shape, or the nested production shape) and end the turn (Responses: then `response.failed`) |
| `failed` | end the turn with `response.failed` (server_error) instead of `response.completed` |
| `incomplete` | end the turn with `response.incomplete`, reason `max_output_tokens` (Chat: finish_reason `length`) |
| `think` | Chat streams: reasoning as a leading `<think>…</think>` block in `content`, tags split across chunks (as Qwen3 / DeepSeek-R1 on a server without a reasoning parser); also `voicecli sim --think` |
| `echo_key` | the error's message (of `status`, `quota`, `error`, `failed`) quotes the request's credential — `upstream rejected key <the Bearer token or api-key header>` — as a careless upstream does; for the tests that the client never shows or logs it |
| `after=N` | where `close`/`stall`/`error` strike (default 2 events) |
| `times=N` | only the first N requests carrying this exact spec are hit; later ones pass, so a client's retry succeeds. Counted per distinct spec across the whole simulator. |
| `every=N` | only every Nth request carrying this exact spec is hit (N=5: 20 % of them), counted like `times` |
| `fail_items=N` | `POST /v1/batches`: every Nth request of the batch's input file fails (a 400 in the error file) |
| `expire_after=N` | `POST /v1/batches`: the batch expires after N requests are done (the rest: `batch_expired` in the error file) |
| `batch_failed` | `POST /v1/batches`: the batch fails validation (status `failed`, `errors` set, no output) |

The audio endpoints (`/v1/audio/transcriptions`, `/v1/audio/speech`) apply these keys as
described in `voicecli.sim.audio_api`. A raw audio body has no events, so `malformed` and
`unknown` do nothing there and `error` cuts it like `drop`; `failed` ends a stream with an
error instead of its terminal event. `incomplete` and `think` do not apply to audio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

FAULT_HEADER = "x-sim-fault"

_INT_KEYS = {"status", "retry_after_ms", "drop", "close", "malformed", "unknown", "after", "times", "every",
             "fail_items", "expire_after"}
_FLOAT_KEYS = {"retry_after", "latency", "delta_delay", "stall"}
_STR_KEYS = {"code", "type", "message", "error"}
_BOOL_KEYS = {"quota", "failed", "incomplete", "think", "echo_key", "batch_failed"}


class FaultSpecError(ValueError):
    pass


def echo_credential(fault: Fault | None, headers: Any) -> Fault | None:
    """`fault` with its message quoting the request's credential when it asks for `echo_key`."""
    if fault is None or not fault.echo_key or fault.message:
        return fault
    auth = headers.get("Authorization") or ""
    key = auth.partition(" ")[2] if auth.lower().startswith("bearer ") else headers.get("api-key") or auth
    return dataclasses.replace(fault, message=f"upstream rejected key {key or '(none sent)'}")


@dataclass
class Fault:
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    quota: bool = False
    code: str | None = None
    type: str | None = None
    message: str | None = None
    latency: float | None = None
    delta_delay: float | None = None
    drop: int | None = None
    close: int | None = None
    malformed: int | None = None
    unknown: int | None = None
    stall: float | None = None
    error: str | None = None  # "flat" | "nested"
    failed: bool = False
    incomplete: bool = False
    think: bool = False
    echo_key: bool = False
    after: int = 2
    times: int | None = None
    every: int | None = None
    fail_items: int | None = None
    expire_after: int | None = None
    batch_failed: bool = False
    spec: str = ""  # normalised text, the key for `times` counting

    @property
    def rejects(self) -> bool:
        """True when the request is refused outright (no stream starts)."""
        return self.status is not None or self.quota

    @property
    def mid_stream(self) -> bool:
        return any(
            v is not None
            for v in (self.drop, self.close, self.malformed, self.unknown, self.stall, self.error)
        )

    def merged(self, other: Fault | None) -> Fault:
        """This fault with every knob `other` sets explicitly laid over it."""
        if other is None:
            return self
        base = Fault()
        out = Fault(**{f.name: getattr(self, f.name) for f in fields(Fault)})
        for f in fields(Fault):
            value = getattr(other, f.name)
            if value != getattr(base, f.name):
                setattr(out, f.name, value)
        return out


def parse(spec: str | dict | None) -> Fault | None:
    """Parse the header syntax (or a script's dict) into a `Fault`; None when empty."""
    if spec is None:
        return None
    if isinstance(spec, str):
        pairs: dict[str, Any] = {}
        for part in spec.split(";"):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            pairs[key.strip()] = value.strip() if sep else True
    elif isinstance(spec, dict):
        pairs = dict(spec)
    else:
        raise FaultSpecError(f"fault must be a string or a table, not {type(spec).__name__}")
    if not pairs:
        return None
    fault = Fault()
    for key, value in pairs.items():
        key = key.replace("-", "_")
        try:
            if key in _INT_KEYS:
                setattr(fault, key, int(value))
            elif key in _FLOAT_KEYS:
                setattr(fault, key, float(value))
            elif key in _STR_KEYS:
                setattr(fault, key, str(value))
            elif key in _BOOL_KEYS:
                setattr(fault, key, value is True or str(value).lower() in ("1", "true", "yes", "on"))
            elif key == "insufficient_quota":
                fault.quota = True
            else:
                raise FaultSpecError(f"unknown fault key {key!r}")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"bad value for fault key {key!r}: {value!r}") from None
    if fault.error not in (None, "flat", "nested"):
        raise FaultSpecError("error= must be 'flat' or 'nested'")
    fault.spec = "; ".join(f"{k}={pairs[k]}" for k in sorted(pairs))
    return fault


class FaultCounter:
    """Counts hits per distinct spec, so `times=N` lets the (N+1)th request through."""

    def __init__(self) -> None:
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, fault: Fault | None) -> Fault | None:
        if fault is None or (fault.times is None and not fault.every):
            return fault
        with self._lock:
            n = self._hits.get(fault.spec, 0) + 1
            self._hits[fault.spec] = n
        if fault.every and n % fault.every:
            return None
        return fault if fault.times is None or n <= fault.times else None

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


# ---------------------------------------------------------------------------------------------
# Error bodies in the real shape


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_DEFAULT_ERRORS = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    408: ("server_error", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}

QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)


async def refuse(fault: Fault | None, latency: float):
    """The HTTP reply for a fault that refuses the request (sent after its latency), else None."""
    if fault is None or not fault.rejects:
        return None
    from aiohttp import web

    await asyncio.sleep(latency)
    status, body, headers = rejection(fault)
    return web.json_response(body, status=status, headers=headers)


def rejection(fault: Fault) -> tuple[int, dict, dict[str, str]]:
    """(status, error body, headers) for a fault that refuses the request."""
    if fault.quota:
        status, type_, code, message = 429, "insufficient_quota", "insufficient_quota", QUOTA_MESSAGE
    else:
        status = fault.status or 500
        type_, code, message = _DEFAULT_ERRORS.get(status, ("server_error", None, f"Simulated error {status}."))
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    body = error_body(fault.message or message, fault.type or type_, None, fault.code or code)
    return status, body, headers


def midstream_error(fault: Fault, nested: bool) -> dict:
    """The error object of a mid-stream `error` event (flat SDK shape or nested production shape)."""
    if nested:
        return {
            "type": fault.type or "tokens",
            "code": fault.code or "rate_limit_exceeded",
            "message": fault.message
            or "Rate limit reached for gpt-sim in organization org-sim on tokens per min (TPM): "
            "Limit 30000, Used 30000, Requested 100. Please try again in 200ms.",
            "param": None,
            "headers": {"retry-after-ms": "200", "x-ratelimit-remaining-tokens": "0"},
        }
    return {
        "code": fault.code or "server_error",
        "message": fault.message or "The server had an error while processing your request. Sorry about that!",
        "param": None,
    }


# ---------------------------------------------------------------------------------------------
# Playing a stream of events through a sink, with the mid-stream knobs applied

MALFORMED = '{"type":"response.output_text.delta","sequence_number":'  # JSON cut short
UNKNOWN_TYPE = "response.sim_unknown_event"


class Sink:
    """Where a stream's frames go (an SSE body or a WebSocket)."""

    async def send(self, frame: str) -> None:
        raise NotImplementedError

    async def drop(self) -> None:
        """Cut the connection without a clean end (what the client sees as a network failure)."""
        raise NotImplementedError

    async def close(self, code: int) -> None:
        await self.drop()


class SseSink(Sink):
    def __init__(self, response: Any, request: Any) -> None:
        self.response, self.request = response, request

    async def send(self, frame: str) -> None:
        await self.response.write(frame.encode("utf-8"))

    async def drop(self) -> None:
        if self.request.transport is not None:
            self.request.transport.close()  # flushes what was sent, then EOF mid-body


class WsSink(Sink):
    def __init__(self, ws: Any, request: Any) -> None:
        self.ws, self.request = ws, request

    async def send(self, frame: str) -> None:
        await self.ws.send_str(frame)

    async def drop(self) -> None:
        if self.request.transport is not None:
            self.request.transport.close()  # no close frame: the client sees 1006

    async def close(self, code: int) -> None:
        await self.ws.close(code=code, message=b"simulated close")


Inject = Callable[[str, "Fault"], list[str]]


async def play(
    sink: Sink,
    events: Iterable[Any],
    render: Callable[[Any], str],
    fault: Fault | None,
    delay: float,
    inject: Inject,
) -> bool:
    """Send `events` (each framed by `render`), applying `fault`'s mid-stream knobs.

    `inject(kind, fault)` gives the frames for kind "malformed", "unknown" or "error" (the
    last ends the turn). Returns False when the stream was cut short on purpose.
    """
    f = fault or Fault()
    sent = 0
    for event in events:
        if f.drop is not None and sent == f.drop:
            await sink.drop()
            return False
        if f.close is not None and sent == f.after:
            await sink.close(f.close)
            return False
        if f.stall is not None and sent == f.after:
            await asyncio.sleep(f.stall)
        for kind, at in (("malformed", f.malformed), ("unknown", f.unknown)):
            if at is not None and sent == at:
                for frame in inject(kind, f):
                    await sink.send(frame)
        if f.error is not None and sent == f.after:
            for frame in inject("error", f):
                await sink.send(frame)
            return False
        if sent and delay:
            await asyncio.sleep(delay)
        await sink.send(render(event))
        sent += 1
    if f.drop is not None:  # asked to drop at or past the end: still no clean finish
        await sink.drop()
        return False
    if f.close is not None:
        await sink.close(f.close)
        return False
    return True


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
