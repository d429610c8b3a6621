"""ReadDeadlines: a read that outlives its deadline is cancelled and reported, a fast one is not,
and a cancellation from elsewhere still propagates."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.deadline import DeadlineExceeded, ReadDeadlines

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def test_a_slow_read_is_cancelled_near_its_deadline_and_fast_ones_finish():
    async def main() -> tuple[float, list[int]]:
        deadlines = ReadDeadlines(0.2)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await deadlines.run(lambda: asyncio.sleep(30))
        took = time.monotonic() - started

        async def quick(i: int) -> int:
            await asyncio.sleep(0.01)
            return i

        done = await asyncio.gather(*(deadlines.run(lambda i=i: quick(i)) for i in range(20)))
        return took, done

    took, done = asyncio.run(main())
    assert 0.2 <= took < 0.2 + 0.05 + 0.5  # the deadline, plus at most one sweep period
    assert done == list(range(20))


def test_the_task_goes_on_after_a_deadline_and_other_cancels_propagate():
    async def main() -> str:
        deadlines = ReadDeadlines(0.1)
        with pytest.raises(DeadlineExceeded):
            await deadlines.run(lambda: asyncio.sleep(30))
        await asyncio.sleep(0.01)  # not cancelled again: the deadline's cancel was consumed
        outer = asyncio.create_task(deadlines.run(lambda: asyncio.sleep(30)))
        await asyncio.sleep(0.01)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return "ok"

    assert asyncio.run(main()) == "ok"
