"""Background jobs of a voice session (started from callbacks, cancelled and awaited together on exit),
and the queue its events reach the front end through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from voicecli.errors import VoicecliError

log = logging.getLogger("voicecli")


class Jobs:
    def __init__(self, on_error: Callable[[VoicecliError], None] | None = None) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._on_error = on_error  # a job that ends with a VoicecliError (a reason to stop) tells it here

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro, name: str | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, VoicecliError) and self._on_error is not None:
            self._on_error(exc)
        elif exc is not None:  # a job failing must not pass silently
            log.error("%s", exc)

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def drain_events(queue: asyncio.Queue):
    """A voice session's events as its `events()`: until None; an exception in the queue (why the
    session ended) is raised there."""
    while True:
        event = await queue.get()
        if event is None:
            return
        if isinstance(event, Exception):
            raise event
        yield event
