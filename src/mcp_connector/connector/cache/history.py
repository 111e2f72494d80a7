"""The ring buffer of recent changes that lets a watch resume from a resourceVersion.

kube-apiserver's watch cache keeps a bounded window of events so a client that re-watches
from the last version it saw gets exactly the changes after it. The window is bounded in
events and in bytes: every history of the process draws on one ``Budget`` (the serialized size
of what each event keeps), and the oldest events go first when it is spent, so a few large
objects changing often cannot take the process's memory. A version the window no longer reaches
since the last list is answered as kube-apiserver answers it (410 Expired, see ``expired``);
older ones are answered elsewhere (here: by the control plane, see serving.py). Pure.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from mcp_connector.connector.cache.store import Entry

#: The bytes every history of the process may keep together, unless configured.
DEFAULT_BUDGET = 128 * 1024 * 1024


@dataclass(slots=True, eq=False)
class Event:
    """One change: the object after it (for DELETED: as deleted), the one before, its version.

    ``cost`` is what the history accounts for keeping it (set when added).
    """

    type: str
    rv: int
    entry: Entry
    prev: Entry | None
    cost: int = 0


class Budget:
    """Bytes shared by every history of the process.

    When spent, the history that keeps the most gives up its oldest events first, so a busy
    claim API cannot push a quiet one's short history out, nor a quiet one keep a busy one's.
    """

    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        self.limit = limit
        self.used = 0
        self.histories: weakref.WeakSet[History] = weakref.WeakSet()

    def reclaim(self) -> None:
        """Drop oldest events, largest history first, until no more is kept than the limit."""
        while self.used > self.limit:
            largest = max(self.histories, key=lambda h: h.bytes, default=None)
            if largest is None or not largest.bytes:
                return
            largest.drop_oldest()


class History:
    """The last ``capacity`` events within the budget; every event after ``start`` is known."""

    def __init__(self, capacity: int, start: int = 0, *, budget: Budget | None = None) -> None:
        self._events: deque[Event] = deque()
        self.capacity = capacity
        self.budget = budget if budget is not None else Budget()
        self.budget.histories.add(self)
        #: Every event with a resourceVersion above this one is in the buffer.
        self.start = start
        #: The version of the last list: from here on, every change was in the buffer once.
        self.listed = start
        #: The bytes this history's events account for.
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._events)

    def reset(self, start: int) -> None:
        """Forget everything: only events after ``start`` will be known."""
        self._events.clear()
        self.budget.used -= self.bytes
        self.bytes = 0
        self.start = self.listed = start

    def add(self, event: Event, cost: int) -> None:
        """Append an event, dropping the oldest past capacity or past the budget."""
        event.cost = cost
        self._events.append(event)
        self.bytes += cost
        self.budget.used += cost
        while len(self._events) > self.capacity:
            self.drop_oldest()
        self.budget.reclaim()

    def drop_oldest(self) -> None:
        """Forget the oldest event: versions before it are no longer covered."""
        dropped = self._events.popleft()
        self.bytes -= dropped.cost
        self.budget.used -= dropped.cost
        self.start = dropped.rv

    def covers(self, rv: int) -> bool:
        """True when every event after ``rv`` is known."""
        return rv >= self.start

    def expired(self, rv: int) -> bool:
        """True when the events after ``rv`` were in the buffer since the last list but are gone.

        kube-apiserver's watch cache answers such a watch with 410 Expired ("too old resource
        version"), and the client lists again.
        """
        return self.listed <= rv < self.start

    def since(self, rv: int) -> Iterator[Event]:
        """The events after ``rv``, oldest first (``covers(rv)`` must hold)."""
        newer: list[Event] = []
        for event in reversed(self._events):
            if event.rv <= rv:
                break
            newer.append(event)
        return reversed(newer)
