"""Control-plane responses come back app-side, and nothing outside the request's scope leaks."""

from __future__ import annotations

import pytest
from connector_samples import CLAIM_NS, CLUSTER, OTHER_CLUSTER, cp_claim

from mcp_connector.connector.api.translate import (
    Scope,
    body_to_app,
    event_to_app,
    object_to_app,
    upstream_include_object,
)
from mcp_connector.core import contract


def test_object_in_scope_is_translated() -> None:
    out = object_to_app(cp_claim("a", "team-a"), Scope(CLUSTER, "team-a"))
    assert out is not None
    assert out["metadata"]["name"] == "a" and out["metadata"]["namespace"] == "team-a"
    assert out["metadata"]["labels"] == {"team": "a"}


def test_objects_of_other_clusters_and_namespaces_are_dropped() -> None:
    assert object_to_app(cp_claim("a", "team-a", OTHER_CLUSTER), Scope(CLUSTER, None)) is None
    assert object_to_app(cp_claim("a", "team-b"), Scope(CLUSTER, "team-a")) is None
    assert object_to_app({"metadata": {"name": "unlabelled"}}, Scope(CLUSTER, None)) is None


def test_lists_are_filtered_item_by_item() -> None:
    body = {
        "kind": "KubernetesClusterList",
        "metadata": {"resourceVersion": "9"},
        "items": [cp_claim("a"), cp_claim("b", cluster=OTHER_CLUSTER), cp_claim("c", "other")],
    }
    out = body_to_app(body, Scope(CLUSTER, "default"))
    assert out is not None
    assert [i["metadata"]["name"] for i in out["items"]] == ["a"]
    assert out["metadata"] == {"resourceVersion": "9"}


def test_tables_show_app_names_and_hide_other_rows() -> None:
    mine = cp_claim("mine", writeConnectionSecretToRef={"name": "mine-kubeconfig"})
    theirs = cp_claim("theirs", cluster=OTHER_CLUSTER)
    secret = mine["spec"]["writeConnectionSecretToRef"]["name"]
    table = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name"},
            {"name": "READY"},
            {"name": "SECRET"},
        ],
        "rows": [
            {"cells": [mine["metadata"]["name"], "True", secret], "object": {"kind": "PartialObjectMetadata", **mine}},
            {"cells": [theirs["metadata"]["name"], "True", ""], "object": theirs},
        ],
    }
    out = body_to_app(table, Scope(CLUSTER, None))
    assert out is not None
    assert [r["cells"] for r in out["rows"]] == [["mine", "True", "mine-kubeconfig"]]
    assert out["rows"][0]["object"]["metadata"]["namespace"] == "default"
    assert contract.CLAIM_NAME_PREFIX not in str(out)


def test_watch_events() -> None:
    scope = Scope(CLUSTER, "default")
    added = event_to_app({"type": "ADDED", "object": cp_claim("a")}, scope, CLAIM_NS)
    assert added is not None and added["object"]["metadata"]["name"] == "a"
    assert event_to_app({"type": "ADDED", "object": cp_claim("a", cluster=OTHER_CLUSTER)}, scope, CLAIM_NS) is None
    bookmark = {
        "type": "BOOKMARK",
        "object": {
            "kind": "KubernetesCluster",
            "metadata": {"resourceVersion": "5", "annotations": {"k8s.io/initial-events-end": "true"}},
        },
    }
    assert event_to_app(bookmark, scope, CLAIM_NS) == bookmark
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": f'in namespace "{CLAIM_NS}"'}}
    out = event_to_app(error, scope, CLAIM_NS)
    assert out is not None and CLAIM_NS not in out["object"]["message"]


def table_of(*claims: dict[str, object]) -> dict[str, object]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": [{"name": "Name", "type": "string", "format": "name"}],
        "rows": [{"cells": [c["metadata"]["name"]], "object": c} for c in claims],  # type: ignore[index]
    }


@pytest.mark.parametrize(
    ("requested", "upstream"),
    [(None, "Metadata"), ("", "Metadata"), ("None", "Metadata"), ("Metadata", "Metadata"), ("Object", "Object"),
     ("Bogus", "Bogus")],
)  # fmt: skip
def test_include_object_asks_upstream_for_enough_to_scope_rows(requested: str | None, upstream: str) -> None:
    assert upstream_include_object(requested) == upstream


def test_table_rows_follow_include_object() -> None:
    scope = Scope(CLUSTER, None)
    full = body_to_app(table_of(cp_claim("a")), scope, "Object")
    assert full is not None and full["rows"][0]["object"]["spec"]["id"] == "a"
    assert full["rows"][0]["object"]["metadata"]["name"] == "a"
    none = body_to_app(table_of(cp_claim("a"), cp_claim("b", cluster=OTHER_CLUSTER)), scope, "None")
    assert none is not None and [r["object"] for r in none["rows"]] == [None]


def test_bookmarks_only_reach_clients_that_asked() -> None:
    bookmark = {"type": "BOOKMARK", "object": {"kind": "KubernetesCluster", "metadata": {"resourceVersion": "5"}}}
    assert event_to_app(bookmark, Scope(CLUSTER, "default"), CLAIM_NS, bookmarks=False) is None


def test_watch_errors_are_rewritten_exactly() -> None:
    message = f'claims in namespace "{CLAIM_NS}" are gone; see {CLAIM_NS}-archive'
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": message}}
    out = event_to_app(error, Scope(CLUSTER, "team-a"), CLAIM_NS)
    assert out is not None
    assert out["object"]["message"] == f'claims in namespace "team-a" are gone; see {CLAIM_NS}-archive'
    ref = contract.AppRef(CLUSTER, "team-a", "db")
    hashed = contract.control_plane_name(ref)
    named = {"type": "ERROR", "object": {"kind": "Status", "message": f'"{hashed}" in namespace "{CLAIM_NS}"'}}
    out = event_to_app(named, Scope(CLUSTER, "team-a"), CLAIM_NS, ref=ref)
    assert out is not None and out["object"]["message"] == '"db" in namespace "team-a"'
