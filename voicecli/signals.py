"""SIGTERM and SIGHUP end a text session the way Ctrl-C does: the turn in progress is cancelled,
what was received is kept and the turn is closed in the log, and the exit code is 128 + the signal
number (143, 129) instead of dying mid-write."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

LEAVE_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_leave_handlers = 0  # front ends handling SIGTERM/SIGHUP right now (others, like MCP, then stand back)


def leave_signals_handled() -> bool:
    """True while a front end handles SIGTERM/SIGHUP itself (and cleans up on its way out)."""
    return _leave_handlers > 0


def on_signal(sig: int, callback: Callable[[], None]) -> Callable[[], None]:
    """`callback` on `sig` where the platform lets asyncio handle signals; returns the remover."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(sig, callback)
    except (NotImplementedError, RuntimeError):  # not here: KeyboardInterrupt does the job
        return lambda: None
    return lambda: loop.remove_signal_handler(sig)


def on_leave_signals(callback: Callable[[int], None]) -> Callable[[], None]:
    """Call `callback(signum)` on the first SIGTERM or SIGHUP; a second one then ends the process
    at once (default action). Returns a function that removes the handlers."""
    global _leave_handlers
    loop = asyncio.get_running_loop()
    active = True

    def handler(sig: int) -> None:
        for s in LEAVE_SIGNALS:
            loop.remove_signal_handler(s)
        callback(sig)

    for sig in LEAVE_SIGNALS:
        loop.add_signal_handler(sig, handler, sig)
    _leave_handlers += 1

    def remove() -> None:
        global _leave_handlers
        nonlocal active
        if active:
            active = False
            _leave_handlers -= 1
        for sig in LEAVE_SIGNALS:
            loop.remove_signal_handler(sig)

    return remove


def stdout_gone() -> None:
    """The reader of stdout stopped reading (`| head`): it has what it wanted. What is still buffered
    goes to /dev/null instead, so the exit is quiet (no BrokenPipeError at interpreter shutdown)."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
