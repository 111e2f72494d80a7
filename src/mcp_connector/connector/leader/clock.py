"""Time for the elector: a monotonic clock for every decision, the wall clock only for the record.

Expiry is judged by when *this* replica saw the record change (client-go's observedTime), never
by comparing another host's ``renewTime`` with ours, so a replica whose wall clock is off still
waits a whole lease duration. Tests swap in a fake clock.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic seconds, the wall time, and sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""

    def wall(self) -> datetime.datetime:
        """The wall time, for the record's acquire and renew times."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""


class SystemClock:
    """The process's clocks."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def wall(self) -> datetime.datetime:
        """Now, in UTC."""
        return datetime.datetime.now(datetime.UTC)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(max(0.0, seconds))


class Expired(Exception):
    """``within`` ran out of time."""


async def within(clock: Clock, seconds: float, work: Awaitable[T]) -> T:
    """``work``'s result, or Expired once ``seconds`` passed on ``clock`` (the work is cancelled)."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        # Reap the cancelled work so nothing is left pending.
        await asyncio.gather(task, return_exceptions=True)
        raise Expired
    return task.result()
