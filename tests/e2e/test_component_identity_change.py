"""A change of identity (cluster ID, claim namespace, app cluster) shows the old identity's disconnect and is
refused until allowed.

The refused ``up`` changes nothing in the stack: the component registers its other children only
once the engine has answered the Disconnect's registration, after its ``before_update`` hook, so
the guard's plan (what the next ``up`` and a destroy check against) keeps the old identity. The
app-cluster move points the provider at a second app cluster (a real etcd and kube-apiserver with
the aggregation layer, started by ``testbed.cluster.extra_app_cluster``) served by a second
connector, keeping the explicit cluster ID.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import connector_fixtures
import pytest
from claims import apiservice_exists, kube_system_uid
from component_helpers import EXTERNAL_NAME, log
from component_stack import Setting
from connector_fixtures import SERVICE_NAMESPACE
from pulumi import automation as auto
from test_component_disconnect_scope import DISCONNECT, GUARD, _labelled, _resources, connected  # noqa: F401

from mcp_connector.core import contract
from testbed import APP_CLUSTER, cluster
from testbed.harness import Testbed
from testbed.state import ClusterState

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize(("arg", "state_key"), [("cluster_id", "clusterId"), ("claim_namespace", "claimNamespace")])
def test_an_identity_change_shows_the_old_disconnect_and_is_refused_until_allowed(
    testbed: Testbed,
    connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]],  # noqa: F811
    arg: str,
    state_key: str,
) -> None:
    setting, stack, ref = connected(on_disconnect="Release")
    before = {r["urn"]: r.get("inputs") for r in _resources(stack)}
    old = f"cluster {ref.cluster_id}" if arg == "cluster_id" else f"namespace {testbed.claim_namespace}"
    setting.args[arg] = str(uuid.uuid4()) if arg == "cluster_id" else f"moved-{uuid.uuid4().hex[:8]}"

    preview = stack.preview(on_output=log)
    assert "changes its identity" in preview.stdout and old in preview.stdout
    assert "would release 1 claim(s)" in preview.stdout and f"KubernetesCluster {ref.namespace}/{ref.name}" in (
        preview.stdout
    )
    assert "refuses it unless allow_identity_change" in preview.stdout

    for attempt in (1, 2):  # refused again: the first refusal left the old identity in the state
        with pytest.raises(auto.CommandError) as refused:
            stack.up(on_output=log)
        assert "Refused: the old identity was not disconnected" in str(refused.value), attempt
        assert "no other child of the McpConnector was changed" in str(refused.value)
        assert _labelled(testbed, ref)
        after = {r["urn"]: r.get("inputs") for r in _resources(stack)}
        assert after == before, f"a refused identity change changes nothing in the stack (attempt {attempt})"

    setting.args["allow_identity_change"] = True
    up = stack.up(on_output=log)
    assert "disconnect of the old identity: Release: released 1 claim(s)" in up.stdout, up.stdout[-3000:]
    assert not _labelled(testbed, ref)
    guard = next(r for r in _resources(stack) if r["type"] == GUARD)
    assert guard["inputs"][state_key] == setting.args[arg]


APISERVICE = "v1alpha1.k8s.starter.org"


@pytest.fixture
def second_app_cluster(testbed: Testbed) -> Iterator[Testbed]:
    """The test bed with a second app cluster in place of the first (a handle; the first keeps running)."""
    with cluster.extra_app_cluster("moved") as second:
        yield _with_app_cluster(testbed, second)


def _with_app_cluster(testbed: Testbed, app: ClusterState) -> Testbed:
    return Testbed(dataclasses.replace(testbed.state, clusters={**testbed.state.clusters, APP_CLUSTER: app}))


def _children(stack: auto.Stack) -> dict[str, Any]:
    """Every resource's inputs but the providers': the refused ``up`` may record the re-pointed provider."""
    return {r["urn"]: r.get("inputs") for r in _resources(stack) if not r["type"].startswith("pulumi:providers:")}


def _plan_inputs(stack: auto.Stack, typ: str) -> dict[str, Any]:
    return dict(next(r for r in _resources(stack) if r["type"] == typ)["inputs"])


def test_moving_to_another_app_cluster_shows_the_old_disconnect_and_is_refused_until_allowed(
    testbed: Testbed,
    second_app_cluster: Testbed,  # before `connected`: it goes after the stack's destroy
    connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]],  # noqa: F811
) -> None:
    """The provider re-pointed at another app cluster, the explicit cluster ID kept: a change of identity."""
    moved = second_app_cluster
    setting, stack, ref = connected(on_disconnect="Release")
    first, second = kube_system_uid(testbed), kube_system_uid(moved)
    assert first and second and first != second
    for typ in (GUARD, DISCONNECT):
        assert _plan_inputs(stack, typ)["appCluster"] == first, f"the {typ} records the app cluster"
    assert stack.outputs()["appClusterUid"].value == first

    moved.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE)
    connector = connector_fixtures.start_connector(moved, cluster_id=ref.cluster_id, service_name=EXTERNAL_NAME)
    try:
        before = _children(stack)
        setting.app_kubeconfig = moved.app_cluster.kubeconfig.read_text()
        setting.args.update(mode=f"localhost:{connector.port}", ca_bundle=connector.ca_bundle.decode())
        changed = f"app cluster (kube-system UID) {first} -> {second}"

        preview = stack.preview(on_output=log)
        assert "changes its identity" in preview.stdout and changed in preview.stdout, preview.stdout[-3000:]
        assert "would release 1 claim(s)" in preview.stdout
        assert f"KubernetesCluster {ref.namespace}/{ref.name}" in preview.stdout
        assert "refuses it unless allow_identity_change" in preview.stdout

        for attempt in (1, 2):  # refused again: the first refusal left the old identity in the state
            with pytest.raises(auto.CommandError) as refused:
                stack.up(on_output=log)
            message = str(refused.value)
            assert "Refused: the old identity was not disconnected" in message and changed in message, attempt
            assert "with Keep the new app cluster serves them" in message
            assert _labelled(testbed, ref)
            assert _children(stack) == before, f"a refused move changes no child in the stack (attempt {attempt})"
            assert apiservice_exists(testbed, APISERVICE) and not apiservice_exists(moved, APISERVICE)

        setting.args["allow_identity_change"] = True
        up = stack.up(on_output=log)
        assert "disconnect of the old identity: Release: released 1 claim(s)" in up.stdout, up.stdout[-3000:]
        assert not _labelled(testbed, ref)
        plan = _plan_inputs(stack, GUARD)
        assert (plan["appCluster"], plan["clusterId"]) == (second, ref.cluster_id)
        assert stack.outputs()["appClusterUid"].value == second
        assert apiservice_exists(moved, APISERVICE), "the connector now serves the second app cluster"
        assert not apiservice_exists(testbed, APISERVICE), "and its objects left the first one"
    finally:
        connector.stop()


def test_a_stack_from_before_the_app_cluster_was_recorded_records_it_without_refusing(
    testbed: Testbed,
    connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]],  # noqa: F811
) -> None:
    """The state as an earlier version left it (no recorded app cluster, no replacement triggers): the next
    ``up`` records the app cluster, refuses nothing, touches no claim and replaces no object."""
    _, stack, ref = connected(on_disconnect="Release")
    exported = stack.export_stack()
    triggers = 0
    for resource in exported.deployment["resources"]:
        triggers += resource.pop("replacementTrigger", None) is not None
        if resource["type"] in (GUARD, DISCONNECT):
            for key in ("inputs", "outputs"):
                (resource.get(key) or {}).pop("appCluster", None)
    assert triggers >= 10, "every app-cluster object had the app cluster's UID as replacement trigger"
    stack.import_stack(exported)
    assert "appCluster" not in _plan_inputs(stack, GUARD) and "appCluster" not in _plan_inputs(stack, DISCONNECT)

    up = stack.up(on_output=log)
    assert f"kube-system UID {kube_system_uid(testbed)}) is recorded from now on" in up.stdout, up.stdout[-3000:]
    changed = {str(getattr(k, "value", k)): v for k, v in (up.summary.resource_changes or {}).items()}
    # The guard and the Disconnect updated, the kube-system read; nothing replaced.
    assert set(changed) <= {"same", "update", "read"} and changed.get("update") == 2, changed
    assert _labelled(testbed, ref)
    for typ in (GUARD, DISCONNECT):
        assert _plan_inputs(stack, typ)["appCluster"] == kube_system_uid(testbed)
    assert apiservice_exists(testbed, APISERVICE)
