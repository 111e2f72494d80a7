"""The one upstream list and watch that keeps a cache current, as client-go's Reflector does.

It lists this cluster's objects of one claim API in the claim namespace (selected by the
``app-cluster`` label), then watches from the list's resourceVersion with bookmarks, and
re-watches from the last version seen whenever a watch ends. Only a ``410 Gone`` (the control
plane no longer has that version) makes it list again. While the watch is broken, and from a
410 until the relist is done, the cache is not ready: its client watches end, new ones wait
for it, and requests go to the control plane, which answers them (or says it cannot be
reached) as it did before there was a cache.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.store import resource_version
from mcp_connector.connector.errors import describe
from mcp_connector.connector.logs import fields
from mcp_connector.connector.metrics import CACHE_SKIPPED
from mcp_connector.core import contract

log = logging.getLogger(__name__)

#: Upstream watches end after a random 5-10 minutes and are resumed, as client-go's are.
WATCH_SECONDS = (300, 600)
_LIST_PAGE = "500"


@dataclass(frozen=True)
class Upstream:
    """Where and how a reflector reaches the control plane."""

    requests: upstream.Client
    watches: upstream.Client
    claim_namespace: str
    idle_timeout: float = upstream.WATCH_IDLE_TIMEOUT


class _Relist(Exception):
    """The control plane no longer has the version the cache is at (410 Gone)."""


def collection_path(cache: Cache, claim_namespace: str) -> upstream.ApiPath:
    """The control-plane collection a cache follows."""
    served = cache.served
    return upstream.api_path(
        "apis", served.group, served.version.name, "namespaces", claim_namespace, served.api.plural
    )


async def list_state(cache: Cache, up: Upstream) -> tuple[list[dict[str, Any]], int]:
    """Every object of this cluster, in pages, at one resourceVersion (the first page's)."""
    path = collection_path(cache, up.claim_namespace)
    params = {"labelSelector": contract.scope_selector(cache.cluster_id, None), "limit": _LIST_PAGE}
    items: list[dict[str, Any]] = []
    rv = 0
    while True:
        page = await upstream.request(up.requests, "GET", path, params=params)
        meta = page.get("metadata") or {}
        if not rv:
            rv = resource_version(meta.get("resourceVersion"))
        items.extend(page.get("items") or [])
        token = meta.get("continue")
        if not token:
            return items, rv
        params = {**params, "continue": str(token)}


async def _watch_once(cache: Cache, up: Upstream) -> None:
    """One upstream watch from the cache's version, applied event by event until it ends."""
    params = {
        "labelSelector": contract.scope_selector(cache.cluster_id, None),
        "resourceVersion": str(cache.rv),
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(random.randint(*WATCH_SECONDS)),
    }
    path = collection_path(cache, up.claim_namespace)
    async with upstream.watch(up.watches, path, params=params, idle_timeout=up.idle_timeout) as events:
        cache.set_ready()
        async for event in events:
            _apply(cache, event)


def _apply(cache: Cache, event: Mapping[str, Any]) -> None:
    """Apply one upstream event; one the cache cannot read is logged and skipped, never fatal.

    An unknown event type or a bookmark without a readable version says nothing the store
    needs (client-go's watch decoder skips what it cannot use too); objects are contained by
    ``Cache.apply`` itself.
    """
    kind = event.get("type")
    obj = event.get("object")
    if not isinstance(obj, dict):
        _skipped(cache, f"a {kind!r} event without an object")
        return
    if kind == "ERROR":
        code = obj.get("code")
        if code == 410:
            raise _Relist(str(obj.get("message") or "410 Gone"))
        raise upstream.ControlPlaneRejected("watch", code if isinstance(code, int) and code >= 400 else 500, obj)
    if kind == "BOOKMARK":
        try:
            cache.progress(resource_version((obj.get("metadata") or {}).get("resourceVersion")))
        except (ValueError, AttributeError):
            _skipped(cache, "a bookmark without a resourceVersion")
    elif kind in ("ADDED", "MODIFIED", "DELETED"):
        cache.apply(str(kind), obj)
    else:
        _skipped(cache, f"an event of unknown type {str(kind)[:40]!r}")


def _skipped(cache: Cache, what: str) -> None:
    CACHE_SKIPPED.labels("event").inc()
    log.warning("cache skipped an upstream event", extra=fields(resource=cache.served.api.resource, event=what))


async def run(cache: Cache, up: Upstream) -> None:
    """Keep ``cache`` current until cancelled (list, watch, re-watch; relist on 410)."""
    backoff = 0.5
    listed = False
    while True:
        try:
            if not listed:
                items, rv = await list_state(cache, up)
                cache.replace(items, rv)
                listed = True
                log.info(
                    "cache listed", extra=fields(resource=cache.served.api.resource, objects=len(cache.store), rv=rv)
                )
            await _watch_once(cache, up)
            backoff = 0.5  # a watch that ended by its timeout is simply resumed
        except asyncio.CancelledError:
            cache.fail(None)
            raise
        except _Relist as e:
            log.info("cache relists", extra=fields(resource=cache.served.api.resource, reason=str(e)))
            cache.expired()
            listed = False
        except upstream.ControlPlaneError as e:
            if isinstance(e, upstream.ControlPlaneRejected) and e.status == 410:
                cache.expired()
                listed = False
                continue
            if cache.ready or cache.error is None:
                log.warning(
                    "cache lost its watch; retrying",
                    extra=fields(resource=cache.served.api.resource, error=describe(e)),
                )
            cache.fail(e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
        except Exception:
            log.exception("cache reflector crashed; relisting", extra=fields(resource=cache.served.api.resource))
            cache.fail(None)
            listed = False
            await asyncio.sleep(5.0)
