"""What every transport shares: the interface, the continuation anchor, request headers, the retry
policy and loop."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from voicecli import __version__
from voicecli.errors import ConfigError
from voicecli.events import Error, Event, TurnEnd
from voicecli.items import Request
from voicecli.profiles import Connection
from voicecli.sanitize import header_value_problem
from voicecli.sanitize import redact  # noqa: F401  (re-exported: the transports import it from here)
from voicecli.wire.errors import MAX_RETRY_AFTER

log = logging.getLogger("voicecli")
T = TypeVar("T")
# one line per retry; `setup_logging` shows them on a terminal (else only with --debug)
retry_log = logging.getLogger("voicecli.retry")


@dataclass(frozen=True)
class Anchor:
    """The server already holds `response_id`, which covers the first `covered` history items.

    A transport that can continue from it sends only `items[covered:]` plus `previous_response_id`.
    """

    response_id: str
    covered: int


class Transport(Protocol):
    name: str  # "ws" | "sse" | "chat"
    base_url: str
    bytes_sent: int  # request bytes the last turn put on the wire (for benchmarks and --debug)

    def stream(self, request: Request, anchor: Anchor | None = None) -> AsyncIterator[Event]:
        """Run one model response; yields neutral events and always ends with a TurnEnd."""
        ...

    async def aclose(self, *, leaving: bool = False) -> None:
        """`leaving`: the process is about to exit, so waiting for a server's goodbye (the
        WebSocket close handshake, a round trip) gains nothing."""
        ...


def backoff_delay(attempt: int, retry_after: float | None) -> float | None:
    """Seconds before retry number `attempt` (0-based), as the OpenAI SDK does it; None = give up.

    A server hint (`retry-after-ms`, `retry-after`, error headers) wins when it is sane; a hint
    longer than two minutes means retrying now is pointless. Otherwise 0.5 s·2ⁿ capped at 8 s,
    minus up to 25 % jitter so many clients do not retry in lockstep.
    """
    if retry_after is not None and retry_after >= 0:
        return retry_after if retry_after <= MAX_RETRY_AFTER else None
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def retry_delay(failure: Error, attempt: int, max_retries: int, *, emitted: bool, force: bool = False) -> float | None:
    """How long to wait before retrying after `failure`, or None to give up.

    Never after output reached the caller (it would be shown twice), never past the profile's
    bound, never for a non-retryable error unless the caller knows better (`force`).
    """
    if emitted or attempt >= max_retries or not (failure.retryable or force):
        return None
    return backoff_delay(attempt, failure.retry_after)


def refused_here(exc: BaseException, host: str | None, port: int | None) -> Error | None:
    """A refused connection to this machine (127.0.0.0/8, ::1, localhost) fails at once, not retried:
    nothing is listening there, and waiting will not start the server. None for anything else."""
    from voicecli.transport.urls import is_loopback

    if not is_loopback(host) or not _refused(exc):
        return None
    where = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
    return Error("network", f"nothing is listening on {where} — is the server running?")


def _refused(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
            return True
        if isinstance(exc, OSError) and str(exc).startswith("Multiple exceptions: "):
            # asyncio tried each address of the name (::1 and 127.0.0.1): refused if every one was
            codes = re.findall(r"\[Errno (\d+)\]", str(exc))
            return bool(codes) and all(int(code) == errno.ECONNREFUSED for code in codes)
        exc = exc.__cause__ or exc.__context__
    return False


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


class Retries:
    """The retry bookkeeping every transport shares (and the voice session's reconnects): after a
    failure, wait before the next attempt — saying so — or tell the caller it is final."""

    def __init__(self, max_retries: int, api_key: str | None, *, quiet: bool = False):
        self.max_retries, self.api_key = max_retries, api_key
        self.quiet = quiet  # the caller shows the retrying itself (talk's live view says "reconnecting")
        self.used = 0  # retries so far (for messages: "retried 2 times")

    async def wait(self, failure: Error, *, emitted: bool = False, force: bool = False) -> bool:
        """Sleep until the next attempt and return True; False when `failure` ends the turn."""
        delay = retry_delay(failure, self.used, self.max_retries, emitted=emitted, force=force)
        if delay is None:
            return False
        if not self.quiet:
            note_retry(failure, delay, self.used, self.max_retries, self.api_key)
        self.used += 1
        await asyncio.sleep(delay)
        return True


def note_retry(failure: Error, delay: float, attempt: int, max_retries: int, api_key: str | None) -> None:
    """Say that attempt `attempt` (0-based) failed and another comes, so a wait is never silent."""
    retry_log.info("%s; retrying in %.1f s (%d of %d)", redact(failure.message, api_key), delay,
                   attempt + 1, max_retries)


def redact_error(failure: Error, api_key: str | None) -> Error:
    """`failure` without the key (or a URL's userinfo) in the text the server chose: message, code
    and request id. Every transport passes each `Error` it makes or decodes through this, so a
    server that echoes the key ("upstream rejected key sk-…") never gets it shown or logged."""
    fields = {name: redact(value, api_key) for name in ("message", "code", "request_id")
              if isinstance(value := getattr(failure, name), str)}
    return dataclasses.replace(failure, **fields)


def scrub(event: T, api_key: str | None) -> T:
    """`event` as is, unless it is an `Error`: then `redact_error` of it."""
    return redact_error(event, api_key) if isinstance(event, Error) else event  # type: ignore[return-value]


def give_up(failure: Error, api_key: str | None) -> list[Event]:
    """The events that end a turn that failed for good."""
    return [redact_error(failure, api_key), TurnEnd("failed", None, failure.kind)]


def parse_event(raw: str | bytes) -> dict | None:
    """One server event as a dict; a malformed one is skipped with a warning, never fatal."""
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("skipped a malformed event from the server: %.80r", raw)
        return None
    return data if isinstance(data, dict) else None
