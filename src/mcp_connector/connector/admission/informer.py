"""One app-cluster collection kept in memory: list, then watch (client-go's informer, small).

Admission reads its configurations, namespaces and params from these stores, never from the
app cluster per request. A collection the app cluster does not serve (404) counts as empty and
is asked for again now and then, so an API enabled later is picked up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.errors import describe
from mcp_connector.connector.logs import fields

log = logging.getLogger(__name__)

Key = tuple[str, str]


def key_of(obj: dict[str, Any]) -> Key:
    """(namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Informer:
    """A list+watch of ``path`` with a store of its objects; ``on_change`` runs after each change."""

    def __init__(
        self, client: upstream.Client, path: upstream.ApiPath, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self.path = path
        self.items: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.served = True
        self._client = client
        self._on_change = on_change

    async def _list(self) -> str:
        items: dict[Key, dict[str, Any]] = {}
        query = {"limit": "500"}
        while True:
            page = await upstream.request(self._client, "GET", self.path, params=query)
            for item in page.get("items") or ():
                items[key_of(item)] = item
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                self.items = items
                return str(meta.get("resourceVersion") or "")
            query["continue"] = str(meta["continue"])

    async def run(self) -> None:
        """Keep the store current forever (reconnecting, relisting on 410)."""
        backoff = 1.0
        while True:
            try:
                version = await self._list()
                self.served = True
                self._changed()
                query = {"resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
                async with upstream.watch(self._client, self.path, params=query) as events:
                    backoff = 1.0
                    async for event in events:
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            break
                        if kind == "BOOKMARK" or not isinstance(obj, dict):
                            continue
                        if kind == "DELETED":
                            self.items.pop(key_of(obj), None)
                        else:
                            self.items[key_of(obj)] = obj
                        self._changed()
            except asyncio.CancelledError:
                raise
            except upstream.ControlPlaneRejected as e:
                if e.status == 404:
                    self.served, self.items = False, {}
                    self._changed()
                    await asyncio.sleep(60.0)
                    continue
                log.warning("admission watch failed; retrying", extra=fields(path=self.path, error=describe(e)))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except upstream.ControlPlaneError as e:
                log.warning("admission watch failed; retrying", extra=fields(path=self.path, error=describe(e)))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _changed(self) -> None:
        self.synced.set()
        self._on_change()
