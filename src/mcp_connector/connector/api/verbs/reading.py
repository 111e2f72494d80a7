"""GET and LIST from the control plane: scoped by label selector *and* re-checked object by object.

These serve what the cache declines (connector.cache.serving decides first). A get of a name
this cluster's namespace does not own is a 404, as for a name that does not exist.
"""

from __future__ import annotations

from typing import Any

from mcp_connector.connector.api.translate import Scope, body_to_app, table_is_empty
from mcp_connector.connector.api.verbs.calls import call_control_plane
from mcp_connector.connector.api.verbs.request import (
    READ_PARAMS,
    Call,
    app_ref,
    collection_path,
    hashed_name,
    list_params,
    object_path,
    pick,
    table_params,
)
from mcp_connector.connector.errors import not_found
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract


def _to_app_or_404(call: Call, body: dict[str, Any], ref: contract.AppRef) -> dict[str, Any]:
    scope = Scope(ref.cluster_id, ref.namespace)
    if body.get("kind") == "Table":
        translated = body_to_app(body, scope, call.query.get("includeObject"))
        if translated is None or table_is_empty(translated):
            raise not_found(call.served.group, call.served.api.plural, ref.name)
        return translated
    if body.get("kind") == "Status":
        return body
    if not scope.admits_ref(body, ref):
        raise not_found(call.served.group, call.served.api.plural, ref.name)
    return contract.to_app(body)


async def get(rt: Runtime, call: Call) -> dict[str, Any]:
    """GET one claim (or its status), as an object or a Table."""
    ref = app_ref(rt, call.route)
    path = object_path(rt, call.served, hashed_name(call, ref), call.route.subresource)
    body = await call_control_plane(
        rt,
        call,
        "get",
        "GET",
        path,
        ref=ref,
        params={**pick(call.query, ("resourceVersion",)), **table_params(call)},
        accept=call.output.accept,
    )
    return _to_app_or_404(call, body, ref)


async def list_(rt: Runtime, call: Call) -> dict[str, Any]:
    """LIST claims in one namespace or all, scoped to this cluster."""
    body = await call_control_plane(
        rt,
        call,
        "list",
        "GET",
        collection_path(rt, call.served),
        ref=None,
        params={**list_params(rt, call, READ_PARAMS), **table_params(call)},
        accept=call.output.accept,
    )
    translated = body_to_app(body, Scope(rt.cluster_id, call.route.namespace), call.query.get("includeObject"))
    assert translated is not None  # lists are never dropped, only filtered
    return translated
