"""Keys typed while the REPL is busy: held back unseen, and given to the next prompt.

Outside prompt_toolkit's raw mode the terminal is in cooked mode, so a key typed then would be
echoed into the output and line-edited by the kernel: an Enter turns into a newline (Ctrl-J, which
the prompt takes as "add a line"), not a send. That happens while an answer streams, while MCP
servers start, and in the short gaps around each prompt (on TERM=dumb prompt_toolkit prints the
prompt before it takes the terminal, so a line typed at once hit the gap). `hold_keys` keeps the
bytes in the terminal's input queue without echo or line editing; the next prompt reads them as
if they were typed there (prompt_toolkit's raw mode restores the held mode it found). Ctrl-C still
raises SIGINT. Keys typed before the process started were already edited by the kernel.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO

_found: list = []  # the modes hold_keys replaced, outermost first: the terminal's own is _found[0]


def _mode(stream: IO[str] | None) -> tuple[int, list | None]:
    stream = stream if stream is not None else sys.stdin
    try:
        import termios

        fd = stream.fileno()
        return fd, (termios.tcgetattr(fd) if stream.isatty() else None)
    except (ImportError, OSError, ValueError, AttributeError):
        return -1, None  # not a terminal (a pipe, a file, Windows): nothing is echoed anyway


@contextlib.contextmanager
def hold_keys(stream: IO[str] | None = None) -> Iterator[None]:
    fd, found = _mode(stream)
    if found is None:
        yield
        return
    import termios

    held = termios.tcgetattr(fd)
    held[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR)  # iflag: Enter stays "\r", as at a prompt
    held[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)  # lflag: no echo, no line editing (ISIG stays)
    held[6][termios.VMIN], held[6][termios.VTIME] = 1, 0
    _found.append(found)
    termios.tcsetattr(fd, termios.TCSANOW, held)
    try:
        yield
    finally:
        _found.pop()
        termios.tcsetattr(fd, termios.TCSANOW, found)  # TCSANOW, not TCSAFLUSH: the held keys stay queued


@contextlib.contextmanager
def let_go(stream: IO[str] | None = None) -> Iterator[None]:
    """Inside hold_keys: the terminal's own mode back for a program that reads it (an editor)."""
    fd, now = _mode(stream)
    if now is None or not _found:
        yield
        return
    import termios

    termios.tcsetattr(fd, termios.TCSANOW, _found[0])
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, now)
