"""API errors → neutral `Error` events, the retry policy, and exit codes.

One classifier serves every place an error can arrive: a non-2xx HTTP reply (`from_http`), a
mid-stream `error` frame on Responses SSE/WebSocket or Realtime, and a Chat `{"error": …}` chunk
(`from_error_frame`). The retry policy copies the OpenAI SDK's (protocols.md §0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from voicecli.events import Error, ErrorKind

RETRYABLE_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 120.0  # seconds; a longer server-requested wait means "do not retry" (§0)
_RETRY_HINT = re.compile(r"try again in (?:(\d+)m)?(\d+(?:\.\d+)?)(ms|s)\b", re.I)


def from_http(status: int, body: bytes | str | dict | None, headers: Mapping[str, Any], *,
              now: float | None = None) -> Error:
    """A non-2xx reply. `now` (epoch seconds) resolves an HTTP-date `retry-after`; without it the
    reply's own `Date` header is the reference, so no clock is read here."""
    h = _lower(headers)
    payload = _json_body(body)
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, str):  # some gateways send {"error": "text"}
        err = {"message": err}
    err = err if isinstance(err, dict) else {}
    message = err.get("message") or _fallback_message(status, body)
    return _build(status, err.get("type"), err.get("code"), message, h, h.get("x-request-id"), now)


def from_error_frame(frame: Mapping[str, Any]) -> Error:
    """An in-stream error in either shape: flat `{"type":"error","code","message",…}` (the SDK
    type) or nested `{"type":"error","status"?,"error":{"type","code","message","headers"?}}`
    (production Responses and Realtime); also a Chat `{"error": {…}}` chunk."""
    nested = frame.get("error")
    err = nested if isinstance(nested, Mapping) else frame
    if isinstance(nested, str):
        err = {"message": nested}
    code = err.get("code")
    # compatible gateways put the HTTP status in odd places: Groq `status_code`, OpenRouter a numeric `code`
    status = next((s for s in (frame.get("status"), err.get("status"), frame.get("status_code"),
                               err.get("status_code"), code) if isinstance(s, int) and 100 <= s <= 599), None)
    code = code if isinstance(code, str) else None
    h = _lower(err.get("headers") or frame.get("headers") or {})
    err_type = err.get("type")
    if err is frame and err_type == "error":
        err_type = None  # the flat shape's `type` is the event name, not the error type
    message = err.get("message") or "the server reported an error"
    return _build(status, err_type, code, message, h, h.get("x-request-id"), None)


def connection_error(message: str, *, timeout: bool = False) -> Error:
    """For transports: a connection failure (DNS, TLS, reset, dropped stream) or a timeout."""
    return Error("timeout" if timeout else "network", message, retryable=True)


def not_a_stream(content_type: str, head: bytes, *, request_id: str | None = None) -> Error:
    """A 2xx reply that holds no server-sent event at all (a proxy's HTML page, a plain JSON
    object from a server that ignored `stream: true`): say what came instead. Not retried."""
    shown = _squeeze(head, 120)
    got = f"'{content_type}'" if content_type else "no content type"
    body = f": {shown}" if shown else " with an empty body"
    return Error("protocol", f"expected an event stream (text/event-stream) but the server replied with {got}{body}",
                 request_id=request_id, code="not_an_event_stream")


def classify(status: int | None, err_type: str | None, code: str | None) -> ErrorKind:
    labels = {err_type, code}
    if "insufficient_quota" in labels:
        return "quota"
    if status == 429 or "rate_limit_exceeded" in labels:
        return "rate_limit"
    if status is None:
        return _kind_from_labels(labels)
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status in RETRYABLE_STATUS or status >= 500:
        return "server"
    return "invalid_request"


def retry_after_seconds(headers: Mapping[str, Any], *, now: float | None = None) -> float | None:
    """`retry-after-ms`, then `retry-after` as seconds or an HTTP date (relative to `now`, else to
    the reply's `Date` header)."""
    h = _lower(headers)
    ms = _number(h.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    value = h.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    from email.utils import parsedate_to_datetime  # an HTTP date: rare, and email.utils costs ~6 ms to import

    try:
        when = parsedate_to_datetime(value).timestamp()
        reference = now if now is not None else parsedate_to_datetime(h["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, when - reference)


def _build(status: int | None, err_type: str | None, code: str | None, message: str,
           headers: dict[str, str], request_id: str | None, now: float | None) -> Error:
    kind = classify(status, err_type, code)
    retry_after = retry_after_seconds(headers, now=now)
    if retry_after is None and kind == "rate_limit":
        retry_after = _hinted_delay(message)
    return Error(kind, message, retryable=_retryable(status, kind, headers, retry_after),
                 request_id=request_id, code=code or err_type, status=status, retry_after=retry_after)


def _retryable(status: int | None, kind: ErrorKind, headers: Mapping[str, str],
               retry_after: float | None) -> bool:
    should = headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    if kind == "quota":
        return False  # billing, not a rate limit: waiting will not help
    if retry_after is not None and retry_after > MAX_RETRY_AFTER:
        return False
    if status is None:
        return kind in ("rate_limit", "server")
    return status in RETRYABLE_STATUS or status >= 500


def _kind_from_labels(labels: set[str | None]) -> ErrorKind:
    """An in-stream error without an HTTP status: go by its type and code."""
    if labels & {"authentication_error", "permission_error", "invalid_api_key"}:
        return "auth"
    if labels & {"not_found_error", "model_not_found"}:
        return "not_found"
    if labels & {"invalid_request_error", "invalid_prompt", "context_length_exceeded"}:
        return "invalid_request"
    return "server"


def _hinted_delay(message: str) -> float | None:
    """'Please try again in 1.5s' / '…in 120ms' / '…in 6m0s' → seconds."""
    m = _RETRY_HINT.search(message)
    if not m:
        return None
    minutes, amount, unit = m.groups()
    seconds = float(amount) / (1000 if unit.lower() == "ms" else 1)
    return seconds + 60 * int(minutes or 0)


def _lower(headers: Mapping[str, Any]) -> dict[str, str]:
    # header names are case-insensitive; recorded headers may hold one-element lists
    return {k.lower(): (v[0] if isinstance(v, (list, tuple)) and v else v) for k, v in headers.items()}


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _json_body(body: bytes | str | dict | None) -> Any:
    if body is None or isinstance(body, dict):
        return body
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _fallback_message(status: int, body: bytes | str | dict | None) -> str:
    text = _squeeze(body if isinstance(body, (bytes, str)) else "", 200)
    return f"HTTP {status}" + (f": {text}" if text else "")


def _squeeze(body: bytes | str, limit: int) -> str:
    """A body shown in a one-line message: whitespace collapsed, control characters dropped (a
    server must not drive the terminal), cut at `limit` characters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    return text if len(text) <= limit else text[:limit] + "…"
