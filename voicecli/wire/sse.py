"""Incremental Server-Sent Events decoder (WHATWG event-stream rules, protocols.md §0).

Feed it the body bytes as they arrive, split anywhere (even inside a UTF-8 sequence or a CRLF);
it returns the events completed so far. Lines are split as bytes and decoded one by one, so a
multi-byte character cut across chunks is never decoded half-way. Hand-written rather than
httpx-sse because the wire layer is sans-I/O: it must take bytes, not an httpx response.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from voicecli.errors import ExitCode, VoicecliError

DONE = "[DONE]"  # Chat Completions' end-of-stream sentinel (tolerated on Responses too)
# The longest line and the largest event (its data lines together) a stream may send. The biggest
# real event (a `response.completed` repeating a long answer) is a few hundred KiB; without a cap a
# server that never sends a newline grows the buffer until memory runs out.
MAX_EVENT_BYTES = 16 * 1024 * 1024


# Three or more line-end characters in a row hold at least two line ends (CRLF is the longest), so
# at least one blank line; blank lines in a row mean what one does. A flood of them is thus one
# regex pass in C, not a Python call per line.
_BLANK_RUN = re.compile(rb"[\r\n]{3,}")


class EventTooLarge(VoicecliError):
    """A line or event over `MAX_EVENT_BYTES`: the stream is dropped (exit 6, like a broken stream)."""

    exit_code = ExitCode.NETWORK

    def __init__(self, what: str):
        super().__init__(f"the server sent {what} over {MAX_EVENT_BYTES // (1024 * 1024)} MiB; "
                         "the stream was dropped")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None  # the last event id seen so far on the stream
    retry: int | None = None  # reconnection time (ms), if this event carried one

    @property
    def is_done(self) -> bool:
        return self.data == DONE

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    def __init__(self) -> None:
        self._partial: list[bytes] = []  # pieces of a line still waiting for its end
        self._partial_len = 0
        self._event_len = 0  # bytes of the data lines of the event being built
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._at_start = True  # a UTF-8 BOM may open the stream
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._at_start and chunk:
            chunk = b"".join(self._partial) + chunk
            self._partial = []
            if len(chunk) < 3 and b"\xef\xbb\xbf".startswith(chunk):
                self._partial.append(chunk)  # maybe a BOM cut short; wait for more
                return []
            self._at_start = False
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        # only the new bytes are searched, so a long line arriving in many chunks stays linear
        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if end < 0:
            if chunk:
                self._add_partial(chunk)
            return []
        complete = chunk[: end + 1]
        if self._partial:
            complete = b"".join(self._partial) + complete
        self._partial, self._partial_len = [], 0
        if end + 1 < len(chunk):
            self._add_partial(chunk[end + 1 :])
        # a CR as the very last byte may be half of a CRLF whose LF is in the next chunk
        self._skip_lf = chunk[end] == 0x0D and end == len(chunk) - 1
        events: list[ServerSentEvent] = []
        if len(complete) > 2:
            complete = _BLANK_RUN.sub(b"\n\n", complete)
        for line in complete.splitlines():
            if len(line) > MAX_EVENT_BYTES:
                raise EventTooLarge("a line")
            self._line(line, events)
        return events

    def _add_partial(self, piece: bytes) -> None:
        self._partial_len += len(piece)
        if self._partial_len > MAX_EVENT_BYTES:
            self._partial, self._partial_len = [], 0
            raise EventTooLarge("a line")
        self._partial.append(piece)

    def flush(self) -> list[ServerSentEvent]:
        """At EOF: finish a last line and event that lack their terminator (lenient, like most clients)."""
        events: list[ServerSentEvent] = []
        if self._partial:
            self._line(b"".join(self._partial), events)
            self._partial, self._partial_len = [], 0
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data:
                events.append(ServerSentEvent(self._event or "message", "\n".join(self._data),
                                              self.last_event_id, self._retry))
            self._event, self._data, self._retry, self._event_len = "", [], None, 0
            return
        if raw[0] == 0x3A:  # ':' comment / keep-alive
            return
        line = raw.decode("utf-8", "replace")
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._event_len += len(raw) + 1  # + 1: an empty data line still costs a list entry
            if self._event_len > MAX_EVENT_BYTES:
                self._data, self._event_len = [], 0
                raise EventTooLarge("an event")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
