"""The ring buffer of recent changes that lets a watch resume from a resourceVersion.

kube-apiserver's watch cache keeps a bounded window of events so a client that re-watches
from the last version it saw gets exactly the changes after it; older versions are answered
elsewhere (here: by the control plane, see serving.py). Pure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mcp_connector.connector.cache.store import Entry


@dataclass(slots=True, eq=False)
class Event:
    """One change: the object after it (for DELETED: as deleted), the one before, its version."""

    type: str
    rv: int
    entry: Entry
    prev: Entry | None
    lines: dict[tuple[str, str], bytes] = field(default_factory=dict)


class History:
    """The last ``capacity`` events; every event after ``start`` is known."""

    def __init__(self, capacity: int, start: int = 0) -> None:
        self._events: deque[Event] = deque()
        self.capacity = capacity
        #: Every event with a resourceVersion above this one is in the buffer.
        self.start = start

    def __len__(self) -> int:
        return len(self._events)

    def reset(self, start: int) -> None:
        """Forget everything: only events after ``start`` will be known."""
        self._events.clear()
        self.start = start

    def add(self, event: Event) -> None:
        """Append an event, dropping the oldest past capacity."""
        self._events.append(event)
        while len(self._events) > self.capacity:
            self.start = self._events.popleft().rv

    def covers(self, rv: int) -> bool:
        """True when every event after ``rv`` is known."""
        return rv >= self.start

    def since(self, rv: int) -> Iterator[Event]:
        """The events after ``rv``, oldest first (``covers(rv)`` must hold)."""
        newer: list[Event] = []
        for event in reversed(self._events):
            if event.rv <= rv:
                break
            newer.append(event)
        return reversed(newer)
