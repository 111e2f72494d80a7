"""The disconnect hook against an in-memory control plane: Keep, Release, idempotency, interruption."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mcp_connector import upstream
from mcp_connector.core import contract
from mcp_connector.core.contract import AppRef
from mcp_connector_component import hook
from mcp_connector_component.hook import ClaimResource, DisconnectPlan, disconnect, plan_from_outputs

CLUSTER = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
NS = "mcp-claims"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: cp, cluster: {server: "https://cp.test"}}]
users: [{name: cp, user: {token: t}}]
contexts: [{name: cp, context: {cluster: cp, user: cp}}]
current-context: cp
"""
CLUSTERS = ClaimResource("k8s.starter.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster")
DATABASES = ClaimResource("db.example.org", "v1beta1", "postgresqlinstances", "PostgreSQLInstance")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            target[key] = _merge(dict(target.get(key) or {}), value)
        else:
            target[key] = value
    return target


class FakeControlPlane:
    """Stores claims per plural; serves list (with label selectors) and merge patch."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[str, dict[str, Any]]] = {"kubernetesclusters": {}, "postgresqlinstances": {}}
        self.patches = 0
        self.fail_patch_after: int | None = None

    def add(self, plural: str, ref: AppRef) -> str:
        obj = contract.to_control_plane({"spec": {"x": 1}}, ref, claim_namespace=NS)
        self.claims[plural][obj["metadata"]["name"]] = obj
        return str(obj["metadata"]["name"])

    def handler(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")  # apis g v namespaces ns plural [name]
        plural = parts[5]
        if plural not in self.claims:
            return httpx.Response(404, json={"kind": "Status", "message": "not found", "code": 404})
        store = self.claims[plural]
        if request.method == "GET":
            selector = request.url.params.get("labelSelector")
            wanted = dict(r.split("=", 1) for r in selector.split(",")) if selector else {}
            items = [
                o for o in store.values()
                if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]  # fmt: skip
            return httpx.Response(200, json={"items": items, "metadata": {}})
        assert request.method == "PATCH"
        assert request.headers["content-type"] == "application/merge-patch+json"
        if self.fail_patch_after is not None and self.patches >= self.fail_patch_after:
            raise httpx.ConnectError("connection reset")
        self.patches += 1
        name = parts[6]
        _merge(store[name], json.loads(request.content))
        return httpx.Response(200, json=store[name])


@pytest.fixture
def cp(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeControlPlane]:
    fake = FakeControlPlane()

    def new_client(access: Any, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=access.url, transport=httpx.MockTransport(fake.handler))

    monkeypatch.setattr(upstream, "new_client", new_client)
    fake.add("kubernetesclusters", AppRef(CLUSTER, "team-a", "prod"))
    fake.add("kubernetesclusters", AppRef(CLUSTER, "team-b", "dev"))
    fake.add("postgresqlinstances", AppRef(CLUSTER, "team-a", "db"))
    fake.add("kubernetesclusters", AppRef(OTHER, "team-a", "prod"))
    yield fake


def _plan(on_disconnect: str, claims: tuple[ClaimResource, ...] = (CLUSTERS, DATABASES)) -> DisconnectPlan:
    return DisconnectPlan(KUBECONFIG, NS, CLUSTER, on_disconnect, claims)


def _labelled(fake: FakeControlPlane, cluster: str) -> int:
    return sum(
        1
        for store in fake.claims.values()
        for o in store.values()
        if (o["metadata"].get("labels") or {}).get(contract.APP_CLUSTER_LABEL) == cluster
    )


async def test_keep_reports_and_changes_nothing(cp: FakeControlPlane) -> None:
    logs: list[str] = []
    report = await disconnect(_plan("Keep"), log=logs.append)
    assert cp.patches == 0
    assert sorted(report.kept) == [
        f"KubernetesCluster team-a/prod ({contract.control_plane_name(AppRef(CLUSTER, 'team-a', 'prod'))})",
        f"KubernetesCluster team-b/dev ({contract.control_plane_name(AppRef(CLUSTER, 'team-b', 'dev'))})",
        f"PostgreSQLInstance team-a/db ({contract.control_plane_name(AppRef(CLUSTER, 'team-a', 'db'))})",
    ]
    assert report.summary(_plan("Keep")).startswith("Keep: 3 claim(s) stay with their labels")
    assert _labelled(cp, CLUSTER) == 3


async def test_release_swaps_labels_for_annotations(cp: FakeControlPlane) -> None:
    report = await disconnect(_plan("Release"), log=lambda _: None)
    assert len(report.released) == 3 and report.released_earlier == []
    assert _labelled(cp, CLUSTER) == 0
    assert _labelled(cp, OTHER) == 1, "another cluster's claims are untouched"
    prod = cp.claims["kubernetesclusters"][contract.control_plane_name(AppRef(CLUSTER, "team-a", "prod"))]
    assert prod["metadata"]["annotations"] == contract.release_annotations(AppRef(CLUSTER, "team-a", "prod"))
    assert not any(k.startswith(contract.LABEL_DOMAIN) for k in prod["metadata"].get("labels") or {})
    assert sum(len(s) for s in cp.claims.values()) == 4, "no claim is deleted"


async def test_release_twice_is_a_no_op(cp: FakeControlPlane) -> None:
    await disconnect(_plan("Release"), log=lambda _: None)
    patches = cp.patches
    report = await disconnect(_plan("Release"), log=lambda _: None)
    assert cp.patches == patches
    assert report.released == [] and len(report.released_earlier) == 3
    assert "released 0 claim(s), 3 already released" in report.summary(_plan("Release"))


async def test_interrupted_release_converges(cp: FakeControlPlane) -> None:
    cp.fail_patch_after = 1
    with pytest.raises(upstream.ControlPlaneUnreachable):
        await disconnect(_plan("Release"), log=lambda _: None)
    assert _labelled(cp, CLUSTER) == 2
    cp.fail_patch_after = None
    report = await disconnect(_plan("Release"), log=lambda _: None)
    assert len(report.released) == 2 and len(report.released_earlier) == 1
    assert _labelled(cp, CLUSTER) == 0


async def test_claim_kind_gone_from_the_control_plane_is_skipped(cp: FakeControlPlane) -> None:
    gone = ClaimResource("cache.example.org", "v1alpha1", "rediscaches", "RedisCache")
    report = await disconnect(_plan("Release", (gone, CLUSTERS)), log=lambda _: None)
    assert report.skipped_kinds == ["rediscaches.cache.example.org"]
    assert len(report.released) == 2


async def test_pause_env_sleeps_after_the_first_claim(cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hook.PAUSE_ENV, "30")
    task = asyncio.ensure_future(disconnect(_plan("Release"), log=lambda _: None))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if cp.patches:
            break
    await asyncio.sleep(0.05)
    assert cp.patches == 1, "paused after the first claim"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_bad_on_disconnect_is_refused(cp: FakeControlPlane) -> None:
    with pytest.raises(hook.DisconnectError, match="must be one of Keep, Release"):
        await disconnect(_plan("Delete"))


async def test_plan_from_guard_outputs() -> None:
    import pulumi

    plan = _plan("Release")
    key = hook.new_seal_key()
    sealed = hook.seal(plan.to_json(), key)
    outputs = {"metadata": {"annotations": {hook.PLAN_ANNOTATION: sealed}}, "data": {hook.SEAL_KEY: key}}
    assert await plan_from_outputs(outputs) == plan
    secret_outputs = {**outputs, "data": pulumi.Output.secret({hook.SEAL_KEY: key})}
    assert await plan_from_outputs(secret_outputs) == plan
    with pytest.raises(hook.DisconnectError):
        await plan_from_outputs({"metadata": {"annotations": {}}})
    with pytest.raises(hook.DisconnectError, match="does not match its key"):
        await plan_from_outputs({**outputs, "data": {hook.SEAL_KEY: hook.new_seal_key()}})


def test_sealing_is_deterministic_and_hides_the_credential() -> None:
    key = hook.new_seal_key()
    text = _plan("Keep").to_json()
    assert hook.seal(text, key) == hook.seal(text, key), "same plan, same annotation: no diff"
    assert "token" not in hook.seal(text, key) and "cp.test" not in hook.seal(text, key)
    assert hook.unseal(hook.seal(text, key), key) == text


async def test_namespaced_xrs_are_kept_and_released_like_claims(cp: FakeControlPlane) -> None:
    """A v2 XR API in the plan (``nxr-`` names, same labels) goes through Keep and Release as claims do."""
    buckets = ClaimResource("storage.example.org", "v1alpha1", "buckets", "Bucket")
    cp.claims["buckets"] = {}
    ref = AppRef(CLUSTER, "team-a", "assets")
    obj = contract.to_control_plane(
        {"spec": {"region": "eu"}}, ref, claim_namespace=NS, flavor=contract.Flavor.NAMESPACED_XR
    )
    hashed = obj["metadata"]["name"]
    assert hashed.startswith("nxr-")
    cp.claims["buckets"][hashed] = obj
    plan = _plan("Keep", (CLUSTERS, DATABASES, buckets))
    kept = await disconnect(plan, log=lambda _: None)
    assert f"Bucket team-a/assets ({hashed})" in kept.kept and cp.patches == 0
    released = await disconnect(DisconnectPlan(KUBECONFIG, NS, CLUSTER, "Release", plan.claims), log=lambda _: None)
    assert f"Bucket team-a/assets ({hashed})" in released.released
    stored = cp.claims["buckets"][hashed]
    assert stored["metadata"]["annotations"] == contract.release_annotations(ref)
    assert not any(k.startswith(contract.LABEL_DOMAIN) for k in stored["metadata"].get("labels") or {})
