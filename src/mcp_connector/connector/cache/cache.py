"""The cache of one claim API at one version: store, history, watchers, and how fresh it is.

Fed by its reflector (one upstream list and watch), read by GETs and LISTs, fanned out to
every client watch. Everything runs on the event loop: a change is applied, recorded and
offered to every watcher in one step, so a snapshot taken and a watcher registered between
two awaits see exactly the same version of the world.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.cache.fanout import QUEUE_BYTES, Watcher
from mcp_connector.connector.cache.forms import OBJECT
from mcp_connector.connector.cache.history import Budget, Event, History
from mcp_connector.connector.cache.paths import Paths
from mcp_connector.connector.cache.proofs import Proofs
from mcp_connector.connector.cache.selection import Selection
from mcp_connector.connector.cache.store import Entry, NotOurs, Store, resource_version
from mcp_connector.connector.followers.catalog import ServedResource
from mcp_connector.connector.logs import fields
from mcp_connector.connector.metrics import CACHE_SKIPPED

log = logging.getLogger(__name__)

#: Events kept for resuming watches (kube-apiserver keeps 100 to 102,400, and at least 75 s).
HISTORY_CAPACITY = 10_000


def _settle() -> None:
    """Take what the process holds now, the listed objects above all, out of the collector's scans.

    A listed store lives until the next relist and holds no reference cycles (refcounting still
    frees what is replaced). Left to the collector, every full collection walked it: at 11,000
    claims each one stopped the event loop, and every watch with it, for about a second on a
    loaded machine. Freezing is cheap (no walk); the cost is that cyclic garbage alive at this
    moment is never collected, once per relist.
    """
    gc.freeze()


class Cache:
    """One served resource's cached objects (see module docstring)."""

    def __init__(
        self,
        served: ServedResource,
        cluster_id: str,
        *,
        capacity: int = HISTORY_CAPACITY,
        budget: Budget | None = None,
        watch_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.served = served
        self.cluster_id = cluster_id
        self.store = Store()
        self.history = History(capacity, budget=budget)
        #: The bytes one client watch may have queued before it is cut off.
        self.watch_bytes = watch_bytes
        #: Freshness proofs shared by concurrent consistent reads (serving.py).
        self.proofs: Proofs[Any] = Proofs()
        #: Measured answer times of consistent LISTs by path (serving.py).
        self.paths = Paths()
        self.rv = 0
        self.watchers: set[Watcher] = set()
        #: True while the upstream watch is open and the store follows it.
        self.ready = False
        #: Why the cache is not ready (the last upstream failure), if it failed.
        self.error: upstream.ControlPlaneError | None = None
        self._progress = asyncio.Event()
        self._became_ready = asyncio.Event()
        #: Called with every change applied (after the watchers got it).
        self.listeners: list[Callable[[Event], None]] = []
        #: Called after every (re)list, when changes may have been missed.
        self.relisted: list[Callable[[], None]] = []

    # -- fed by the reflector ------------------------------------------------------------

    def replace(self, items: list[dict[str, Any]], rv: int) -> None:
        """A fresh list: the store becomes exactly ``items`` at ``rv``; open watches end.

        kube-apiserver's cacher ends every watch when it relists; the clients re-watch from
        the last version they saw, which the control plane answers if the cache cannot.
        """
        self.close_watchers("the connector's cache relisted; re-watch")
        store = Store()
        for raw in items:
            entry = self._entry(raw)
            if entry is not None:
                store.put(entry)
        self.store = store
        self.history.reset(rv)
        self.rv = rv
        _settle()
        for listener in self.relisted:
            listener()
        self._advanced()

    def _entry(self, raw: Any) -> Entry | None:
        """The entry of a control-plane object; None when it is not ours or cannot be read.

        An object the cache cannot read (no metadata, a resourceVersion that is no number) is
        left out and counted: requests for it find no entry and go to the control plane, which
        answers them in its own words, and nothing else the cache serves is held up by it.
        """
        try:
            return Entry.of(raw, self.cluster_id)
        except NotOurs:
            return None
        except Exception as e:
            CACHE_SKIPPED.labels("object").inc()
            log.warning(
                "cache left out an object it cannot read",
                extra=fields(resource=self.served.api.resource, error=f"{type(e).__name__}: {str(e)[:200]}"),
            )
            return None

    def apply(self, kind: str, raw: dict[str, Any]) -> None:
        """One ADDED, MODIFIED or DELETED event from the control plane."""
        entry = self._entry(raw)
        if entry is None:
            self._forget(raw)
            return
        if kind == "DELETED":
            prev = self.store.remove(entry.namespace, entry.name)
        else:
            prev = self.store.put(entry)
            if kind == "ADDED" and prev is not None:
                kind = "MODIFIED"
            elif kind == "MODIFIED" and prev is None:
                kind = "ADDED"
        event = Event(kind, entry.rv, entry, prev)
        # What the history keeps of this event once the entry has left the store: the object's
        # bytes (made here once, shared by every watcher and read) and its packed control-plane form.
        self.history.add(event, 2 * len(OBJECT.object_bytes(entry)))
        self.rv = max(self.rv, entry.rv)
        for watcher in list(self.watchers):
            try:
                watcher.offer(event)
            except Exception:  # one watch's form that cannot be written ends that watch only
                CACHE_SKIPPED.labels("watch").inc()
                log.warning("a watch ended: its event could not be written", exc_info=True)
                watcher.close("the connector could not write an event of this watch; re-watch")
            if watcher.closed:  # cut off or failed: nothing more is offered to it
                self.watchers.discard(watcher)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a cache listener failed", extra=fields(resource=self.served.api.resource))
        if prev is not None:
            prev.pack()
        if kind == "DELETED":
            entry.pack()
        self._advanced()

    def _forget(self, raw: Any) -> None:
        """Drop the cached entry of an object whose new state could not be read (it is stale now)."""
        metadata = raw.get("metadata") if isinstance(raw, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(name, str):
            return
        for entry in [e for e in self.store if e.cp_name == name]:
            self.store.remove(entry.namespace, entry.name)

    def progress(self, rv: int) -> None:
        """A BOOKMARK from the control plane: nothing for us happened up to ``rv``."""
        if rv > self.rv:
            self.rv = rv
            self._advanced()

    def set_ready(self) -> None:
        """The upstream watch is open: reads and watches may be served."""
        self.ready, self.error = True, None
        self._became_ready.set()

    def fail(self, error: upstream.ControlPlaneError | None) -> None:
        """The upstream watch broke: stop serving and end open watches until it is back."""
        self.ready, self.error = False, error
        self._became_ready.clear()
        self.close_watchers("the connector lost its watch on the control plane; re-watch")

    def expired(self) -> None:
        """The control plane no longer has the cache's version (410): stop serving until relisted.

        The store is stale from here on, and a watch accepted now would only be ended by the
        relist: new watches wait for it (or go to the control plane), as kube-apiserver's cacher
        refuses watches while it re-initializes.
        """
        self.ready = False
        self._became_ready.clear()
        self.close_watchers("the connector's cache relists; re-watch")

    def close_watchers(self, reason: str) -> None:
        """End every open client watch."""
        for watcher in list(self.watchers):
            watcher.close(reason)
        self.watchers.clear()

    def _advanced(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    # -- read by requests ----------------------------------------------------------------

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the cache to be ready.

        Ready when this returns True: the flag is checked after the wake-up, since the upstream
        watch that made the cache ready may have said 410 in the meantime.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.ready:
                    await self._became_ready.wait()
        return self.ready

    async def wait_for(self, rv: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the cache has seen ``rv``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.rv < rv:
            left = deadline - loop.time()
            if left <= 0 or not self.ready:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._progress.wait()
        return True

    async def changed(self, timeout: float) -> None:
        """Return after the next change (or bookmark), or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._progress.wait()

    def select(self, selection: Selection) -> list[Entry]:
        """The entries a selection admits, in control-plane order."""
        name = selection.exact_name
        if name is not None and selection.namespace is not None:
            entry = self.store.get(selection.namespace, name)
            candidates = [entry] if entry is not None else []
        else:
            candidates = self.store.ordered()
        return [e for e in candidates if selection.matches(e.namespace, e.name, e.labels)]

    def get(self, namespace: str, name: str) -> Entry | None:
        """One cached object by its app-side namespace and name."""
        return self.store.get(namespace, name)


__all__ = ["Cache", "resource_version"]
