"""Keys typed while an answer streams: held back unseen, and given to the next prompt.

Between prompts the terminal is in cooked mode, so a key typed during an answer would be echoed
into the answer and line-edited by the kernel (an Enter turning into a newline, not a send).
`hold_keys` keeps the bytes in the terminal's input queue without echo or line editing; the next
prompt reads them as if they were typed there. Ctrl-C still raises SIGINT (it cancels the turn).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def hold_keys(stream: IO[str] | None = None) -> Iterator[None]:
    stream = stream if stream is not None else sys.stdin
    try:
        import termios

        fd = stream.fileno()
        saved = termios.tcgetattr(fd) if stream.isatty() else None
    except (ImportError, OSError, ValueError, AttributeError):
        saved = None
    if saved is None:  # not a terminal (a pipe, a file, Windows): nothing is echoed anyway
        yield
        return
    held = termios.tcgetattr(fd)
    held[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR)  # iflag: Enter stays "\r", as at a prompt
    held[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)  # lflag: no echo, no line editing (ISIG stays)
    termios.tcsetattr(fd, termios.TCSANOW, held)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)  # TCSANOW, not TCSAFLUSH: the held keys stay queued
