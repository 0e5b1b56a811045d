"""Incremental Server-Sent Events decoder (WHATWG event-stream rules, protocols.md §0).

Feed it the body bytes as they arrive, split anywhere (even inside a UTF-8 sequence or a CRLF);
it returns the events completed so far. Lines are split as bytes and decoded one by one, so a
multi-byte character cut across chunks is never decoded half-way. Hand-written rather than
httpx-sse because the wire layer is sans-I/O: it must take bytes, not an httpx response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DONE = "[DONE]"  # Chat Completions' end-of-stream sentinel (tolerated on Responses too)


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
        self._tail = b""  # bytes after the last complete line
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
        buf = self._tail + chunk if self._tail else chunk
        if self._at_start and buf:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._tail = buf  # maybe a BOM cut short; wait for more
                return []
            self._at_start = False
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if end < 0:
            self._tail = buf
            return []
        self._tail = buf[end + 1 :]
        # a CR as the very last byte may be half of a CRLF whose LF is in the next chunk
        self._skip_lf = buf[end] == 0x0D and end == len(buf) - 1
        events: list[ServerSentEvent] = []
        for line in buf[: end + 1].splitlines():
            self._line(line, events)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """At EOF: finish a last line and event that lack their terminator (lenient, like most clients)."""
        events: list[ServerSentEvent] = []
        if self._tail:
            self._line(self._tail, events)
            self._tail = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data:
                events.append(ServerSentEvent(self._event or "message", "\n".join(self._data),
                                              self.last_event_id, self._retry))
            self._event, self._data, self._retry = "", [], None
            return
        if raw[0] == 0x3A:  # ':' comment / keep-alive
            return
        line = raw.decode("utf-8", "replace")
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
