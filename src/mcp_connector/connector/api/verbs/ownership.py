"""Which control-plane object an app reference owns, and pinning a write or delete to it.

The hashed name alone could name another namespace's (or cluster's) claim, since the ``-x-``
join is not injective (see contract.owned_by): every update, patch, apply and delete first
reads the object under the hashed name, checks its ownership labels, and sends its uid as a
precondition, so the control plane refuses (409) if the name changed hands in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_connector.connector.api.translate import Scope
from mcp_connector.connector.api.verbs.calls import call_control_plane
from mcp_connector.connector.api.verbs.request import Call, hashed_name, object_path
from mcp_connector.connector.errors import ApiError, not_found
from mcp_connector.connector.http.delete_options import DeleteOptions
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract


async def get_owned(rt: Runtime, call: Call, ref: contract.AppRef, *, subresource: str | None = None) -> dict[str, Any]:
    """The control-plane object ``ref`` owns; 404 when the hashed name holds none or another's."""
    path = object_path(rt, call.served, hashed_name(call, ref), subresource)
    body = await call_control_plane(rt, call, "get", "GET", path, ref=ref)
    if not Scope(ref.cluster_id, ref.namespace).admits_ref(body, ref):
        raise not_found(call.served.group, call.served.api.plural, ref.name)
    return body


async def existing_owned(rt: Runtime, call: Call, ref: contract.AppRef) -> dict[str, Any] | None:
    """The control-plane object ``ref`` owns, None when there is none; 409 when another app object
    holds ``ref``'s hashed name (see contract.owned_by).

    A server-side apply is forwarded as is, and with ``force`` it would take over whatever
    object sits under the hashed name, so the owner is checked first and its uid pinned.
    """
    path = object_path(rt, call.served, hashed_name(call, ref))
    try:
        existing = await call_control_plane(rt, call, "get", "GET", path, ref=ref)
    except ApiError as e:
        if e.code == 404:
            return None
        raise
    if not contract.owned_by(existing, ref):
        raise ApiError.of(
            409,
            f'{call.served.api.resource} "{ref.name}" cannot be stored: its control-plane name is taken by '
            "another claim; choose another name",
            reason="AlreadyExists",
        )
    return existing


def uid_conflict(call: Call, ref: contract.AppRef, given: Any, actual: str) -> ApiError:
    """The 409 kube-apiserver gives when a uid precondition does not hold."""
    resource = f"{call.served.api.plural}.{call.served.group}"
    return ApiError.of(
        409,
        f'Operation cannot be fulfilled on {resource} "{ref.name}": '
        f"Precondition failed: UID in precondition: {given}, UID in object meta: {actual}",
        details={"name": ref.name, "group": call.served.group, "kind": call.served.api.plural},
    )


def pin_uid(call: Call, ref: contract.AppRef, body: dict[str, Any], owned: Mapping[str, Any]) -> None:
    """Make ``body`` carry the owned object's uid; a different uid from the caller is a 409."""
    metadata = body.setdefault("metadata", {})
    uid = str(owned["metadata"]["uid"])
    given = metadata.get("uid")
    if given and given != uid:
        raise uid_conflict(call, ref, given, uid)
    metadata["uid"] = uid


def pinned_to(call: Call, ref: contract.AppRef, options: DeleteOptions, owned: Mapping[str, Any]) -> DeleteOptions:
    """The delete's options with a uid precondition: the control plane refuses if the name changed hands.

    A caller's own uid precondition is honoured: when it is not the owned object's uid the
    answer is the 409 kube-apiserver gives, never a delete of whatever holds the name.
    """
    uid = str(owned["metadata"]["uid"])
    given = options.precondition_uid
    if given and given != uid:
        raise uid_conflict(call, ref, given, uid)
    return options.pinned(uid)
