"""Streaming answer output: raw text for pipes, block-wise markdown on a terminal.

Markdown is rendered one block at a time: a finished block (ended by a blank line outside a code
fence, or by the closing fence) is printed once and never again; only the open block is live.
So a long answer costs time linear in its length, not quadratic.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Protocol


class Renderer(Protocol):
    def text(self, delta: str) -> None: ...
    def finish(self) -> None: ...


def wants_markdown(stream: IO[str], *, raw: bool = False) -> bool:
    return not raw and stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def make_renderer(stream: IO[str] | None = None, *, markdown: bool | None = None) -> Renderer:
    stream = stream or sys.stdout
    if markdown is None:
        markdown = wants_markdown(stream)
    return MarkdownRenderer(stream) if markdown else RawRenderer(stream)


class RawRenderer:
    """Exactly the model's text, flushed per delta, plus a final newline if it lacked one."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._last = "\n"

    def text(self, delta: str) -> None:
        if delta:
            self.stream.write(delta)
            self.stream.flush()
            self._last = delta[-1]

    def finish(self) -> None:
        if self._last != "\n":
            self.stream.write("\n")
            self._last = "\n"
        self.stream.flush()


class BlockSplitter:
    """Finds where finished markdown blocks end, scanning each line once."""

    def __init__(self) -> None:
        self.buffer = ""
        self._scanned = 0  # buffer[:_scanned] holds whole lines already examined
        self._fence: str | None = None  # the open code fence marker, if any
        self._boundary = 0  # buffer[:_boundary] is finished blocks

    def feed(self, delta: str) -> str:
        """Add text; return the finished blocks it completed (possibly '')."""
        self.buffer += delta
        while True:
            newline = self.buffer.find("\n", self._scanned)
            if newline < 0:
                break
            line = self.buffer[self._scanned:newline].strip()
            self._scanned = newline + 1
            if self._fence is not None:
                if line.startswith(self._fence) and line.strip("`~") == "":
                    self._fence = None
                    self._boundary = self._scanned
            elif line.startswith(("```", "~~~")):
                self._fence = line[:3]
            elif not line:
                self._boundary = self._scanned
        done, self.buffer = self.buffer[:self._boundary], self.buffer[self._boundary:]
        self._scanned -= self._boundary
        self._boundary = 0
        return done


class MarkdownRenderer:
    def __init__(self, stream: IO[str]):
        from rich.console import Console

        self.console = Console(file=stream, soft_wrap=False, highlight=False)
        self.splitter = BlockSplitter()
        self._live = None

    def _print_block(self, text: str) -> None:
        from rich.markdown import Markdown

        if text.strip():
            self.console.print(Markdown(text, code_theme="monokai"))

    def text(self, delta: str) -> None:
        done = self.splitter.feed(delta)
        if done:
            self._stop_live()
            self._print_block(done)
        if self.splitter.buffer.strip():
            from rich.markdown import Markdown

            if self._live is None:
                from rich.live import Live

                self._live = Live(console=self.console, auto_refresh=True, refresh_per_second=8,
                                  transient=True, vertical_overflow="visible")
                self._live.start()
            # Live redraws on its own timer, so a burst of deltas costs one redraw, not one each
            self._live.update(Markdown(self.splitter.buffer, code_theme="monokai"), refresh=False)

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def finish(self) -> None:
        self._stop_live()
        rest, self.splitter.buffer = self.splitter.buffer, ""
        self._print_block(rest)


def dim(text: str, stream: IO[str] | None = None) -> None:
    """Secondary information (reasoning, footers) on stderr, dim on a terminal."""
    stream = stream or sys.stderr
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        stream.write(f"\x1b[2m{text}\x1b[0m")
    else:
        stream.write(text)
    stream.flush()
