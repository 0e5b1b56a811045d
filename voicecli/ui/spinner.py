"""The waiting indicator of `chat` and `infer`: a spinner on stderr from sending a request until
the first token arrives, with the elapsed seconds once the wait passes 2 s.

Only on a terminal that takes escape codes (stderr a TTY, TERM not `dumb`); NO_COLOR does not
stop it, as it uses no colour. It is drawn after one interval (an answer that starts at once shows
nothing) and erased, with spaces, before anything else is printed: front ends call `stop()`
before writing, and log lines (retry notes) erase it through `clear_line()`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import IO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
INTERVAL = 0.1  # seconds between frames
SHOW_SECONDS_AFTER = 2.0

_active: Spinner | None = None  # the one drawn now, for clear_line()


class Spinner:
    def __init__(self, stream: IO[str] | None = None, *, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL):
        from voicecli.ui.term import is_terminal

        self.stream = stream or sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task | None = None
        self._started = 0.0
        self._frame = 0
        self._shown = 0  # cells drawn on the current line

    def start(self) -> None:
        """Start waiting (again); a no-op when disabled or already spinning."""
        if not self.enabled or self._task is not None:
            return
        self._started, self._frame = self.clock(), 0
        self._task = asyncio.get_running_loop().create_task(self._spin())

    def stop(self) -> None:
        """Stop and erase: call before printing anything."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self.clear()

    def clear(self) -> None:
        global _active
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
        if _active is self:
            _active = None

    def text(self) -> str:
        """The current frame: the spinner, then the seconds waited once past 2 s."""
        elapsed = self.clock() - self._started
        frame = FRAMES[self._frame % len(FRAMES)]
        return f"{frame} {elapsed:.0f}s" if elapsed >= SHOW_SECONDS_AFTER else frame

    def draw(self) -> None:
        global _active
        text = self.text()
        pad = " " * max(0, self._shown - len(text))  # "⠋ 10s" never leaves a stray cell behind
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._shown = max(self._shown, len(text))
        self._frame += 1
        _active = self

    async def _spin(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.draw()


def clear_line() -> None:
    """Erase the spinner, if one is drawn, so a line can be printed (it redraws at its next frame)."""
    if _active is not None:
        _active.clear()
