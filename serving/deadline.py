"""A time limit on reading request bodies, kept by one sweep timer instead of one per request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The awaited read outlived its deadline (it was cancelled)."""


class ReadDeadlines:
    """Run awaitables under a deadline, cancelling those that outlive it.

    ``asyncio.timeout`` schedules and cancels a timer per call (~6 us, a few percent of a
    one-row prediction); here each read costs a dict entry, and one timer per ``period``
    sweeps the reads in flight. A read is cancelled at most ``period`` after its deadline.

    Parameters
    ----------
    timeout
        Seconds a read may take.

    Example
    -------
    >>> async def main():
    ...     deadlines = ReadDeadlines(0.05)
    ...     try:
    ...         await deadlines.run(lambda: asyncio.sleep(10))
    ...     except DeadlineExceeded:
    ...         return "too slow"
    >>> asyncio.run(main())
    'too slow'
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.period = min(1.0, timeout / 4)
        self._deadlines: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def run(self, read: Callable[[], Awaitable[T]]) -> T:
        """Return ``await read()``, or raise :class:`DeadlineExceeded` after ``timeout`` s.

        Raises
        ------
        DeadlineExceeded
            The read took longer; it was cancelled. A cancellation from elsewhere (a
            shutdown) propagates as ``asyncio.CancelledError``.
        """
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing to cancel, no limit
            return await read()
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + self.timeout
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.period, self._sweep, loop)
        try:
            return await read()
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise DeadlineExceeded(f"not done within {self.timeout:g} s") from None
        finally:
            self._deadlines.pop(task, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        # the reads in flight are the slow ones (a body already received is read at once)
        for task, deadline in list(self._deadlines.items()):
            if deadline <= now and task not in self._expired:
                # the task is suspended inside run()'s await: the cancellation lands there
                self._expired.add(task)
                task.cancel()
        self._sweeper = loop.call_later(self.period, self._sweep, loop) if self._deadlines else None
