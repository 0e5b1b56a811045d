"""What kind of stream the output goes to, and plain-text output: the part of the renderer that
every command needs. A pipe never needs the markdown renderer (`voicecli.ui.render`, ~2 ms to
import with its regular expressions); `make_renderer` loads it only for a terminal.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Protocol


class Renderer(Protocol):
    def text(self, delta: str) -> None: ...
    def finish(self) -> None: ...


def is_terminal(stream: IO[str]) -> bool:
    """A terminal that takes escape codes (cursor moves, erasing): not a pipe, not TERM=dumb."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wants_colour(stream: IO[str]) -> bool:
    """Colour and styles: a terminal that takes escape codes, unless NO_COLOR is set."""
    return is_terminal(stream) and not os.environ.get("NO_COLOR")


def wants_markdown(stream: IO[str], *, raw: bool = False) -> bool:
    return not raw and wants_colour(stream)


def make_renderer(stream: IO[str] | None = None, *, markdown: bool | None = None) -> Renderer:
    stream = stream or sys.stdout
    if markdown is None:
        markdown = wants_markdown(stream)
    if not markdown:
        return RawRenderer(stream)
    from voicecli.ui.render import MarkdownRenderer

    return MarkdownRenderer(stream)


class RawRenderer:
    """Exactly the model's text, flushed per delta, plus a final newline if it lacked one."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._last = "\n"
        self._tty = _isatty(stream)  # a terminal (--raw, NO_COLOR, TERM=dumb) gets no control characters

    def text(self, delta: str) -> None:
        if delta:
            if self._tty:
                from voicecli.sanitize import for_terminal

                delta = for_terminal(delta, self.stream)
            self.stream.write(delta)
            self.stream.flush()
            self._last = delta[-1]

    def finish(self) -> None:
        if self._last != "\n":
            self.stream.write("\n")
            self._last = "\n"
        self.stream.flush()


def dim(text: str, stream: IO[str] | None = None) -> None:
    """Secondary information (reasoning, footers) on stderr, dim on a terminal."""
    stream = stream or sys.stderr
    if _isatty(stream):  # reasoning and tool lines come from the model: no control characters
        from voicecli.sanitize import for_terminal

        text = for_terminal(text, stream)
    if wants_colour(stream):
        stream.write(f"\x1b[2m{text}\x1b[0m")
    else:
        stream.write(text)
    stream.flush()
