"""The load loop both benchmarks share: a fixed number of requests, a fixed number in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Send = Callable[[], Awaitable[int]]


async def drive(send: Send, *, requests: int, concurrency: int) -> float:
    """Send ``requests`` requests, ``concurrency`` at a time; return requests per second."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await send()
            assert status == 200, status

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)
