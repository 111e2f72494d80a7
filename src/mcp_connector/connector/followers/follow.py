"""Keep something current from a control-plane or app-cluster collection: list, then watch.

Used for claim-API discovery (XRDs, CRDs), the front-proxy ConfigMap, connection Secrets:
each change (or reconnect, or periodic relist) *kicks* a debounced reconcile function rather
than patching state incrementally, which keeps every follower simple and self-healing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from mcp_connector import upstream
from mcp_connector.connector.errors import describe
from mcp_connector.connector.logs import fields

log = logging.getLogger(__name__)


class Trigger:
    """A debounced "something changed" signal driving one reconcile function."""

    def __init__(self, name: str, reconcile: Callable[[], Awaitable[None]], *, every: float = 300.0) -> None:
        self.name = name
        self._reconcile = reconcile
        self._every = every
        self._event = asyncio.Event()

    def kick(self) -> None:
        """Ask for a reconcile soon."""
        self._event.set()

    async def run(self, *, debounce: float = 0.2) -> None:
        """Reconcile on every kick (and at least every ``every`` seconds), forever."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=self._every)
            await asyncio.sleep(debounce)
            self._event.clear()
            try:
                await self._reconcile()
            except upstream.ControlPlaneError as e:
                log.warning("reconcile failed", extra=fields(loop=self.name, error=describe(e)))
                await asyncio.sleep(2.0)
                self._event.set()
            except Exception:
                log.exception("reconcile crashed", extra=fields(loop=self.name))
                await asyncio.sleep(5.0)
                self._event.set()


async def follow(
    client: upstream.Client,
    path: upstream.ApiPath,
    trigger: Trigger,
    *,
    params: Mapping[str, str] | None = None,
    resync: int = 300,
) -> None:
    """Kick ``trigger`` whenever the collection at ``path`` changes, reconnecting forever."""
    backoff = 1.0
    base = dict(params or {})
    while True:
        try:
            page = await upstream.request(client, "GET", path, params={**base, "limit": "1"})
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
            trigger.kick()
            query = {**base, "resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": str(resync)}
            async with upstream.watch(client, path, params=query) as events:
                backoff = 1.0
                async for event in events:
                    if event.get("type") == "ERROR":
                        break  # usually 410 Gone: relist
                    if event.get("type") != "BOOKMARK":
                        trigger.kick()
        except asyncio.CancelledError:
            raise
        except upstream.ControlPlaneError as e:
            log.warning("watch failed; retrying", extra=fields(path=path, error=describe(e), retry_in=backoff))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
        except Exception:
            log.exception("watch crashed; retrying", extra=fields(path=path))
            await asyncio.sleep(5.0)
