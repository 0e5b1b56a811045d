"""Streaming answer output: raw text for pipes, block-wise markdown on a terminal.

Markdown is rendered one block at a time: a finished block (ended by a blank line outside a code
fence, or by the closing fence) is printed once and never again; only the open block is live,
redrawn by a timer (not per delta) and cropped to its last screenful. So a long answer costs time
linear in its length, not quadratic, and the live area never scrolls off the screen.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Protocol

CODE_THEME = "monokai"


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
    """Splits streamed markdown into finished blocks, looking at each character once.

    Deltas are kept as lists of pieces (not one growing string), so feeding is O(len(delta))
    even inside a very long code block; the open block is joined only when someone asks for it.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []  # whole lines (with "\n") of the open block
        self._partial: list[str] = []  # pieces of the current unfinished line
        self._fence: str | None = None  # the open code fence marker ("```" or "~~~"), if any

    def feed(self, delta: str) -> str:
        """Add text; return the finished blocks it completed (possibly '')."""
        done: list[str] = []
        start = 0
        while (newline := delta.find("\n", start)) >= 0:
            self._partial.append(delta[start:newline + 1])
            start = newline + 1
            line = "".join(self._partial)
            self._partial.clear()
            self._lines.append(line)
            if self._ends_block(line.strip()):
                done.append("".join(self._lines))
                self._lines.clear()
        if start < len(delta):
            self._partial.append(delta[start:])
        return "".join(done)

    def _ends_block(self, line: str) -> bool:
        if self._fence is not None:
            if line.startswith(self._fence) and line.strip("`~") == "":
                self._fence = None
                return True
            return False
        if line.startswith(("```", "~~~")):
            self._fence = line[:3]
            return False
        return not line

    @property
    def pending(self) -> str:
        """The open (unfinished) block."""
        return "".join(self._lines) + "".join(self._partial)

    def flush(self) -> str:
        """The open block, and start afresh (end of the answer)."""
        rest = self.pending
        self._lines.clear()
        self._partial.clear()
        self._fence = None
        return rest


class _OpenBlock:
    """Live view of the open block: rendered only when Live redraws, cut to its last screenful."""

    def __init__(self, splitter: BlockSplitter):
        self.splitter = splitter

    def __rich_console__(self, console: Any, options: Any):
        from rich.markdown import Markdown
        from rich.segment import Segment

        text = self.splitter.pending
        if not text.strip():
            return
        lines = console.render_lines(Markdown(text, code_theme=CODE_THEME), options, pad=False)
        room = max(1, console.size.height - 1)
        for line in lines[-room:]:
            yield from line
            yield Segment.line()


class MarkdownRenderer:
    def __init__(self, stream: IO[str] | None = None, *, console: Any = None):
        from rich.console import Console

        self.console = console or Console(file=stream, soft_wrap=False, highlight=False, emoji=False)
        self.splitter = BlockSplitter()
        self._live = None

    def _print_block(self, text: str) -> None:
        from rich.markdown import Markdown

        if text.strip():
            self.console.print(Markdown(text, code_theme=CODE_THEME))

    def text(self, delta: str) -> None:
        done = self.splitter.feed(delta)
        if done:
            self._print_block(done)  # while Live runs, rich prints it above the live area
        # `pending` is joined only until the Live starts; after that it is read on redraws alone
        if self._live is None and delta.strip() and self.splitter.pending.strip():
            from rich.live import Live

            # one Live per answer; it redraws on its own timer, so a burst of deltas costs one redraw
            self._live = Live(_OpenBlock(self.splitter), console=self.console, auto_refresh=True,
                              refresh_per_second=10, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()

    def finish(self) -> None:
        """Print the open block for good; the renderer can be used again for the next answer."""
        if self._live is not None:
            self._live.stop()  # transient: the live copy is erased
            self._live = None
        self._print_block(self.splitter.flush())


def dim(text: str, stream: IO[str] | None = None) -> None:
    """Secondary information (reasoning, footers) on stderr, dim on a terminal."""
    stream = stream or sys.stderr
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        stream.write(f"\x1b[2m{text}\x1b[0m")
    else:
        stream.write(text)
    stream.flush()
