"""What runs only while this replica leads: the writers, started and stopped with leadership.

Each writer is a coroutine factory. Leadership gained starts one task per factory; leadership
lost cancels them all at once, synchronously, so no writer gets another step after the elector
decided; ``drain`` then awaits their ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from mcp_connector.connector.logs import fields

log = logging.getLogger(__name__)

Writer = Callable[[], Coroutine[Any, Any, None]]


class LeaderTasks:
    """Writers, run while leading."""

    def __init__(self) -> None:
        self._writers: list[tuple[str, Writer]] = []
        self._running: list[asyncio.Task[None]] = []
        self._ending: list[asyncio.Task[None]] = []
        self._on_start: list[Callable[[], None]] = []

    def add(self, name: str, writer: Writer) -> None:
        """Run ``writer`` whenever this replica leads."""
        self._writers.append((name, writer))

    def on_start(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` each time leadership starts (e.g. ask for a full reconcile)."""
        self._on_start.append(hook)

    @property
    def running(self) -> bool:
        """True while the writers run."""
        return any(not task.done() for task in self._running)

    def start(self) -> None:
        """Leadership gained: start every writer."""
        self.stop()
        for hook in self._on_start:
            hook()
        self._running = [asyncio.create_task(writer(), name=f"leader:{name}") for name, writer in self._writers]
        log.info("writers started", extra=fields(writers=[name for name, _ in self._writers]))

    def stop(self) -> None:
        """Leadership lost: cancel every writer now."""
        if self._running:
            for task in self._running:
                task.cancel()
            self._ending += self._running
            self._running = []
            log.info("writers stopped", extra=fields(writers=[name for name, _ in self._writers]))

    async def drain(self) -> None:
        """Wait until every stopped writer has ended."""
        tasks, self._ending = self._ending, []
        await asyncio.gather(*tasks, return_exceptions=True)
