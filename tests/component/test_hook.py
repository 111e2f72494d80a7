"""The disconnect against an in-memory control plane: Keep, Release, dry runs, idempotency, interruption."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pulumi
import pytest
from component_testdata import CLAIM_APIS

from mcp_connector import upstream
from mcp_connector.core import contract
from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector.core.contract import AppRef
from mcp_connector.core.discovery import ClaimApi, ClaimVersion
from mcp_connector_component import hook
from mcp_connector_component.disconnect import MAX_RELEASE_PASSES, DisconnectError, disconnect
from mcp_connector_component.guard import DISCONNECT_TYPE, GUARD_TYPE, ClaimResource, DisconnectPlan

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
ACCESS = ControlPlaneAccess(url="https://cp.test", token="t")
CLUSTERS = ClaimResource("k8s.starter.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster")
DATABASES = ClaimResource("db.example.org", "v1beta1", "postgresqlinstances", "PostgreSQLInstance")
CACHES = ClaimApi(
    group="cache.example.org",
    kind="RedisCache",
    plural="rediscaches",
    singular="rediscache",
    list_kind="RedisCacheList",
    versions=(ClaimVersion("v1", storage=True),),
)


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
    """Stores claims per plural; serves discovery, list (with label selectors) and merge patch."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[str, dict[str, Any]]] = {
            "kubernetesclusters": {},
            "postgresqlinstances": {},
            "rediscaches": {},
        }
        self.offered: tuple[ClaimApi, ...] = (*CLAIM_APIS, CACHES)
        self.discovery_fails = False
        self.patches = 0
        self.fail_patch_after: int | None = None
        self.on_patch: list[Any] = []
        self.bindings: dict[str, dict[str, Any]] = {}
        self.binding_calls: list[str] = []

    def rolebindings(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[1]
        self.binding_calls.append(f"{request.method} {name}")
        if request.method == "POST":
            body = json.loads(request.content)
            self.bindings[body["metadata"]["name"]] = body
            return httpx.Response(201, json=body)
        if name not in self.bindings:
            return httpx.Response(404, json={"kind": "Status", "message": "not found", "code": 404})
        if request.method == "DELETE":
            return httpx.Response(200, json=self.bindings.pop(name))
        return httpx.Response(200, json=self.bindings[name])

    def add(self, plural: str, ref: AppRef) -> str:
        obj = contract.to_control_plane({"spec": {"x": 1}}, ref, claim_namespace=NS)
        self.claims[plural][obj["metadata"]["name"]] = obj
        return str(obj["metadata"]["name"])

    async def fetch_claim_apis(self, client: Any) -> tuple[ClaimApi, ...]:
        if self.discovery_fails:
            raise upstream.ControlPlaneUnauthorized("https://cp.test", "credentials rejected (HTTP 403)")
        return self.offered

    def handler(self, request: httpx.Request) -> httpx.Response:
        if "/rolebindings" in request.url.path:
            return self.rolebindings(request)
        parts = request.url.path.strip("/").split("/")  # apis g v namespaces ns plural [name]
        plural = parts[5]
        if plural not in self.claims or plural not in {a.plural for a in self.offered}:
            return httpx.Response(404, json={"kind": "Status", "message": "not found", "code": 404})
        store = self.claims[plural]
        if request.method == "GET":
            selector = request.url.params.get("labelSelector")
            terms = selector.split(",") if selector else []
            wanted = dict(t.split("=", 1) for t in terms if not t.startswith("!"))
            absent = [t[1:] for t in terms if t.startswith("!")]
            items = [
                o for o in store.values()
                if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
                and not any(k in (o["metadata"].get("labels") or {}) for k in absent)
            ]  # fmt: skip
            return httpx.Response(200, json={"items": items, "metadata": {}})
        assert request.method == "PATCH"
        assert request.headers["content-type"] == "application/merge-patch+json"
        if self.fail_patch_after is not None and self.patches >= self.fail_patch_after:
            raise httpx.ConnectError("connection reset")
        self.patches += 1
        _merge(store[parts[6]], json.loads(request.content))
        for action in self.on_patch:
            action()
        return httpx.Response(200, json=store[parts[6]])


@pytest.fixture
def cp(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeControlPlane]:
    fake = FakeControlPlane()

    def new_client(access: Any, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=access.url, transport=httpx.MockTransport(fake.handler))

    monkeypatch.setattr(upstream, "new_client", new_client)
    monkeypatch.setattr(upstream, "fetch_claim_apis_by_name", fake.fetch_claim_apis)
    fake.add("kubernetesclusters", AppRef(CLUSTER, "team-a", "prod"))
    fake.add("kubernetesclusters", AppRef(CLUSTER, "team-b", "dev"))
    fake.add("postgresqlinstances", AppRef(CLUSTER, "team-a", "db"))
    fake.add("kubernetesclusters", AppRef(OTHER, "team-a", "prod"))
    yield fake


def _plan(on_disconnect: str, served: tuple[ClaimResource, ...] = (CLUSTERS, DATABASES)) -> DisconnectPlan:
    return DisconnectPlan(KUBECONFIG, "https://cp.test", NS, CLUSTER, on_disconnect, served, "mcp-connector")


def _labelled(fake: FakeControlPlane, cluster: str) -> int:
    return sum(
        1
        for store in fake.claims.values()
        for o in store.values()
        if (o["metadata"].get("labels") or {}).get(contract.APP_CLUSTER_LABEL) == cluster
    )


def _quiet(_: str) -> None:
    pass


async def test_keep_reports_and_changes_nothing(cp: FakeControlPlane) -> None:
    report = await disconnect(_plan("Keep"), ACCESS, log=_quiet)
    assert cp.patches == 0
    assert sorted(report.kept) == [
        "KubernetesCluster team-a/prod",
        "KubernetesCluster team-b/dev",
        "PostgreSQLInstance team-a/db",
    ]
    assert report.summary(_plan("Keep")).startswith("Keep: 3 claim(s) stay with their labels")
    assert _labelled(cp, CLUSTER) == 3


async def test_release_swaps_labels_for_annotations(cp: FakeControlPlane) -> None:
    report = await disconnect(_plan("Release"), ACCESS, log=_quiet)
    assert len(report.released) == 3 and report.released_earlier == []
    assert _labelled(cp, CLUSTER) == 0
    assert _labelled(cp, OTHER) == 1, "another cluster's claims are untouched"
    prod = cp.claims["kubernetesclusters"][contract.control_plane_name(AppRef(CLUSTER, "team-a", "prod"))]
    assert prod["metadata"]["annotations"] == contract.release_annotations(AppRef(CLUSTER, "team-a", "prod"))
    assert not any(k.startswith(contract.LABEL_DOMAIN) for k in prod["metadata"].get("labels") or {})
    assert sum(len(s) for s in cp.claims.values()) == 4, "no claim is deleted"


async def test_release_covers_kinds_no_longer_selected(cp: FakeControlPlane) -> None:
    cp.add("rediscaches", AppRef(CLUSTER, "team-c", "cache"))
    report = await disconnect(_plan("Release", served=(CLUSTERS,)), ACCESS, log=_quiet)
    assert "RedisCache team-c/cache" in report.released, "found by the cluster's label, not the selection"
    assert "PostgreSQLInstance team-a/db" in report.released
    assert _labelled(cp, CLUSTER) == 0


async def test_discovery_refused_falls_back_to_the_connected_kinds(cp: FakeControlPlane) -> None:
    cp.discovery_fails = True
    logs: list[str] = []
    report = await disconnect(_plan("Release", served=(CLUSTERS,)), ACCESS, log=logs.append)
    assert sorted(report.released) == ["KubernetesCluster team-a/prod", "KubernetesCluster team-b/dev"]
    assert any("searching the connected ones" in line for line in logs)
    with pytest.raises(upstream.ControlPlaneUnauthorized):
        await disconnect(_plan("Release", served=()), ACCESS, log=_quiet)


async def test_dry_run_reports_and_changes_nothing(cp: FakeControlPlane) -> None:
    report = await disconnect(_plan("Release"), ACCESS, dry_run=True, log=_quiet)
    assert cp.patches == 0 and _labelled(cp, CLUSTER) == 3
    assert report.summary(_plan("Release")).startswith("Release: would release 3 claim(s)")
    assert "KubernetesCluster team-b/dev" in report.summary(_plan("Release"))
    keep = await disconnect(_plan("Keep"), ACCESS, dry_run=True, log=_quiet)
    assert keep.summary(_plan("Keep")).startswith("Keep: 3 claim(s) would stay with their labels")


async def test_release_twice_is_a_no_op(cp: FakeControlPlane) -> None:
    await disconnect(_plan("Release"), ACCESS, log=_quiet)
    patches = cp.patches
    report = await disconnect(_plan("Release"), ACCESS, log=_quiet)
    assert cp.patches == patches
    assert report.released == [] and len(report.released_earlier) == 3
    assert "released 0 claim(s), 3 already released" in report.summary(_plan("Release"))


async def test_interrupted_release_converges(cp: FakeControlPlane) -> None:
    cp.fail_patch_after = 1
    with pytest.raises(DisconnectError) as stopped:
        await disconnect(_plan("Release"), ACCESS, log=_quiet)
    assert _labelled(cp, CLUSTER) == 2
    message = str(stopped.value)
    assert "connection reset" in message and "1 claim(s) released before it stopped (PostgreSQLInstance" in message
    assert "the other claims keep their labels" in message and "Re-run `pulumi destroy --run-program`" in message
    assert "never taken away" in message, "no writer binding: the message does not claim one was restored"
    cp.fail_patch_after = None
    report = await disconnect(_plan("Release"), ACCESS, log=_quiet)
    assert len(report.released) == 2 and len(report.released_earlier) == 1
    assert _labelled(cp, CLUSTER) == 0


async def test_a_claim_created_during_release_is_released_too(cp: FakeControlPlane) -> None:
    late = AppRef(CLUSTER, "team-a", "late")
    cp.on_patch.append(lambda: cp.add("kubernetesclusters", late) if cp.patches == 1 else None)
    report = await disconnect(_plan("Release"), ACCESS, log=_quiet)
    assert "KubernetesCluster team-a/late" in report.released
    assert _labelled(cp, CLUSTER) == 0


async def test_claims_that_keep_appearing_stop_the_release(cp: FakeControlPlane) -> None:
    def another() -> None:
        cp.add("kubernetesclusters", AppRef(CLUSTER, "team-a", f"new-{cp.patches}"))

    cp.on_patch.append(another)
    with pytest.raises(DisconnectError, match=f"keep appearing after {MAX_RELEASE_PASSES} passes"):
        await disconnect(_plan("Release"), ACCESS, log=_quiet)


async def test_claim_kind_gone_from_the_control_plane_is_reported(cp: FakeControlPlane) -> None:
    gone = ClaimResource("old.example.org", "v1alpha1", "olds", "Old")
    report = await disconnect(_plan("Release", (gone, CLUSTERS)), ACCESS, log=_quiet)
    assert report.gone_kinds == ["olds.old.example.org"]
    assert len(report.released) == 3


async def test_bad_on_disconnect_is_refused(cp: FakeControlPlane) -> None:
    with pytest.raises(DisconnectError, match="must be one of Keep, Release"):
        await disconnect(_plan("Delete"), ACCESS, log=_quiet)


def _deployment(**fields: Any) -> hook._Deployment:
    """A deployment as the process sees it, without registered hooks."""
    return hook._Deployment(hook=None, check=None, identity=None, gone=None, dry_run=False, **fields)  # type: ignore[arg-type]


def _guard_args(plan: DisconnectPlan, *, name: str = "mcp-connector-disconnect", typ: str = GUARD_TYPE) -> Any:
    inputs = {
        "connector": plan.connector,
        "kubeconfig": pulumi.Output.secret(plan.kubeconfig),
        "controlPlane": plan.control_plane,
        "claimNamespace": plan.claim_namespace,
        "clusterId": plan.cluster_id,
        "onDisconnect": plan.on_disconnect,
        "served": [c.__dict__ for c in plan.served],
        "writerBinding": plan.writer_binding,
    }
    if plan.app_cluster:  # a guard made before the app cluster was recorded has no such input
        inputs["appCluster"] = plan.app_cluster
    return pulumi.ResourceHookArgs(f"urn:pulumi:s::p::{typ}::{name}", "", name, typ, old_inputs=inputs)


async def test_plan_from_the_guards_inputs() -> None:
    assert await hook.plan_from_hook_args(_guard_args(_plan("Release"))) == _plan("Release")
    with pytest.raises(hook.DisconnectHookError, match="lack kubeconfig"):
        await hook.plan_from_hook_args(pulumi.ResourceHookArgs("urn", "", "g", GUARD_TYPE, old_inputs={}))


async def test_hook_refuses_what_is_not_a_guard(cp: FakeControlPlane) -> None:
    args = _guard_args(_plan("Release"), typ="kubernetes:core/v1:Secret")
    with pytest.raises(hook.DisconnectHookError, match="is not a mcp-connector:index:Disconnect or"):
        await hook._before_delete(args, dry_run=False, key="k")
    with pytest.raises(hook.DisconnectHookError, match="is not a mcp-connector:index:DisconnectGuard;"):
        await hook._before_delete(_guard_args(_plan("Release"), typ=DISCONNECT_TYPE), dry_run=True, key="k", check=True)
    assert cp.patches == 0


async def test_hook_releases_and_a_rename_does_not(cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan("Release")
    successor = pulumi.Output.from_input(plan.identity)
    renamed = _deployment(guards={"renamed-claims": successor})  # type: ignore[arg-type]
    monkeypatch.setitem(hook._deployments, "k", renamed)
    await hook._before_delete(_guard_args(plan), dry_run=False, key="k")
    assert cp.patches == 0 and _labelled(cp, CLUSTER) == 3, "the connection continues under the new name"
    await hook._before_delete(_guard_args(plan), dry_run=False, key="other")
    assert _labelled(cp, CLUSTER) == 0


async def test_unreachable_control_plane_stops_release_but_not_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(client: Any) -> tuple[ClaimApi, ...]:
        raise upstream.ControlPlaneUnreachable("https://cp.test", "cannot connect (refused)")

    monkeypatch.setattr(upstream, "fetch_claim_apis_by_name", unreachable)
    monkeypatch.setattr(
        upstream,
        "new_client",
        lambda access, **kw: httpx.AsyncClient(base_url=access.url, transport=httpx.MockTransport(_refuse)),
    )
    with pytest.raises(hook.DisconnectHookError) as stopped:
        await hook._before_delete(_guard_args(_plan("Release")), dry_run=False, key="x", check=True)
    message = str(stopped.value)
    assert "stopped before deleting anything" in message and "Re-run" in message and "Keep" in message
    assert "token" not in message
    # Past the guard, the engine deletes the app-cluster objects alongside: the message says so.
    with pytest.raises(hook.DisconnectHookError) as stopped:
        await hook._before_delete(_guard_args(_plan("Release"), typ=DISCONNECT_TYPE), dry_run=False, key="x")
    message = str(stopped.value)
    assert "stopped before deleting anything" not in message and "may already be deleted" in message
    assert "Claims released so far stay released" in message and "destroy --run-program" in message
    await hook._before_delete(_guard_args(_plan("Keep")), dry_run=False, key="x", check=True)
    await hook._before_delete(_guard_args(_plan("Keep"), typ=DISCONNECT_TYPE), dry_run=False, key="x")


async def test_the_guards_check_only_reads(cp: FakeControlPlane) -> None:
    """The guard goes in every destroy that reaches any child (--target-dependents): it never writes."""
    cp.bindings["mcp-connector"] = dict(WRITER)
    await hook._before_delete(_guard_args(_fenced("Release")), dry_run=False, key="none", check=True)
    assert cp.patches == 0 and _labelled(cp, CLUSTER) == 3
    assert cp.binding_calls == [] and "mcp-connector" in cp.bindings


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused")


async def test_namespaced_xrs_are_kept_and_released_like_claims(cp: FakeControlPlane) -> None:
    """A v2 XR API (``nxr-`` names, same labels) goes through Keep and Release as claims do."""
    buckets = ClaimResource("storage.example.org", "v1alpha1", "buckets", "Bucket")
    cp.claims["buckets"] = {}
    cp.offered = (*cp.offered, ClaimApi("storage.example.org", "Bucket", "buckets", "bucket", "BucketList",
                                        (ClaimVersion("v1alpha1", storage=True),)))  # fmt: skip
    ref = AppRef(CLUSTER, "team-a", "assets")
    obj = contract.to_control_plane(
        {"spec": {"region": "eu"}}, ref, claim_namespace=NS, flavor=contract.Flavor.NAMESPACED_XR
    )
    hashed = obj["metadata"]["name"]
    assert hashed.startswith("nxr-")
    cp.claims["buckets"][hashed] = obj
    kept = await disconnect(_plan("Keep", (CLUSTERS, DATABASES, buckets)), ACCESS, log=_quiet)
    assert "Bucket team-a/assets" in kept.kept and cp.patches == 0
    released = await disconnect(_plan("Release", (CLUSTERS,)), ACCESS, log=_quiet)
    assert "Bucket team-a/assets" in released.released, "found by the label, though not in the plan"
    stored = cp.claims["buckets"][hashed]
    assert stored["metadata"]["annotations"] == contract.release_annotations(ref)
    assert not any(k.startswith(contract.LABEL_DOMAIN) for k in stored["metadata"].get("labels") or {})


WRITER = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "RoleBinding",
    "metadata": {"name": "mcp-connector", "namespace": NS, "uid": "u1", "resourceVersion": "7"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mcp-connector"},
    "subjects": [{"kind": "ServiceAccount", "name": "mcp-connector", "namespace": NS}],
}


def _fenced(on_disconnect: str) -> DisconnectPlan:
    return DisconnectPlan(
        KUBECONFIG,
        "https://cp.test",
        NS,
        CLUSTER,
        on_disconnect,
        (CLUSTERS, DATABASES),
        "c",
        writer_binding="mcp-connector",
    )


async def test_release_stops_the_connectors_writes_first(cp: FakeControlPlane) -> None:
    cp.bindings["mcp-connector"] = dict(WRITER)
    order: list[str] = []
    cp.on_patch.append(lambda: order.append(f"patch with binding={'mcp-connector' in cp.bindings}"))
    await disconnect(_fenced("Release"), ACCESS, log=_quiet)
    assert cp.binding_calls[:2] == ["GET mcp-connector", "DELETE mcp-connector"]
    assert order and all(o == "patch with binding=False" for o in order)
    assert "mcp-connector" not in cp.bindings


async def test_a_failed_release_gives_the_writes_back(cp: FakeControlPlane) -> None:
    cp.bindings["mcp-connector"] = dict(WRITER)
    cp.fail_patch_after = 1
    with pytest.raises(DisconnectError, match="given back \\(RoleBinding mcp-claims/mcp-connector restored\\)"):
        await disconnect(_fenced("Release"), ACCESS, log=_quiet)
    restored = cp.bindings["mcp-connector"]
    assert restored["subjects"] == WRITER["subjects"] and "uid" not in restored["metadata"]
    cp.fail_patch_after = None
    del cp.bindings["mcp-connector"]  # as after a killed run: the re-run finds it gone and goes on
    report = await disconnect(_fenced("Release"), ACCESS, log=_quiet)
    assert _labelled(cp, CLUSTER) == 0 and len(report.released) == 2


async def test_keep_and_dry_runs_never_touch_the_writes(cp: FakeControlPlane) -> None:
    cp.bindings["mcp-connector"] = dict(WRITER)
    await disconnect(_fenced("Keep"), ACCESS, log=_quiet)
    await disconnect(_fenced("Release"), ACCESS, dry_run=True, log=_quiet)
    assert cp.binding_calls == [] and "mcp-connector" in cp.bindings


async def test_a_guard_deleted_while_its_registration_is_unanswered_is_being_replaced(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan("Release")
    identity = pulumi.Output.from_input(plan.identity)
    deployment = _deployment(guards={"mcp-connector-disconnect": identity})  # type: ignore[arg-type]
    monkeypatch.setitem(hook._deployments, "k", deployment)
    await hook._before_delete(_guard_args(plan), dry_run=False, key="k")
    assert cp.patches == 0, "pulumi up --replace of the guard: the connection stays"
    deployment.registered.add("mcp-connector-disconnect")
    await hook._before_delete(_guard_args(plan), dry_run=False, key="k")
    assert _labelled(cp, CLUSTER) == 0, "declared and answered, then deleted: a destroy"


async def test_a_destroy_of_two_connectors_for_one_cluster_releases(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan("Release")
    identity = pulumi.Output.from_input(plan.identity)
    guards = {"platform-disconnect": identity, "mcp-connector-disconnect": identity}
    deployment = _deployment(guards=guards, registered=set(guards))  # type: ignore[arg-type]
    monkeypatch.setitem(hook._deployments, "k", deployment)
    await hook._before_delete(_guard_args(plan), dry_run=False, key="k")
    assert _labelled(cp, CLUSTER) == 0, "both are declared and deleted: a destroy, not a rename"


def test_a_monitor_address_met_again_by_a_later_program_run_gets_a_hook_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process running deployments one after another meets an engine port again; the hook
    registered with the finished engine must not be taken for the new one's."""
    monkeypatch.setattr(hook, "_deployments", {})
    monkeypatch.setattr(hook, "_deployment_key", lambda: "127.0.0.1:40000")
    monkeypatch.setattr(hook.pulumi, "ResourceHook", lambda *args, **kwargs: object())

    async def twice() -> tuple[object, object]:
        return hook._current(), hook._current()

    first, same_run = asyncio.run(twice())
    later_run, _ = asyncio.run(twice())
    assert first is same_run, "one hook per program run"
    assert later_run is not first and later_run.hook is not first.hook


@pytest.mark.parametrize("failing", ["released-earlier", "second-kind-list"])
async def test_every_failure_after_the_fence_gives_the_writes_back(cp: FakeControlPlane, failing: str) -> None:
    """Lists after the fence (not only the patches) fail too; each one restores and says what was done."""
    cp.bindings["mcp-connector"] = dict(WRITER)
    original = cp.handler

    def handler(request: httpx.Request) -> httpx.Response:
        selector = request.url.params.get("labelSelector") or ""
        fenced = "mcp-connector" not in cp.bindings
        if fenced and failing == "released-earlier" and selector.startswith("!"):
            return httpx.Response(500, json={"kind": "Status", "message": "etcd timeout", "code": 500})
        if fenced and failing == "second-kind-list" and "kubernetesclusters" in request.url.path and cp.patches:
            return httpx.Response(500, json={"kind": "Status", "message": "etcd timeout", "code": 500})
        return original(request)

    cp.handler = handler  # type: ignore[method-assign]
    with pytest.raises(DisconnectError) as stopped:
        await disconnect(_fenced("Release"), ACCESS, log=_quiet)
    message = str(stopped.value)
    assert "mcp-connector" in cp.bindings, "the writes are given back"
    assert "RoleBinding mcp-claims/mcp-connector restored" in message and "etcd timeout" in message
    released = 1 if failing == "second-kind-list" else 0
    assert _labelled(cp, CLUSTER) == 3 - released
    assert (f"{released} claim(s) released" in message) if released else ("No claim was released" in message)


async def test_a_restore_that_fails_says_what_is_left_and_how_to_finish(cp: FakeControlPlane) -> None:
    cp.bindings["mcp-connector"] = dict(WRITER)
    cp.fail_patch_after = 1
    rolebindings = cp.rolebindings

    def refuse_create(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(403, json={"kind": "Status", "message": "forbidden", "code": 403})
        return rolebindings(request)

    cp.rolebindings = refuse_create  # type: ignore[method-assign]
    with pytest.raises(DisconnectError) as stopped:
        await disconnect(_fenced("Release"), ACCESS, log=_quiet)
    message = str(stopped.value)
    assert "could NOT be given back" in message and "RoleBinding mcp-claims/mcp-connector is missing" in message
    assert "pulumi up --refresh" in message and "1 claim(s) released before it stopped" in message
    assert "mcp-connector" not in cp.bindings


async def test_a_cancelled_release_still_gives_the_writes_back(cp: FakeControlPlane) -> None:
    cp.bindings["mcp-connector"] = dict(WRITER)

    def cancel() -> None:
        raise asyncio.CancelledError

    cp.on_patch.append(cancel)
    with pytest.raises(asyncio.CancelledError):
        await disconnect(_fenced("Release"), ACCESS, log=_quiet)
    assert "mcp-connector" in cp.bindings


def _update_args(old: DisconnectPlan, new: DisconnectPlan, *, allow: bool) -> Any:
    old_args, new_args = _guard_args(old, typ=DISCONNECT_TYPE), _guard_args(new, typ=DISCONNECT_TYPE)
    new_inputs = {**new_args.old_inputs, "allowIdentityChange": allow}
    return pulumi.ResourceHookArgs(
        old_args.urn, "", old_args.name, DISCONNECT_TYPE, old_inputs=old_args.old_inputs, new_inputs=new_inputs
    )


async def test_an_identity_change_is_refused_until_allowed_then_disconnects_the_old_one(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    warned: list[str] = []
    monkeypatch.setattr(hook.pulumi.log, "warn", lambda message, *a, **k: warned.append(message))
    old = _plan("Release")
    moved = DisconnectPlan(KUBECONFIG, "https://cp.test", NS, OTHER, "Release", (CLUSTERS, DATABASES), "c")
    # Same identity (another on_disconnect, say): nothing to do.
    await hook._before_update(_update_args(old, _plan("Keep"), allow=False), dry_run=False)
    # The preview shows the old identity's disconnect, and changes nothing.
    await hook._before_update(_update_args(old, moved, allow=False), dry_run=True)
    assert "would release 3 claim(s)" in warned[-1] and f"cluster {CLUSTER}" in warned[-1]
    assert "refuses it unless allow_identity_change" in warned[-1] and _labelled(cp, CLUSTER) == 3
    # The update refuses before anything changes, naming the claims.
    with pytest.raises(hook.DisconnectHookError) as refused:
        await hook._before_update(_update_args(old, moved, allow=False), dry_run=False)
    message = str(refused.value)
    assert "Refused: the old identity was not disconnected" in message and "KubernetesCluster team-a/prod" in message
    assert cp.patches == 0 and _labelled(cp, CLUSTER) == 3
    # Allowed: the old identity is disconnected as on_disconnect says; the other cluster's claim stays.
    await hook._before_update(_update_args(old, moved, allow=True), dry_run=False)
    assert _labelled(cp, CLUSTER) == 0 and _labelled(cp, OTHER) == 1


APP_A = "aaaaaaaa-0000-4000-8000-000000000001"
APP_B = "bbbbbbbb-0000-4000-8000-000000000002"


async def test_moving_to_another_app_cluster_is_an_identity_change(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same cluster ID, claim namespace and control plane, another app cluster: the old identity's disconnect."""
    warned: list[str] = []
    monkeypatch.setattr(hook.pulumi.log, "warn", lambda message, *a, **k: warned.append(message))
    old = dataclasses.replace(_plan("Release"), app_cluster=APP_A)
    moved = dataclasses.replace(old, app_cluster=APP_B)
    assert old.identity == moved.identity, "the claims' labels do not change"
    await hook._before_update(_update_args(old, moved, allow=False), dry_run=True)
    assert f"app cluster (kube-system UID) {APP_A} -> {APP_B}" in warned[-1]
    assert "would release 3 claim(s)" in warned[-1] and "refuses it unless allow_identity_change" in warned[-1]
    assert "with Keep the new app cluster serves them" in warned[-1]
    assert _labelled(cp, CLUSTER) == 3
    with pytest.raises(hook.DisconnectHookError) as refused:
        await hook._before_update(_update_args(old, moved, allow=False), dry_run=False)
    message = str(refused.value)
    assert "Refused: the old identity was not disconnected" in message and f"{APP_A} -> {APP_B}" in message
    assert KUBECONFIG not in message and cp.patches == 0 and _labelled(cp, CLUSTER) == 3
    await hook._before_update(_update_args(old, moved, allow=True), dry_run=False)
    assert _labelled(cp, CLUSTER) == 0 and _labelled(cp, OTHER) == 1


async def test_a_state_without_the_app_cluster_records_it_without_refusing(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guard made before the app cluster was recorded: the update records it; nothing is refused or touched."""
    said: list[str] = []
    monkeypatch.setattr(hook.pulumi.log, "info", lambda message, *a, **k: said.append(message))
    monkeypatch.setattr(hook.pulumi.log, "warn", lambda message, *a, **k: said.append(message))
    legacy = _plan("Release")
    assert legacy.app_cluster == "" and "appCluster" not in _guard_args(legacy).old_inputs
    for dry_run in (True, False):
        await hook._before_update(
            _update_args(legacy, dataclasses.replace(legacy, app_cluster=APP_B), allow=False), dry_run=dry_run
        )
    assert any(f"kube-system UID {APP_B}) is recorded from now on" in m for m in said), said
    assert not any("changes its identity" in m for m in said)
    assert cp.patches == 0 and _labelled(cp, CLUSTER) == 3


async def test_discovery_drift_that_removes_claims_from_sight_is_refused(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    warned: list[str] = []
    monkeypatch.setattr(hook.pulumi.log, "warn", lambda message, *a, **k: warned.append(message))
    old = _plan("Keep")
    narrowed = DisconnectPlan(KUBECONFIG, "https://cp.test", NS, CLUSTER, "Keep", (CLUSTERS,), "c")

    def args(include: list[str], allow: bool, pinned: bool = False) -> Any:
        update = _update_args(old, narrowed, allow=False)
        update.new_inputs = {**update.new_inputs, "include": include, "allowApiRemoval": allow, "pinned": pinned}
        return update

    await hook._before_update(args([], allow=False), dry_run=True)
    assert "no longer offers postgresqlinstances.db.example.org" in warned[-1]
    assert "PostgreSQLInstance team-a/db" in warned[-1] and "refuses unless allow_api_removal" in warned[-1]
    with pytest.raises(hook.DisconnectHookError, match="Refused: no APIService was removed"):
        await hook._before_update(args([], allow=False), dry_run=False)
    await hook._before_update(args([], allow=True), dry_run=False)
    # Dropped from include by the user: no drift, nothing to refuse.
    warned.clear()
    await hook._before_update(args(["kubernetesclusters.k8s.starter.org"], allow=False), dry_run=False)
    assert warned == [] and cp.patches == 0
    # Pinned with claim_apis (a destroy while the control plane is away): the user's choice, no drift.
    await hook._before_update(args([], allow=False, pinned=True), dry_run=False)
    await hook._before_update(args([], allow=False, pinned=True), dry_run=True)
    assert warned == [] and cp.patches == 0


async def test_the_disconnect_never_runs_after_its_guard_failed_to_go(
    cp: FakeControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine goes on to the Disconnect's delete after a protected guard's failed (its hooks come first)."""
    plan = _plan("Release")
    identity = pulumi.Output.from_input(plan.identity)
    names = {"mcp-connector-disconnect": identity, "mcp-connector-claims": identity}
    deployment = _deployment(guards=names, registered=set(names))
    monkeypatch.setitem(hook._deployments, "k", deployment)
    await hook._before_delete(_guard_args(plan), dry_run=False, key="k", check=True)  # then: protected
    disconnect_args = _guard_args(plan, name="mcp-connector-claims", typ=DISCONNECT_TYPE)
    with pytest.raises(hook.DisconnectHookError, match="the guard mcp-connector-disconnect was not deleted"):
        await hook._before_delete(disconnect_args, dry_run=False, key="k")
    assert cp.patches == 0 and _labelled(cp, CLUSTER) == 3
    hook._guard_deleted(_guard_args(plan), key="k")  # its after_delete: it went
    await hook._before_delete(disconnect_args, dry_run=False, key="k")
    assert _labelled(cp, CLUSTER) == 0
