"""The control-plane call every verb makes for a request, in one place.

The request's Audit-ID and User-Agent go up with it, the control plane's errors come back as
app-side Statuses (hashed names replaced by the app's), its warnings in app-side terms, and
the time it took is measured per verb.
"""

from __future__ import annotations

import time
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.api.verbs.request import Call, upstream_headers
from mcp_connector.connector.errors import from_control_plane, scrub_text
from mcp_connector.connector.metrics import UPSTREAM_SECONDS
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract


async def call_control_plane(
    rt: Runtime,
    call: Call,
    verb: str,
    method: str,
    path: upstream.ApiPath,
    *,
    ref: contract.AppRef | None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``call_control_plane_status`` for callers that need only the body."""
    return (await call_control_plane_status(rt, call, verb, method, path, ref=ref, **kwargs))[1]


async def call_control_plane_status(
    rt: Runtime,
    call: Call,
    verb: str,
    method: str,
    path: upstream.ApiPath,
    *,
    ref: contract.AppRef | None,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    """One control-plane call made for ``call``: its headers go up, its warnings come back."""
    start = time.monotonic()
    try:
        reply = await upstream.exchange(rt.control_plane, method, path, headers=upstream_headers(rt, call), **kwargs)
    except upstream.ControlPlaneError as e:
        raise from_control_plane(
            e, ref=ref, claim_namespace=rt.claim_namespace, namespace=call.route.namespace, cluster_id=rt.cluster_id
        ) from None
    finally:
        UPSTREAM_SECONDS.labels(verb).observe(time.monotonic() - start)
    call.warnings.extend(app_warnings(rt, reply.warnings, ref, call.route.namespace))
    return reply.status, reply.body


def app_warnings(
    rt: Runtime, warnings: tuple[str, ...], ref: contract.AppRef | None, namespace: str | None
) -> list[str]:
    """Control-plane ``Warning`` headers in app-side terms."""
    if ref is not None:
        return [contract.rewrite_message(w, ref, claim_namespace=rt.claim_namespace) for w in warnings]
    return [scrub_text(w, rt.claim_namespace, namespace) for w in warnings]
