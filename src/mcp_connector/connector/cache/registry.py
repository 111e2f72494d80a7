"""Which caches run: one per served claim API at its preferred version, others when first used.

Started and stopped as the catalog changes, so the control plane sees one watch per served
API (per version in use), however many app clients read and watch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator

from mcp_connector.connector.cache import reflector
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.fanout import QUEUE_BYTES
from mcp_connector.connector.cache.history import Budget, Event
from mcp_connector.connector.followers.catalog import Catalog, ServedResource

Key = tuple[str, str, str]


def _key(served: ServedResource) -> Key:
    return (served.group, served.version.name, served.api.plural)


class Caches:
    """The running caches and their reflector tasks."""

    def __init__(
        self, up: reflector.Upstream, cluster_id: str, *, budget: Budget | None = None, watch_bytes: int = QUEUE_BYTES
    ) -> None:
        self._up = up
        self._cluster_id = cluster_id
        #: The bytes every cache's history draws on together.
        self.budget = budget if budget is not None else Budget()
        self._watch_bytes = watch_bytes
        self._running: dict[Key, tuple[Cache, asyncio.Task[None]]] = {}
        #: Called with each change any cache applies (connection Secrets follow claims this way).
        self.listeners: list[Callable[[Cache, Event], None]] = []
        #: Called when any cache (re)lists: changes between its lists are not known one by one.
        self.relisted: list[Callable[[], None]] = []

    def _start(self, served: ServedResource) -> Cache:
        cache = Cache(served, self._cluster_id, budget=self.budget, watch_bytes=self._watch_bytes)
        cache.listeners = [functools.partial(self._notify, cache)]
        cache.relisted = [self._notify_relisted]
        task = asyncio.create_task(
            reflector.run(cache, self._up), name=f"cache {served.api.resource}/{served.version.name}"
        )
        self._running[_key(served)] = (cache, task)
        return cache

    def _notify(self, cache: Cache, event: Event) -> None:
        for listener in self.listeners:
            listener(cache, event)

    def _notify_relisted(self) -> None:
        for listener in self.relisted:
            listener()

    def _stop(self, key: Key) -> None:
        cache, task = self._running.pop(key)
        task.cancel()
        cache.close_watchers("the claim API is no longer served")
        cache.history.reset(cache.history.start)  # its events no longer draw on the budget

    def sync(self, catalog: Catalog) -> None:
        """Follow a new catalog: caches for every API's preferred version; none for what went."""
        wanted = {}
        for api in catalog.apis:
            served = catalog.resource(api.group, api.preferred_version.name, api.plural)
            if served is not None:
                wanted[_key(served)] = served
        for key, (cache, _) in list(self._running.items()):
            current = catalog.resource(*key)
            if current is None or current != cache.served:
                self._stop(key)
        for key, served in wanted.items():
            if key not in self._running:
                self._start(served)

    def of(self, served: ServedResource) -> Cache:
        """The cache of a served resource, started now if it was not running."""
        found = self._running.get(_key(served))
        if found is not None and found[0].served == served:
            return found[0]
        if found is not None:
            self._stop(_key(served))
        return self._start(served)

    def __iter__(self) -> Iterator[Cache]:
        return iter([cache for cache, _ in self._running.values()])

    async def close(self) -> None:
        """Stop every reflector."""
        tasks = [task for _, task in self._running.values()]
        for key in list(self._running):
            self._stop(key)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
