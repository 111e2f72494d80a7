"""Which app Secret copies a cluster's claims ask for (connector.secrets_sync.wanted_copies)."""

from __future__ import annotations

from typing import Any

from connector_samples import CLUSTER, OTHER_CLUSTER, cp_claim

from mcp_connector.connector.followers.secrets_sync import wanted_copies


def _asking(name: str, secret: str, created: str, cluster: str = CLUSTER) -> dict[str, Any]:
    claim = cp_claim(name, "team", cluster, writeConnectionSecretToRef={"name": secret})
    claim["metadata"]["creationTimestamp"] = created
    return claim


def test_each_claim_gets_the_copy_it_names_and_other_clusters_none() -> None:
    mine, theirs = (
        _asking("a", "a-conn", "2026-11-29T01:00:00Z"),
        _asking("b", "b-conn", "2026-11-29T01:00:00Z", OTHER_CLUSTER),
    )
    wanted = wanted_copies([mine, theirs], CLUSTER)
    assert set(wanted) == {("team", "a-conn")}
    source, claim = wanted[("team", "a-conn")]
    assert claim is mine and source == mine["spec"]["writeConnectionSecretToRef"]["name"]


def test_two_claims_naming_one_secret_leave_it_to_the_oldest_in_any_order() -> None:
    old = _asking("old", "shared", "2026-11-29T01:00:00Z")
    new = _asking("new", "shared", "2026-11-29T02:00:00Z")
    for claims in ([old, new], [new, old]):
        assert wanted_copies(claims, CLUSTER)[("team", "shared")][1] is old
    tie = _asking("same-age", "shared", "2026-11-29T02:00:00Z")
    winners = {id(wanted_copies(claims, CLUSTER)[("team", "shared")][1]) for claims in ([new, tie], [tie, new])}
    assert len(winners) == 1, "the same age: one of them, the same whatever the order"
