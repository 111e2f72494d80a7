"""The discovery documents (``/apis``…) in their legacy and aggregated (apidiscovery v2) forms.

The app cluster's aggregator reads these to learn our kinds; ``kubectl api-resources`` and the
namespace controller (which must find every namespaced, deletable kind before a namespace can
go) depend on them. Pure builders over a Catalog snapshot.
"""

from __future__ import annotations

from typing import Any

from mcp_connector.connector.followers.catalog import Catalog, ServedResource

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def aggregated_form(accept: str) -> str | None:
    """Return the aggregated discovery media type ``accept`` prefers, or None for legacy JSON.

    Accept lists are ordered by preference (kubectl and the aggregator send v2, then v2beta1,
    then plain JSON), so the first matching entry wins.
    """
    for entry in accept.split(","):
        params = {p.strip().partition("=")[0]: p.strip().partition("=")[2] for p in entry.split(";")[1:]}
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") == "v2":
                return AGGREGATED_V2
            if params.get("v") == "v2beta1":
                return AGGREGATED_V2BETA1
    return None


def _group_doc(catalog: Catalog, group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in catalog.versions_of(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list(catalog: Catalog) -> dict[str, Any]:
    """``/apis``: an APIGroupList of every served group."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_doc(catalog, g) for g in catalog.groups()],
    }


def api_group(catalog: Catalog, group: str) -> dict[str, Any] | None:
    """``/apis/<group>``: an APIGroup, or None when the group is not served."""
    if group not in catalog.groups():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(catalog, group)}


def api_resource_list(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    """``/apis/<group>/<version>``: an APIResourceList, or None when not served."""
    resources = catalog.at(group, version)
    if not resources:
        return None
    out: list[dict[str, Any]] = []
    for r in resources:
        api = r.api
        entry: dict[str, Any] = {
            "name": api.plural,
            "singularName": api.singular,
            "namespaced": True,
            "kind": api.kind,
            "verbs": list(VERBS),
        }
        if api.short_names:
            entry["shortNames"] = list(api.short_names)
        if api.categories:
            entry["categories"] = list(api.categories)
        out.append(entry)
        if r.version.status_subresource:
            out.append(
                {
                    "name": f"{api.plural}/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": api.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}", "resources": out}


def _aggregated_resource(r: ServedResource) -> dict[str, Any]:
    api = r.api
    kind = {"group": api.group, "version": r.version.name, "kind": api.kind}
    entry: dict[str, Any] = {
        "resource": api.plural,
        "responseKind": kind,
        "scope": "Namespaced",
        "singularResource": api.singular,
        "verbs": list(VERBS),
    }
    if api.short_names:
        entry["shortNames"] = list(api.short_names)
    if api.categories:
        entry["categories"] = list(api.categories)
    if r.version.status_subresource:
        entry["subresources"] = [{"subresource": "status", "responseKind": kind, "verbs": list(STATUS_VERBS)}]
    return entry


def aggregated_discovery(catalog: Catalog, media_type: str) -> dict[str, Any]:
    """``/apis`` as an APIGroupDiscoveryList (v2 or v2beta1, same shape)."""
    api_version = "apidiscovery.k8s.io/v2beta1" if "v=v2beta1" in media_type else "apidiscovery.k8s.io/v2"
    items = []
    for group in catalog.groups():
        versions = [
            {
                "version": v,
                "resources": [_aggregated_resource(r) for r in catalog.at(group, v)],
                "freshness": "Current",
            }
            for v in catalog.versions_of(group)
        ]
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}
