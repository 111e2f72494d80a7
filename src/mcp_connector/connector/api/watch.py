"""Watch streams: one control-plane watch per app watch, every event translated on the way.

The control-plane watch is opened *before* we answer, so a refused watch (410 Gone for an old
resourceVersion, 503 when the control plane is down) becomes an ordinary Status response.
Events outside the request's scope are dropped; BOOKMARKs (including the
``k8s.io/initial-events-end`` one WatchList informers wait for) pass to clients that asked for
them. Upstream, bookmarks are always asked for: they keep a quiet watch talking, so a watch
that falls silent for longer than the idle timeout is known dead and ended, and the app client
re-watches instead of waiting for ever on a control plane that vanished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from mcp_connector import upstream
from mcp_connector.connector.api.translate import Scope, event_to_app, upstream_include_object
from mcp_connector.connector.api.verbs.request import (
    Call,
    app_ref,
    collection_path,
    list_params,
    upstream_headers,
)
from mcp_connector.connector.errors import from_control_plane
from mcp_connector.connector.http.routing import query_flag
from mcp_connector.connector.metrics import OPEN_WATCHES
from mcp_connector.connector.runtime import Runtime

log = logging.getLogger(__name__)

WATCH_PARAMS = (
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
)


def watch_call_params(rt: Runtime, call: Call) -> dict[str, str]:
    """Selectors and passed-through parameters for the control-plane watch.

    A watch of one object (``/watch/namespaces/<ns>/<plural>/<name>``) becomes a collection
    watch selecting that name's label.
    """
    params = list_params(rt, call, WATCH_PARAMS)
    if query_flag(call.query, "allowWatchBookmarks") or "sendInitialEvents" not in call.query:
        params["allowWatchBookmarks"] = "true"
    elif "allowWatchBookmarks" in call.query:
        # sendInitialEvents needs bookmarks: the control plane refuses this in its own words.
        params["allowWatchBookmarks"] = call.query["allowWatchBookmarks"]
    params["includeObject"] = upstream_include_object(call.query.get("includeObject"))
    return params


async def until(events: AsyncIterator[dict[str, Any]], stop: asyncio.Event) -> AsyncIterator[dict[str, Any]]:
    """``events`` until they end or ``stop`` is set (the connector drains: end the watch cleanly)."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            following = asyncio.ensure_future(anext(events))
            await asyncio.wait((following, stopping), return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        stopping.cancel()


async def serve(request: web.Request, rt: Runtime, call: Call) -> web.StreamResponse:
    """Stream translated events until either side ends the watch."""
    params = watch_call_params(rt, call)
    scope = Scope(rt.cluster_id, call.route.namespace)
    ref = app_ref(rt, call.route) if call.route.name is not None else None
    bookmarks = query_flag(call.query, "allowWatchBookmarks")
    try:
        opened = upstream.watch(
            rt.control_plane_watches,
            collection_path(rt, call.served),
            params=params,
            accept=call.output.accept,
            headers=upstream_headers(rt, call),
            idle_timeout=rt.watch_idle_timeout,
        )
        events = await opened.__aenter__()
    except upstream.ControlPlaneError as e:
        raise from_control_plane(
            e, ref=ref, claim_namespace=rt.claim_namespace, namespace=call.route.namespace, cluster_id=rt.cluster_id
        ) from None
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache", "Audit-ID": call.audit_id},
    )
    response.enable_chunked_encoding()
    OPEN_WATCHES.inc()
    try:
        await response.prepare(request)
        async for event in until(events, rt.draining):
            translated = event_to_app(
                event,
                scope,
                rt.claim_namespace,
                bookmarks=bookmarks,
                include_object=call.query.get("includeObject"),
                ref=ref,
            )
            if translated is not None:
                await response.write(orjson.dumps(translated) + b"\n")
    except upstream.ControlPlaneError as e:
        log.info("control-plane watch ended", extra={"fields": {"error": str(e)}})
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        OPEN_WATCHES.dec()
        await opened.__aexit__(None, None, None)
    return response
