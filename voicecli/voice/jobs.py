"""Background jobs of a voice session: started from callbacks, cancelled and awaited together on exit."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("voicecli")


class Jobs:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro, name: str | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a job failing must not pass silently
            log.error("%s", task.exception())

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
