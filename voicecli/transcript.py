"""Durable transcripts of `chat` and `talk`: JSON Lines or Markdown, chosen by the file extension.

Files are opened for append and every entry is written and flushed as one piece as it happens, so
a crash loses at most the entry being written and several sessions can share one file. Each
session starts with a header (a `{"type": "session"}` line, or a Markdown rule and heading).

An entry is one utterance: who (`user`, `assistant`, `tool`, `system`), the text, when it started
and ended (epoch seconds), whether it was cut off, and optionally its token usage.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from voicecli import paths
from voicecli.errors import UsageError
from voicecli.sanitize import redact, redact_data
from voicecli.events import Usage

JSONL_SUFFIXES = (".jsonl", ".ndjson")
MARKDOWN_SUFFIXES = (".md", ".markdown")
ROLE_TITLES = {"user": "You", "assistant": "Assistant", "tool": "Tool", "system": "System"}


@dataclass
class Entry:
    role: str
    text: str
    start: float = field(default_factory=time.time)
    end: float | None = None  # None: same as start
    interrupted: bool = False
    usage: Usage | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. model, tool name, call id

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "entry", "role": self.role, "text": self.text, "start": round(self.start, 3),
                               "end": round(self.end if self.end is not None else self.start, 3)}
        if self.interrupted:
            out["interrupted"] = True
        if self.usage is not None:
            u = self.usage
            out["usage"] = {"input_tokens": u.input_tokens, "cached_tokens": u.cached_tokens,
                            "output_tokens": u.output_tokens, "reasoning_tokens": u.reasoning_tokens}
            out["usage"].update({k: getattr(u, k) for k in ("audio_input_tokens", "audio_cached_tokens",
                                                            "audio_output_tokens") if getattr(u, k, 0)})
        return {**out, **self.meta}


def markdown_entry(role: str, text: str, *, when: float | None = None, interrupted: bool = False,
                   usage: Usage | None = None, note: str | None = None) -> str:
    """One utterance as Markdown: a small heading, then the text as written (it is markdown already)."""
    heading = f"### {ROLE_TITLES.get(role, role.title())}"
    if note:
        heading += f" ({note})"
    if when is not None:
        heading += f" · {time.strftime('%H:%M:%S', time.localtime(when))}"
    body = text.rstrip("\n") or "_(no text)_"
    if interrupted:
        body += "\n\n_[interrupted]_"
    if usage is not None:
        body += f"\n\n<!-- tokens: {usage.input_tokens} in ({usage.cached_tokens} cached), {usage.output_tokens} out -->"
    return f"{heading}\n\n{body}\n\n"


class Transcript(Protocol):
    path: Path

    def session(self, **meta: Any) -> None: ...
    def write(self, entry: Entry) -> None: ...
    def close(self) -> None: ...


class _AppendFile:
    """An append-mode text file; each `_put` is one write plus a flush."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file: IO[str] | None = paths.open_private(path, "a")
        except OSError as exc:
            raise UsageError(f"cannot write the transcript {path}: {exc.strerror or exc}") from None

    def _put(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            try:
                os.fsync(self._file.fileno())  # the end of a session is worth a trip to the disk
            except OSError:
                pass
            self._file.close()
            self._file = None


class JsonlTranscript(_AppendFile):
    def session(self, **meta: Any) -> None:
        record = redact_data({"type": "session", "start": round(time.time(), 3), **meta})
        self._put(json.dumps(record, ensure_ascii=False) + "\n")

    def write(self, entry: Entry) -> None:
        self._put(json.dumps(redact_data(entry.to_json()), ensure_ascii=False) + "\n")  # never a loaded key


class MarkdownTranscript(_AppendFile):
    def session(self, **meta: Any) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        details = " · ".join(str(v) for v in meta.values() if v)
        rule = "---\n\n" if self.path.exists() and self.path.stat().st_size else ""
        self._put(f"{rule}## Session {stamp}" + (f" · {details}" if details else "") + "\n\n")

    def write(self, entry: Entry) -> None:
        note = entry.meta.get("name") if entry.role == "tool" else None
        self._put(redact(markdown_entry(entry.role, entry.text, when=entry.start, interrupted=entry.interrupted,
                                        usage=entry.usage, note=note), urls=False))  # never a loaded key


def open_transcript(path: Path | str) -> Transcript:
    """A transcript writer for `path`: .jsonl/.ndjson → JSON Lines, .md/.markdown → Markdown."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return JsonlTranscript(path)
    if suffix in MARKDOWN_SUFFIXES:
        return MarkdownTranscript(path)
    raise UsageError(f"--transcript {path}: the file name must end in .md or .jsonl")
