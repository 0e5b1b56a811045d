"""Keyboard input for `talk`: keys from a terminal (cbreak mode), or lines from a pipe.

`KeyInput` reads stdin without blocking the event loop; `TalkKeys` turns keys into talk's actions:
a typed line is sent as text, Space/Enter toggles push-to-talk recording, Ctrl-D quits, and while a
question is open (tool approval) the next key or line answers it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable


class TalkKeys:
    def __init__(self, view, *, ptt: bool, send: Callable[[str], None], toggle: Callable[[], None],
                 quit: Callable[[], None], ended: Callable[[], None] = lambda: None):
        self.view, self.ptt = view, ptt
        self.send, self.toggle, self.quit, self.ended = send, toggle, quit, ended
        self._answer: asyncio.Future | None = None

    @property
    def asking(self) -> bool:
        return self._answer is not None and not self._answer.done()

    async def ask(self, question: str) -> str | None:
        """Show `question`; the next key (or line) answers it."""
        self._answer = asyncio.get_running_loop().create_future()
        self.view.ask(question.rstrip())
        try:
            return await self._answer
        finally:
            self._answer = None

    def key(self, key: str) -> None:
        """One key from a terminal (cbreak mode)."""
        if self.asking:
            if key.lower() in ("y", "a", "n"):
                self._answer.set_result(key.lower())
            return
        typed = self.view.typed
        if key in ("\r", "\n"):
            if typed.strip():
                self.view.set_typed("")
                self.send(typed.strip())
            elif self.ptt:
                self.toggle()
        elif key == " " and not typed and self.ptt:
            self.toggle()
        elif key in ("\x7f", "\x08"):
            self.view.set_typed(typed[:-1])
        elif key == "\x04":  # Ctrl-D
            if not typed:
                self.quit()
        elif key == "\x15":  # Ctrl-U
            self.view.set_typed("")
        elif key.isprintable():
            self.view.set_typed(typed + key)

    def line(self, line: str | None) -> None:
        """One line from a pipe: text to send; an empty line toggles recording in push-to-talk."""
        if line is None:
            self.ended()  # EOF on a pipe: keep talking if a microphone is there
            return
        if self.asking:
            self._answer.set_result(line.strip().lower()[:1] or "n")
            return
        if line.strip():
            self.send(line.strip())
        elif self.ptt:
            self.toggle()


class KeyInput:
    """Keys from a terminal (cbreak: Ctrl-C still raises SIGINT) or lines from a pipe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_key, on_line):
        self.loop, self.on_key, self.on_line = loop, on_key, on_line
        self.fd: int | None = None
        self._saved = None
        self._pending = ""
        self._reading = False

    def start(self) -> None:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return
        self.fd = fd
        if os.isatty(fd):
            import termios
            import tty

            try:
                self._saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
            except termios.error:
                self._saved = None
        try:
            self.loop.add_reader(fd, self._readable)
            self._reading = True
        except (PermissionError, OSError, ValueError):  # a regular file: read it whole
            for line in sys.stdin.read().splitlines():
                self.loop.call_soon(self.on_line, line)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            if self._saved is None:
                if self._pending:
                    self.on_line(self._pending)
                self.on_line(None)
            return
        text = data.decode("utf-8", "replace")
        if self._saved is not None:
            if text.startswith("\x1b"):
                return  # arrows and other escape sequences: not used
            for ch in text:
                self.on_key(ch)
            return
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.on_line(line)

    def _stop_reading(self) -> None:
        if self._reading and self.fd is not None:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def close(self) -> None:
        self._stop_reading()
        if self._saved is not None and self.fd is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
