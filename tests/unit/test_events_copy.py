"""Claim events copied into the app cluster (connector.followers.events)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from connector_samples import CLAIM_NS, CLUSTER, OTHER_CLUSTER, cp_claim

from mcp_connector import upstream
from mcp_connector.connector.cache.history import Event
from mcp_connector.connector.followers import events
from mcp_connector.core import contract


def _claim(name: str, uid: str, cluster: str = CLUSTER, namespace: str = "team") -> dict[str, Any]:
    claim = cp_claim(name, namespace, cluster)
    claim["metadata"]["uid"] = uid
    return claim


def _source(claim: dict[str, Any], uid: str = "ev-1", count: int = 3) -> dict[str, Any]:
    hashed = claim["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{hashed}.17a", "namespace": CLAIM_NS, "uid": uid, "resourceVersion": "9"},
        "involvedObject": {
            "apiVersion": claim["apiVersion"],
            "kind": claim["kind"],
            "name": hashed,
            "namespace": CLAIM_NS,
            "uid": claim["metadata"]["uid"],
            "resourceVersion": "5",
        },
        "reason": "ConfigureCompositeResource",
        "type": "Warning",
        "count": count,
        "firstTimestamp": "2026-12-06T04:00:00Z",
        "lastTimestamp": "2026-12-06T04:01:00Z",
        "source": {"component": "offered/compositeresourcedefinition.apiextensions.crossplane.io"},
        "message": f'cannot compose {hashed}: no Composition in namespace "{CLAIM_NS}" matches',
    }


def test_the_copy_names_the_app_side_claim_and_keeps_what_describe_shows() -> None:
    claim = _claim("my-cluster", "0b1c-uid")
    copy = events.app_event(_source(claim), claim, cluster_id=CLUSTER, claim_namespace=CLAIM_NS)
    assert copy is not None
    assert copy["metadata"]["namespace"] == "team"
    assert copy["metadata"]["labels"] == {events.COPY_LABEL: CLUSTER, events.CLAIM_UID_LABEL: "0b1c-uid"}
    assert copy["involvedObject"] == {
        "apiVersion": claim["apiVersion"],
        "kind": "KubernetesCluster",
        "name": "my-cluster",
        "namespace": "team",
        "uid": "0b1c-uid",
    }
    for key in ("reason", "type", "count", "firstTimestamp", "lastTimestamp", "source"):
        assert copy[key] == _source(claim)[key]
    assert copy["message"] == 'cannot compose my-cluster: no Composition in namespace "team" matches'
    assert claim["metadata"]["name"] not in str(copy) and CLAIM_NS not in str(copy)


def test_the_copy_name_comes_from_the_source_event_alone() -> None:
    claim = _claim("my-cluster", "u1")
    first = events.app_event(_source(claim, "ev-1"), claim, cluster_id=CLUSTER, claim_namespace=CLAIM_NS)
    again = events.app_event(_source(claim, "ev-1", 9), claim, cluster_id=CLUSTER, claim_namespace=CLAIM_NS)
    other = events.app_event(_source(claim, "ev-2"), claim, cluster_id=CLUSTER, claim_namespace=CLAIM_NS)
    assert first and again and other
    assert first["metadata"]["name"] == again["metadata"]["name"] != other["metadata"]["name"]
    assert first["metadata"]["name"].startswith("my-cluster.")
    long = contract.AppRef(CLUSTER, "team", "a" * 199 + "-" + "b" * 50)
    assert not events.copy_name(long, "x").split(".")[0].endswith("-")
    assert len(events.copy_name(long, "x")) <= 253


def test_events_of_another_cluster_or_object_are_never_copied() -> None:
    mine, theirs = _claim("a", "u-mine"), _claim("a", "u-theirs", OTHER_CLUSTER)
    assert events.app_event(_source(theirs), theirs, cluster_id=CLUSTER, claim_namespace=CLAIM_NS) is None
    assert events.app_event(_source(theirs), mine, cluster_id=CLUSTER, claim_namespace=CLAIM_NS) is None
    bad = _claim("a", "u-mine")
    bad["metadata"]["uid"] = "x,involvedObject.name=y"
    assert events.claim_uid(bad) is None
    assert events.app_event(_source(bad), bad, cluster_id=CLUSTER, claim_namespace=CLAIM_NS) is None


def test_a_copy_is_patched_only_with_what_changed() -> None:
    claim = _claim("a", "u1")
    old = events.app_event(_source(claim, count=3), claim, cluster_id=CLUSTER, claim_namespace=CLAIM_NS)
    new = events.app_event(_source(claim, count=4), claim, cluster_id=CLUSTER, claim_namespace=CLAIM_NS)
    assert old and new
    assert events.patch_for(old, old) is None
    assert events.patch_for(old, new) == {"count": 4}


def test_the_bucket_allows_a_burst_then_one_per_refill() -> None:
    bucket = events.Bucket(burst=3, refill=10, tokens=3, at=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(5.0)
    assert bucket.take(10.5)
    assert not bucket.take(11.0)


def test_a_refusal_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    refusals = events.Refusals()
    error = upstream.ControlPlaneRejected("https://app/api/v1/events", 403, {"message": "events is forbidden"})
    with caplog.at_level(logging.INFO, logger=events.__name__):
        for _ in range(3):
            refusals.refused("app", error)
        refusals.fine("app")
        refusals.fine("app")
    assert [r.getMessage() for r in caplog.records] == ["event copy refused", "event copy works again"]


class _Clusters:
    """What the two clusters hold, answering the follower's requests (upstream.request, list_all)."""

    def __init__(self, sources: list[dict[str, Any]], *, forbid_app: bool = False) -> None:
        self.sources = sources
        self.copies: dict[tuple[str, str], dict[str, Any]] = {}
        self.forbid_app = forbid_app
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    async def request(self, client: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        params = dict(kw.get("params") or {})
        self.calls.append((method, str(path), params))
        if client == "cp":
            uid = params["fieldSelector"].removeprefix("involvedObject.uid=")
            return {"items": [s for s in self.sources if s["involvedObject"]["uid"] == uid]}
        if self.forbid_app:
            raise upstream.ControlPlaneRejected(str(path), 403, {"message": "events is forbidden"})
        namespace = str(path).split("/")[4]
        if method == "POST":
            body = kw["json_body"]
            self.copies[(namespace, body["metadata"]["name"])] = body
        elif method == "PUT":
            self.copies[(namespace, str(path).rsplit("/", 1)[1])] = kw["json_body"]
        elif method == "DELETE":
            del self.copies[(namespace, str(path).rsplit("/", 1)[1])]
        return {}

    async def list_all(self, client: Any, path: str, **kw: Any) -> list[dict[str, Any]]:
        self.calls.append(("LIST", str(path), dict(kw.get("params") or {})))
        if self.forbid_app:
            raise upstream.ControlPlaneRejected(str(path), 403, {"message": "events is forbidden"})
        return list(self.copies.values())


def _mirror(
    monkeypatch: pytest.MonkeyPatch, clusters: _Clusters, claims: list[dict[str, Any]], every: float = 1
) -> events.EventMirror:
    monkeypatch.setattr(upstream, "request", clusters.request)
    monkeypatch.setattr(upstream, "list_all", clusters.list_all)
    monkeypatch.setattr(events.secrets_sync, "cached_claims", lambda rt: claims)
    rt: Any = type("Rt", (), {"control_plane": "cp", "app_cluster": "app", "cluster_id": CLUSTER,
                              "claim_namespace": CLAIM_NS, "catalog_loaded": True})()  # fmt: skip
    return events.EventMirror(rt, every=every)


def test_a_pass_copies_updates_and_removes_with_the_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    claim = _claim("a", "u1")
    clusters = _Clusters([_source(claim, count=1)])
    claims = [claim]
    mirror = _mirror(monkeypatch, clusters, claims)
    assert asyncio.run(mirror.sync_once())
    assert [c["involvedObject"]["name"] for c in clusters.copies.values()] == ["a"]
    cp_lists = [c for c in clusters.calls if c[0] == "GET"]
    assert cp_lists and all(c[2]["fieldSelector"] == "involvedObject.uid=u1" for c in cp_lists)
    assert all(c[1] == f"/api/v1/namespaces/{CLAIM_NS}/events" for c in cp_lists), "never another namespace"

    clusters.calls.clear()
    assert asyncio.run(mirror.sync_once())
    assert not [c for c in clusters.calls if c[0] in ("POST", "PUT")], "nothing changed, nothing written"

    clusters.sources = [_source(claim, count=5)]
    assert asyncio.run(mirror.sync_once())
    assert [c["count"] for c in clusters.copies.values()] == [5]

    claims.clear()
    assert asyncio.run(mirror.sync_once())
    assert clusters.copies == {}


def test_a_claim_in_a_failure_loop_is_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    claim = _claim("a", "u1")
    clusters = _Clusters([_source(claim, f"ev-{i}") for i in range(40)])
    mirror = _mirror(monkeypatch, clusters, [claim])
    assert asyncio.run(mirror.sync_once())
    assert len(clusters.copies) == 25


def test_a_missing_permission_backs_off_without_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    claim = _claim("a", "u1")
    clusters = _Clusters([_source(claim)], forbid_app=True)
    mirror = _mirror(monkeypatch, clusters, [claim])
    assert not asyncio.run(mirror.sync_once())
    assert "app-cluster events list" in mirror.refusals.seen
    assert "forbidden" in mirror.refusals.seen["app-cluster events list"]


def _changed(mirror: events.EventMirror, claim: dict[str, Any], kind: str = "MODIFIED") -> None:
    """What the cache tells the follower when ``claim`` changed."""
    entry: Any = type("Entry", (), {"raw": claim})()
    mirror.claim_changed(None, Event(kind, 1, entry, None))  # type: ignore[arg-type]


def test_a_pass_of_its_own_reads_only_the_changed_claims_and_removes_only_their_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = _claim("a", "u1"), _claim("b", "u2")
    clusters = _Clusters([_source(a, "ev-a"), _source(b, "ev-b")])
    claims = [a, b]
    mirror = _mirror(monkeypatch, clusters, claims)
    assert asyncio.run(mirror.sync_once())
    assert len(clusters.copies) == 2
    clusters.calls.clear()
    claims.remove(b)  # b went: its copy goes in b's own pass, not in a's
    assert asyncio.run(mirror.sync_once({"u1"}))
    assert [c[2]["fieldSelector"] for c in clusters.calls if c[0] == "GET"] == ["involvedObject.uid=u1"]
    assert len(clusters.copies) == 2, "b's copy is not a's pass's business"
    assert asyncio.run(mirror.sync_once({"u2"}))
    assert [c["involvedObject"]["name"] for c in clusters.copies.values()] == ["a"]


def test_a_change_is_looked_at_twice_and_a_burst_becomes_one_full_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    mirror = _mirror(monkeypatch, _Clusters([]), [])
    _changed(mirror, _claim("a", "u1"))
    assert mirror._due(100.5) == set()
    assert mirror._due(100 + events.SETTLE_SECONDS) == {"u1"}
    assert mirror._due(100 + events.SETTLE_SECONDS) == set(), "each look once"
    assert mirror._due(100 + events.SECOND_LOOK_SECONDS) == {"u1"}
    assert mirror._next_look() is None
    for n in range(events.PROMPT_KEPT + 5):
        _changed(mirror, _claim(f"c{n}", f"uid-{n}"))
    assert len(mirror._looks) == events.PROMPT_KEPT and mirror._full_soon


def test_the_loop_copies_a_changed_claims_event_long_before_the_next_full_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "SETTLE_SECONDS", 0.01)
    monkeypatch.setattr(events, "SECOND_LOOK_SECONDS", 0.02)
    claim = _claim("a", "u1")
    clusters = _Clusters([])
    mirror = _mirror(monkeypatch, clusters, [claim], every=3600)  # full passes: one at start, one in an hour

    async def scenario() -> None:
        task = asyncio.create_task(mirror.run())
        try:
            async with asyncio.timeout(5):
                while not [c for c in clusters.calls if c[0] == "LIST"]:
                    await asyncio.sleep(0.005)  # the first full pass ran
                clusters.sources = [_source(claim, "ev-late")]  # Crossplane records, the claim changes
                _changed(mirror, claim)
                while not clusters.copies:
                    await asyncio.sleep(0.005)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert [c["involvedObject"]["name"] for c in clusters.copies.values()] == ["a"]
