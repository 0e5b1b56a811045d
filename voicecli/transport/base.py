"""What every text transport shares: the interface, the continuation anchor, the retry policy."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from voicecli.events import Error, Event, TurnEnd
from voicecli.sanitize import redact  # noqa: F401  (re-exported: the transports import it from here)
from voicecli.wire.errors import MAX_RETRY_AFTER
from voicecli.items import Request

log = logging.getLogger("voicecli")
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

    async def aclose(self) -> None: ...


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


def note_retry(failure: Error, delay: float, attempt: int, max_retries: int, api_key: str | None) -> None:
    """Say that attempt `attempt` (0-based) failed and another comes, so a wait is never silent."""
    retry_log.info("%s; retrying in %.1f s (%d of %d)", redact(failure.message, api_key), delay,
                   attempt + 1, max_retries)


def give_up(failure: Error, api_key: str | None) -> list[Event]:
    """The events that end a turn that failed for good."""
    return [dataclasses.replace(failure, message=redact(failure.message, api_key)),
            TurnEnd("failed", None, failure.kind)]


def parse_event(raw: str | bytes) -> dict | None:
    """One server event as a dict; a malformed one is skipped with a warning, never fatal."""
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("skipped a malformed event from the server: %.80r", raw)
        return None
    return data if isinstance(data, dict) else None
