"""One client watch served from the cache: its filter, its bounded queue, the stream it writes.

Each watcher sees every change of its claim API (``offer``), keeps what its selection admits
(an object that starts or stops matching becomes ADDED or DELETED, as kube-apiserver's
cacheWatcher does) and queues the already encoded line. The queue is bounded: a client that
reads slower than changes arrive is cut off (its watch ends; it re-watches from the last
version it saw) instead of holding memory or other watchers back: bounded in events and in
bytes, and the queue holds the cache's own serialized objects (shared by every watcher, never
copied per watch) between constant event heads and tails. BOOKMARKs go out about once
a minute and shortly before the watch's deadline, to clients that allow them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from mcp_connector.connector.cache.forms import Form, event_parts
from mcp_connector.connector.cache.history import Event
from mcp_connector.connector.cache.selection import Selection
from mcp_connector.connector.cache.store import Entry

#: How often a watch that allows bookmarks gets one (kube-apiserver: about once a minute).
BOOKMARK_SECONDS = 60.0
#: The last bookmark goes out this long before the deadline, as kube-apiserver sends it.
BOOKMARK_BEFORE_DEADLINE = 2.0
#: Pending events one watcher may hold before it is cut off.
QUEUE_LIMIT = 1000
#: Pending bytes (of serialized objects) one watcher may hold before it is cut off, unless configured.
QUEUE_BYTES = 16 * 1024 * 1024
#: Initial events are written in chunks of about this many bytes.
_CHUNK = 64 * 1024


class Watcher:
    """A client watch's view of one cache: selection, form, queue of encoded lines."""

    def __init__(
        self,
        selection: Selection,
        form: Form,
        *,
        bookmarks: bool,
        bookmark: Callable[[int, bool], bytes],
        limit: int = QUEUE_LIMIT,
        limit_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.selection = selection
        self.form = form
        self.bookmarks = bookmarks
        self._bookmark = bookmark
        self.limit = limit
        self.limit_bytes = limit_bytes
        #: Queued events as their parts (head, object, tail); ``pending`` counts the objects' bytes.
        self.queue: deque[bytes] = deque()
        self.pending = 0
        self.wake = asyncio.Event()
        self.closed = False
        #: Forms with column headers put them in the first event only.
        self.first = form.headers_once
        #: Changes up to this version are not for this watcher (it started after them).
        self.after = 0
        #: Why the watch ended early ("" while open or when it ended normally).
        self.reason = ""

    def _selects(self, entry: Entry) -> bool:
        return self.selection.matches(entry.namespace, entry.name, entry.labels)

    def offer(self, event: Event) -> None:
        """Queue what this watcher should see of ``event``; cut the watcher off when it lags."""
        if self.closed or event.rv <= self.after:
            return
        now = self._selects(event.entry)
        if event.type == "MODIFIED":
            before = event.prev is not None and self._selects(event.prev)
            if now and not before:
                kind = "ADDED"
            elif before and not now:
                assert event.prev is not None
                self._push("DELETED", self._event_object(event.prev.at_version(event.rv)))
                return
            elif not now:
                return
            else:
                kind = "MODIFIED"
        elif not now:
            return
        else:
            kind = event.type
        if self.first:
            self._push(kind, self._event_object(event.entry))
            return
        self._push(kind, self.form.event_bytes(event.entry, headers=False))

    def _event_object(self, entry: Entry) -> bytes:
        headers, self.first = self.first, False
        return self.form.event_bytes(entry, headers=headers)

    def _push(self, kind: str, object_bytes: bytes) -> None:
        """Queue one event as its parts: the object's bytes are shared with the cache, not copied."""
        if len(self.queue) >= 3 * self.limit or self.pending + len(object_bytes) > self.limit_bytes:
            self.close("the client read too slowly; re-watch from the last resourceVersion seen")
            return
        self.queue.extend(event_parts(kind, object_bytes))
        self.pending += len(object_bytes)
        self.wake.set()

    def lines(self) -> list[bytes]:
        """The queued events as whole lines (a copy; for inspection)."""
        return b"".join(self.queue).splitlines(keepends=True)

    def take(self) -> list[bytes]:
        """Everything queued, in order, leaving the queue empty."""
        parts = list(self.queue)
        self.queue.clear()
        self.pending = 0
        return parts

    def close(self, reason: str = "") -> None:
        """End the watch once what is queued is written (nothing more is queued)."""
        if not self.closed:
            self.closed = True
            self.reason = reason
            if reason:
                self.take()
            self.wake.set()

    def bookmark_line(self, rv: int, initial_end: bool = False) -> bytes:
        """A BOOKMARK at ``rv`` in this watcher's form."""
        return self._bookmark(rv, initial_end)


def deadline_of(timeout_seconds: int | None, *, min_request_timeout: float = 1800.0) -> float:
    """When a watch ends: its timeoutSeconds (parsed at the edge: an int64, never NaN), or
    kube-apiserver's random 1-2x min-request-timeout when none or 0 is given. A negative one
    ends the watch at once, as kube-apiserver's context with a negative timeout does."""
    if not timeout_seconds:
        return time.monotonic() + min_request_timeout * (1 + random.random())
    return time.monotonic() + timeout_seconds


async def pump(
    write: Callable[[bytes], Awaitable[None]],
    watcher: Watcher,
    initial: Iterable[bytes],
    *,
    deadline: float,
    current: Callable[[], int],
    bookmark_every: float = BOOKMARK_SECONDS,
) -> None:
    """Write the initial lines, then queued events and bookmarks until the deadline or close.

    ``current`` gives the cache's resourceVersion: with the queue empty every change up to it
    has been written, so it is what a bookmark may carry.
    """
    chunk: list[bytes] = []
    size = 0
    for line in initial:
        chunk.append(line)
        size += len(line)
        if size >= _CHUNK:
            await write(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        await write(b"".join(chunk))
    next_bookmark = time.monotonic() + bookmark_every * random.uniform(0.9, 1.1)
    final_bookmark_sent = False
    alarm = _Alarm(watcher.wake)
    try:
        while True:
            if watcher.queue:
                await write(b"".join(watcher.take()))
                continue
            if watcher.closed:
                return
            now = time.monotonic()
            if now >= deadline:
                return
            if watcher.bookmarks and not final_bookmark_sent and now >= deadline - BOOKMARK_BEFORE_DEADLINE:
                final_bookmark_sent = True
                await write(watcher.bookmark_line(current()))
                continue
            if watcher.bookmarks and now >= next_bookmark:
                next_bookmark = now + bookmark_every
                await write(watcher.bookmark_line(current()))
                continue
            wake_at = deadline
            if watcher.bookmarks:
                wake_at = min(
                    wake_at, next_bookmark, deadline - BOOKMARK_BEFORE_DEADLINE if not final_bookmark_sent else deadline
                )
            alarm.set(wake_at, now)
            watcher.wake.clear()
            await watcher.wake.wait()
    finally:
        alarm.cancel()


class _Alarm:
    """Wakes a watcher at its next deadline or bookmark: one timer per change of that time.

    Not a timeout per wait: a change fanned out to a thousand watchers would otherwise make
    and cancel a thousand timers, whose churn showed in profiles of the fan-out (with the
    garbage collector they fed) as much as the writes themselves.
    """

    def __init__(self, wake: asyncio.Event) -> None:
        self._wake = wake
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0

    def set(self, at: float, now: float) -> None:
        """Ring at monotonic time ``at`` (kept if already set for it and not yet rung)."""
        if self._handle is not None and self._at == at:
            return
        self.cancel()
        self._at = at
        self._handle = asyncio.get_running_loop().call_later(max(0.0, at - now), self._ring)

    def _ring(self) -> None:
        self._handle = None
        self._wake.set()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
