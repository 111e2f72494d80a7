"""DELETE and DELETECOLLECTION: one owned object at a time, each pinned by its uid.

A collection delete lists this cluster's objects in the scope and deletes them one by one, so
no control-plane collection delete can ever reach another cluster's claims.
"""

from __future__ import annotations

from typing import Any

from mcp_connector.connector.api.translate import Scope
from mcp_connector.connector.api.verbs.admitting import admit
from mcp_connector.connector.api.verbs.calls import call_control_plane, call_control_plane_status
from mcp_connector.connector.api.verbs.ownership import get_owned, pinned_to
from mcp_connector.connector.api.verbs.request import (
    Call,
    app_ref,
    collection_path,
    hashed_name,
    list_params,
    object_path,
)
from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http.delete_options import DeleteOptions
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract


def _options(call: Call) -> DeleteOptions:
    """The delete's options, parsed at the edge (http.delete_options)."""
    return call.params.delete or DeleteOptions()


async def _delete_one(
    rt: Runtime, call: Call, ref: contract.AppRef, options: DeleteOptions
) -> tuple[int, dict[str, Any]]:
    """Delete with the parsed options as the only body: the control plane then reads no query options."""
    path = object_path(rt, call.served, hashed_name(call, ref))
    code, body = await call_control_plane_status(rt, call, "delete", "DELETE", path, ref=ref, json_body=options.wire())
    if body.get("kind") == "Status":
        return code, contract.rewrite_status(body, ref, claim_namespace=rt.claim_namespace)
    return code, contract.to_app(body) if contract.app_ref_of(body) == ref else body


async def delete(rt: Runtime, call: Call) -> tuple[int, dict[str, Any]]:
    """DELETE one claim, after checking it is this cluster's and namespace's."""
    options = _options(call)
    ref = app_ref(rt, call.route)
    owned = await get_owned(rt, call, ref)
    await admit(rt, call, "DELETE", None, contract.to_app(owned), options.wire())
    result = await _delete_one(rt, call, ref, pinned_to(call, ref, options, owned))
    rt.claims_changed()
    return result


async def delete_collection(rt: Runtime, call: Call) -> dict[str, Any]:
    """DELETE every claim a (scoped) list finds, one by one.

    The list takes the request's ListOptions as kube-apiserver's DeleteCollection does, paging
    included: ``limit`` deletes one page and answers the next page's ``continue`` token, and a
    token that does not decode is the control plane's 400 (both were ignored, and every claim
    the selectors matched was deleted).
    """
    options = _options(call)
    listed = await call_control_plane(
        rt,
        call,
        "deletecollection",
        "GET",
        collection_path(rt, call.served),
        ref=None,
        params=list_params(rt, call, ("resourceVersion", "resourceVersionMatch", "limit", "continue")),
    )
    scope = Scope(rt.cluster_id, call.route.namespace)
    deleted = []
    for item in listed.get("items") or []:
        ref = contract.app_ref_of(item)
        if ref is None or not scope.admits(item):
            continue
        await admit(rt, call, "DELETE", None, contract.to_app(item), options.wire())
        try:
            _, result = await _delete_one(rt, call, ref, pinned_to(call, ref, options, item))
        except ApiError as e:
            if e.code == 404:
                continue
            raise
        deleted.append(result if result.get("kind") != "Status" else contract.to_app(item))
    rt.claims_changed()
    listed_metadata = listed.get("metadata") or {}
    metadata = {"resourceVersion": str(listed_metadata.get("resourceVersion") or "")}
    if listed_metadata.get("continue"):
        metadata["continue"] = str(listed_metadata["continue"])
    return {
        "kind": call.served.api.list_kind,
        "apiVersion": call.served.api_version,
        "metadata": metadata,
        "items": deleted,
    }
