"""A new leader syncs the copies its warm indexes show missing or stale before the full reconcile
(connector.followers.secrets_index, SecretSync.run)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from connector_samples import CLAIM_NS, CLUSTER, cp_claim

from mcp_connector import upstream
from mcp_connector.connector.followers import secrets_index, secrets_sync
from mcp_connector.connector.followers.secrets_sync import (
    MANAGED_LABEL,
    SOURCE_ANNOTATION,
    SOURCE_VERSION_ANNOTATION,
    Key,
    wanted_copies,
)
from mcp_connector.core import names


def _claim(i: int) -> dict[str, Any]:
    claim = cp_claim(f"c{i:03d}", "team", writeConnectionSecretToRef={"name": f"c{i:03d}-conn"})
    claim["metadata"].update(uid=f"uid-{i}", creationTimestamp="2026-12-06T08:00:00Z")
    return claim


def _key(i: int) -> Key:
    return names.parse_object_name("team"), names.parse_secret_name(f"c{i:03d}-conn")


def _source(claim: dict[str, Any], version: str = "10") -> dict[str, Any]:
    name = claim["spec"]["writeConnectionSecretToRef"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": CLAIM_NS,
            "resourceVersion": version,
            "ownerReferences": [{"controller": True, "uid": claim["metadata"]["uid"], "kind": "KubernetesCluster"}],
        },
        "data": {"password": "cw=="},
    }


def _copy_of(claim: dict[str, Any], source: dict[str, Any], i: int) -> dict[str, Any]:
    copy = secrets_sync.app_secret(source, _key(i), CLUSTER, CLAIM_NS)
    copy["metadata"].update(uid=f"copy-{i}", resourceVersion="1")
    return copy


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return secrets_index._kept(obj["metadata"])


# ------------------------------------------------------------------------------- the diff


def test_the_diff_names_missing_and_stale_copies_and_nothing_up_to_date() -> None:
    claims = [_claim(i) for i in range(7)]
    sources = {i: _source(c) for i, c in enumerate(claims)}
    copies = {i: _copy_of(claims[i], sources[i], i) for i in range(7)}
    del copies[1]  # missing
    sources[2] = _source(claims[2], version="11")  # the source changed since the copy
    copies[3]["metadata"]["annotations"][SOURCE_ANNOTATION] = f"{CLAIM_NS}/another"  # made from another
    del sources[4]  # the source is gone, the copy is not
    sources[5]["metadata"]["ownerReferences"][0]["uid"] = "someone-else"  # written for another claim
    del sources[6], copies[6]  # neither yet: nothing to do
    orphan = _copy_of(claims[0], sources[0], 99)  # a copy no claim asks for: the full pass decides

    first = secrets_index.first_to_sync(
        wanted_copies(claims, CLUSTER),
        {s["metadata"]["name"]: _meta(s) for s in sources.values()},
        {**{_key(i): _meta(c) for i, c in copies.items()}, _key(99): _meta(orphan)},
        CLAIM_NS,
    )
    assert first == {_key(1), _key(2), _key(3), _key(4), _key(5)}


def test_a_copy_from_before_the_version_annotation_counts_as_stale_once() -> None:
    claim = _claim(0)
    source = _source(claim)
    copy = _copy_of(claim, source, 0)
    del copy["metadata"]["annotations"][SOURCE_VERSION_ANNOTATION]
    wanted = wanted_copies([claim], CLUSTER)
    sources = {source["metadata"]["name"]: _meta(source)}
    assert secrets_index.first_to_sync(wanted, sources, {_key(0): _meta(copy)}, CLAIM_NS) == {_key(0)}
    rewritten = _copy_of(claim, source, 0)
    assert not secrets_sync._same(copy, rewritten), "the copy is rewritten with the version it was made from"
    assert secrets_index.first_to_sync(wanted, sources, {_key(0): _meta(rewritten)}, CLAIM_NS) == set()


def test_a_copy_records_the_source_version_and_a_new_version_rewrites_it() -> None:
    claim = _claim(0)
    old, new = _source(claim, "10"), _source(claim, "12")
    copy = _copy_of(claim, old, 0)
    assert copy["metadata"]["annotations"][SOURCE_VERSION_ANNOTATION] == "10"
    assert not secrets_sync._same(copy, secrets_sync.app_secret(new, _key(0), CLUSTER, CLAIM_NS))
    assert secrets_sync._same(copy, secrets_sync.app_secret(old, _key(0), CLUSTER, CLAIM_NS))


# ------------------------------------------------------------------------------- the order


class _Clusters:
    """Both clusters' Secrets, answering the follower's calls and recording them in order."""

    def __init__(self, claims: list[dict[str, Any]]) -> None:
        self.sources = {c["spec"]["writeConnectionSecretToRef"]["name"]: _source(c) for c in claims}
        self.copies = {_key(i): _copy_of(c, _source(c), i) for i, c in enumerate(claims)}
        self.calls: list[tuple[str, str]] = []

    async def request(self, client: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.calls.append((method, str(path)))
        if client == "cp":
            name = str(path).rsplit("/", 1)[1]
            if name not in self.sources:
                raise upstream.ControlPlaneRejected(str(path), 404, {"reason": "NotFound"})
            return self.sources[name]
        if method == "POST":
            body = kw["json_body"]
            self.copies[(body["metadata"]["namespace"], body["metadata"]["name"])] = body
        return {}

    async def list_all(self, client: Any, path: str, **kw: Any) -> list[dict[str, Any]]:
        self.calls.append(("LIST", str(path)))
        assert client == "app" and (kw.get("params") or {}).get("labelSelector") == f"{MANAGED_LABEL}={CLUSTER}"
        selector = (kw.get("params") or {}).get("fieldSelector")
        if selector:
            return [c for k, c in self.copies.items() if f"metadata.name={k[1]}" == selector and k[0] in str(path)]
        return list(self.copies.values())


def _leading(monkeypatch: pytest.MonkeyPatch, clusters: _Clusters, claims: list[dict[str, Any]]) -> Any:
    monkeypatch.setattr(upstream, "request", clusters.request)
    monkeypatch.setattr(upstream, "list_all", clusters.list_all)
    monkeypatch.setattr(secrets_sync, "cached_claims", lambda rt: claims)
    return type("Rt", (), {"control_plane": "cp", "app_cluster": "app", "cluster_id": CLUSTER,
                           "claim_namespace": CLAIM_NS, "catalog_loaded": True})()  # fmt: skip


def _warm(clusters: _Clusters) -> secrets_sync.FirstToSync:
    """The indexes as a replica keeps them: what the two clusters hold now, metadata only."""
    sources = {name: _meta(s) for name, s in clusters.sources.items()}
    copies = {k: _meta(c) for k, c in clusters.copies.items()}
    return lambda wanted: secrets_index.first_to_sync(wanted, sources, copies, CLAIM_NS)


async def _until(sync: secrets_sync.SecretSync, done: Any) -> None:
    sync.request_full()  # what LeaderTasks' on_start hook does when leadership begins
    task = asyncio.create_task(sync.run(debounce=0.0))
    try:
        async with asyncio.timeout(5):
            while not done():
                await asyncio.sleep(0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("count", [3, 300])
def test_a_new_leader_copies_what_is_missing_before_the_full_reconcile(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    claims = [_claim(i) for i in range(count)]
    clusters = _Clusters(claims)
    gone = count - 1  # last in the full pass's order
    del clusters.copies[_key(gone)]  # deleted while nobody led
    sync = secrets_sync.SecretSync(_leading(monkeypatch, clusters, claims), every=60)
    sync.first = _warm(clusters)
    full_list = ("LIST", "/api/v1/secrets")

    def full_pass_done() -> bool:
        after = clusters.calls[clusters.calls.index(full_list) :] if full_list in clusters.calls else []
        return sum(c[0] == "GET" for c in after) >= count

    asyncio.run(_until(sync, full_pass_done))

    created = clusters.calls.index(("POST", "/api/v1/namespaces/team/secrets"))
    assert created < clusters.calls.index(full_list), "the missing copy comes before the full reconcile"
    # Before it: one narrowed LIST of that copy and one GET of its source, however many claims.
    assert clusters.calls[:created] == [
        ("LIST", "/api/v1/namespaces/team/secrets"),
        ("GET", f"/api/v1/namespaces/{CLAIM_NS}/secrets/{claims[gone]['spec']['writeConnectionSecretToRef']['name']}"),
    ]
    assert _key(gone) in clusters.copies
    gets = [c for c in clusters.calls[clusters.calls.index(full_list) :] if c[0] == "GET"]
    assert len(gets) >= count, "then the full reconcile reads every source"


def test_without_warm_indexes_the_full_reconcile_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    claims = [_claim(i) for i in range(3)]
    clusters = _Clusters(claims)
    del clusters.copies[_key(2)]
    sync = secrets_sync.SecretSync(_leading(monkeypatch, clusters, claims), every=60)
    sync.first = lambda wanted: None  # an index not listed yet, or its watch lost

    asyncio.run(_until(sync, lambda: _key(2) in clusters.copies))

    assert clusters.calls[0] == ("LIST", "/api/v1/secrets")


def test_nothing_stale_means_straight_to_the_full_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    claims = [_claim(i) for i in range(3)]
    clusters = _Clusters(claims)
    sync = secrets_sync.SecretSync(_leading(monkeypatch, clusters, claims), every=60)
    sync.first = _warm(clusters)

    asyncio.run(_until(sync, lambda: len(clusters.calls) >= 4))

    assert clusters.calls[0] == ("LIST", "/api/v1/secrets")
    assert not [c for c in clusters.calls if c[0] in ("POST", "PUT", "DELETE")]


# ------------------------------------------------------------------------------- the index


class _Collection:
    """A collection answering metadata lists and watches, and recording every method used."""

    def __init__(self, items: list[dict[str, Any]], events: list[list[dict[str, Any]]]) -> None:
        self.items, self.events = items, events
        self.methods: list[str] = []
        self.watches: list[dict[str, str]] = []
        self.lists = 0

    async def request(self, client: Any, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.methods.append(method)
        assert "PartialObjectMetadataList" in kw["accept"], "metadata only: no Secret's data travels"
        self.lists += 1
        return {"metadata": {"resourceVersion": "100"}, "items": self.items}

    @contextlib.asynccontextmanager
    async def watch(self, client: Any, path: str, **kw: Any) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        self.methods.append("WATCH")
        self.watches.append(dict(kw["params"]))
        assert "PartialObjectMetadata" in kw["accept"]
        batch = self.events.pop(0) if self.events else []

        async def stream() -> AsyncIterator[dict[str, Any]]:
            for event in batch:
                yield event
            if not self.events:
                await asyncio.Event().wait()  # an open watch with nothing more to say

        yield stream()


def _secret(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": CLAIM_NS, "resourceVersion": version, "uid": name}}


def test_the_index_follows_lists_watches_and_relists_after_a_lost_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    changed: list[str] = []
    relisted: list[bool] = []
    collection = _Collection(
        [_secret("a", "90"), _secret("b", "91")],
        [
            [
                {"type": "MODIFIED", "object": _secret("a", "101")},
                {"type": "ADDED", "object": _secret("c", "102")},
                {"type": "DELETED", "object": _secret("b", "103")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "104"}}},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
            ],
            [],
        ],
    )
    monkeypatch.setattr(upstream, "request", collection.request)
    monkeypatch.setattr(upstream, "watch", collection.watch)
    client: Any = "cp"
    index: secrets_index.MetadataIndex[str] = secrets_index.MetadataIndex(
        "sources",
        client,
        upstream.api_path("api", "v1", "namespaces", CLAIM_NS, "secrets"),
        key=secrets_index._source_name,
        changed=changed.append,
        relisted=lambda: relisted.append(True),
    )
    seen: dict[str, dict[str, str]] = {}

    async def scenario() -> None:
        task = asyncio.create_task(index.run())
        try:
            async with asyncio.timeout(5):
                while not changed:
                    await asyncio.sleep(0)
                await asyncio.sleep(0)
                seen.update({k: {"rv": v["resourceVersion"]} for k, v in index.items.items()})
                while not relisted or len(collection.watches) < 2:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert changed == ["a", "c", "b"]
    assert seen == {"a": {"rv": "101"}, "c": {"rv": "102"}}, "the watch's changes, applied in order"
    assert collection.watches[0]["resourceVersion"] == "100", "watched from the version listed"
    assert collection.lists == 2 and relisted == [True], "a 410 relists and asks for a full reconcile"
    assert index.ready and set(index.items) == {"a", "b"}, "the relist replaced the index"
    assert set(collection.methods) <= {"GET", "WATCH"}, "a candidate only reads"
