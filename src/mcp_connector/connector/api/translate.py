"""Turn control-plane responses (objects, lists, Tables, watch events) into the app-side view.

Every object passes a scope check first: whatever the control plane returns, only claims
carrying this cluster's (and, for namespaced requests, this namespace's) labels come back,
so a selector or a continue token can never widen what a cluster sees. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_connector.connector import errors
from mcp_connector.core import contract


@dataclass(frozen=True)
class Scope:
    """Which control-plane claims a request may see: one cluster, one namespace or all of them."""

    cluster_id: str
    namespace: str | None

    def admits(self, obj: Mapping[str, Any]) -> bool:
        """True when ``obj`` belongs to this cluster (and namespace)."""
        ref = contract.app_ref_of(obj)
        if ref is None or ref.cluster_id != self.cluster_id:
            return False
        return self.namespace is None or ref.namespace == self.namespace

    def admits_ref(self, obj: Mapping[str, Any], ref: contract.AppRef) -> bool:
        """True when ``obj`` is exactly the app object ``ref``."""
        return contract.app_ref_of(obj) == ref


def object_to_app(obj: Mapping[str, Any], scope: Scope) -> dict[str, Any] | None:
    """Translate one object, or None when it is outside ``scope``."""
    if not scope.admits(obj):
        return None
    return contract.to_app(obj)


def cell_replacements(obj: Mapping[str, Any]) -> dict[str, str]:
    """Control-plane values a Table cell may show, mapped to their app-side values.

    The control plane computes printer columns from its own object, so the name column and a
    column like CONNECTION-SECRET hold hashed names. Rows carry only metadata, which still
    records both app names (labels and the secret-name annotation).
    """
    ref = contract.app_ref_of(obj)
    if ref is None:
        return {}
    out = dict.fromkeys(contract.control_plane_names(ref), ref.name)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    app_secret = annotations.get(contract.APP_SECRET_NAME_ANNOTATION)
    if isinstance(app_secret, str):
        secret_ref = contract.AppRef(ref.cluster_id, ref.namespace, app_secret)
        out[contract.connection_secret_name(secret_ref)] = app_secret
    return out


#: ``includeObject`` values of a Table request; rows need at least metadata upstream for scoping.
INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT = "None", "Metadata", "Object"


def upstream_include_object(requested: str | None) -> str:
    """The ``includeObject`` to ask the control plane for when the app asked for ``requested``.

    Every row is scope-checked by its object's labels, so ``None`` still fetches metadata (and
    drops it after the check); a value kube-apiserver does not know goes up as it is, so the
    control plane refuses it in its own words.
    """
    if requested in (None, "", INCLUDE_NONE, INCLUDE_METADATA):
        return INCLUDE_METADATA
    return requested


def _table_to_app(table: Mapping[str, Any], scope: Scope, include_object: str | None) -> dict[str, Any]:
    out = dict(table)
    rows = []
    for row in table.get("rows") or []:
        obj = row.get("object")
        if not isinstance(obj, dict) or not scope.admits(obj):
            continue
        replacements = cell_replacements(obj)
        cells = [replacements.get(c, c) if isinstance(c, str) else c for c in row.get("cells") or []]
        rows.append({**row, "cells": cells, "object": None if include_object == INCLUDE_NONE else contract.to_app(obj)})
    out["rows"] = rows
    return out


def body_to_app(body: Mapping[str, Any], scope: Scope, include_object: str | None = None) -> dict[str, Any] | None:
    """Translate any response body; None when it is a single object outside ``scope``.

    Lists (including PartialObjectMetadataList) and Tables are filtered row by row; a Table's
    row objects are dropped when the app asked for ``includeObject=None``.
    """
    kind = body.get("kind")
    if kind == "Status":
        return dict(body)
    if kind == "Table":
        return _table_to_app(body, scope, include_object)
    if isinstance(body.get("items"), list) or str(kind).endswith("List"):
        out = dict(body)
        items = body.get("items") or []
        out["items"] = [t for t in (object_to_app(i, scope) for i in items) if t is not None]
        return out
    return object_to_app(body, scope)


def table_is_empty(body: Mapping[str, Any]) -> bool:
    """True for a Table with no rows (a single-object get that was filtered out)."""
    return body.get("kind") == "Table" and not body.get("rows")


def event_to_app(
    event: Mapping[str, Any],
    scope: Scope,
    claim_namespace: str,
    *,
    bookmarks: bool = True,
    include_object: str | None = None,
    ref: contract.AppRef | None = None,
) -> dict[str, Any] | None:
    """Translate one watch event; None drops it (another cluster's or namespace's object).

    BOOKMARK events carry only a resourceVersion (and maybe the initial-events-end annotation)
    and pass through when the app client asked for them (``bookmarks``). ERROR events carry a
    Status, rewritten exactly as error responses are: the hashed name of ``ref`` (a watch of one
    object) and the claim namespace, in the ``namespace "..."`` form kube-apiserver writes it,
    become the app-side ones, and nothing else of the control plane's side shows (``errors.app_status``).
    """
    kind = event.get("type")
    obj = event.get("object")
    if not isinstance(obj, dict):
        return None
    if kind == "BOOKMARK":
        return {"type": kind, "object": obj} if bookmarks else None
    if kind == "ERROR":
        status = errors.app_status(
            obj, ref=ref, claim_namespace=claim_namespace, namespace=scope.namespace, cluster_id=scope.cluster_id
        )
        return {"type": kind, "object": status}
    translated = body_to_app(obj, scope, include_object)
    if translated is None or table_is_empty(translated):
        return None
    return {"type": kind, "object": translated}
