"""Only the whole component going disconnects: never a protected one, never a child destroyed alone.

The engine runs a resource's ``before_delete`` hooks before it checks ``protect``, and with
``--target <x> --target-dependents`` it deletes every dependent of ``x``. These tests run the
real engine through the Automation API, whose ``destroy`` is ``pulumi destroy --skip-preview
--yes`` (with ``--run-program``): no preview stands between the user and the hooks.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from claims import CLUSTER_CLAIM, apiservice_exists, apply_claim, cp_claim, is_labelled, wait_available
from component_helpers import (
    CLUSTERS,
    EXTERNAL_NAME,
    SEEDED_APISERVICES,
    app_objects,
    external_setting,
    log,
    stack_for,
)
from component_stack import Program, Setting
from connector_fixtures import ConnectorProcess
from pulumi import automation as auto

from mcp_connector.core import contract
from testbed import APP_CLUSTER, cluster
from testbed.harness import Testbed

# Each test runs several whole updates and destroys with the real engine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

GUARD = "mcp-connector:index:DisconnectGuard"
DISCONNECT = "mcp-connector:index:Disconnect"


@pytest.fixture
def connected(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> Iterator[Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]]:
    """Connect (Release) with the control plane's kubeconfig, make one claim through the app cluster."""
    namespaces: list[str] = []
    with contextlib.ExitStack() as stacks:

        def connect(**args: Any) -> tuple[Setting, auto.Stack, contract.AppRef]:
            cluster_id = str(uuid.uuid4())
            kubeconfig = testbed.control_plane.kubeconfig.read_text()
            setting = external_setting(testbed, start_connector(cluster_id), cluster_id, kubeconfig, **args)
            stack = stacks.enter_context(stack_for(tmp_path, Program(setting)))
            stack.up(on_output=log)
            app_ns = f"e2e-{cluster_id[:8]}"
            namespaces.append(app_ns)
            wait_available(testbed, "v1alpha1.k8s.starter.org")
            apply_claim(testbed, app_ns, CLUSTER_CLAIM, "d1")
            ref = contract.AppRef(cluster_id, app_ns, "d1-cluster")
            assert _labelled(testbed, ref)
            return setting, stack, ref

        yield connect
    for namespace in namespaces:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def _labelled(testbed: Testbed, ref: contract.AppRef) -> bool:
    claim = cp_claim(testbed, CLUSTERS, ref)
    return claim is not None and is_labelled(claim, ref)


def _resources(stack: auto.Stack) -> list[dict[str, Any]]:
    return list(stack.export_stack().deployment.get("resources") or [])


def _urn(stack: auto.Stack, typ: str) -> str:
    return next(r["urn"] for r in _resources(stack) if r["type"] == typ)


def test_a_protected_component_is_never_disconnected(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    setting, stack, ref = connected(on_disconnect="Release")
    setting.protect = True
    stack.up(on_output=log)
    urns = sorted(r["urn"] for r in _resources(stack))
    for continue_on_error in (False, True):
        with pytest.raises(auto.CommandError) as refused:
            stack.destroy(run_program=True, continue_on_error=continue_on_error, on_output=log)
        assert "because it is protected" in str(refused.value)
        assert "Release: released" not in str(refused.value)
        assert _labelled(testbed, ref), (
            f"a protected component released its claims (continue_on_error={continue_on_error})"
        )
        assert sorted(r["urn"] for r in _resources(stack)) == urns
        assert apiservice_exists(testbed, "v1alpha1.k8s.starter.org")

    setting.protect = False
    stack.up(on_output=log)
    done = stack.destroy(run_program=True, on_output=log)
    assert "Release: released 1 claim(s)" in done.stdout
    assert not _labelled(testbed, ref)


def test_a_child_destroyed_alone_never_disconnects(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    _, stack, ref = connected(on_disconnect="Release")
    resources = _resources(stack)
    disconnect = next(r for r in resources if r["type"] == DISCONNECT)
    property_dependencies = disconnect.get("propertyDependencies") or {}
    assert not disconnect.get("dependencies") and not any(property_dependencies.values()), (
        "the disconnect depends on nothing, so no --target-dependents reaches it",
        disconnect,
    )
    # Nothing depends on it either: Pulumi's Python SDK expands depends_on a component into its
    # children, and the Disconnect has none; the engine deletes it in its last round.
    assert not any(disconnect["urn"] in (r.get("dependencies") or []) for r in resources)

    component = next(r["urn"] for r in resources if r["type"] == "mcp-connector:index:McpConnector")
    children = [
        r["urn"] for r in resources
        if r.get("parent") == component and r["type"] not in (GUARD, DISCONNECT) and not r.get("external")
    ]  # fmt: skip
    one_of_each = sorted({urn.split("::")[-2]: urn for urn in children}.values())
    assert one_of_each, resources
    for urn in one_of_each:
        done = stack.destroy(run_program=True, target=[urn], target_dependents=True, on_output=log)
        assert "Release: released" not in done.stdout and "stopped the connector's writes" not in done.stdout
        assert _labelled(testbed, ref), f"destroying {urn} with its dependents released the claims"
        assert _urn(stack, DISCONNECT) == disconnect["urn"]
        stack.up(on_output=log)  # brings the child (and the guard) back

    # Still connected, and the whole component going still releases.
    wait_available(testbed, "v1alpha1.k8s.starter.org")
    got = testbed.kubectl_json(APP_CLUSTER, "get", CLUSTERS, ref.name, "-n", ref.namespace)
    assert got["metadata"]["name"] == ref.name
    done = stack.destroy(run_program=True, on_output=log)
    assert "Release: released 1 claim(s)" in done.stdout
    assert not _labelled(testbed, ref)


def test_depends_on_the_component_means_its_apis_are_served(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    """A claim made in the same program, after the component: a fresh up creates it, a destroy removes it first."""
    cluster_id = str(uuid.uuid4())
    app_ns = f"e2e-dep-{cluster_id[:8]}"
    claim = yaml.safe_load(CLUSTER_CLAIM.read_text())
    claim["metadata"] = {"name": "dep", "namespace": app_ns}
    kubeconfig = testbed.control_plane.kubeconfig.read_text()
    setting = external_setting(testbed, start_connector(cluster_id), cluster_id, kubeconfig, on_disconnect="Keep")
    setting.claim_after = claim
    ref = contract.AppRef(cluster_id, app_ns, "dep")
    try:
        with stack_for(tmp_path, Program(setting)) as stack:
            up = stack.up(on_output=log)
            assert up.summary.result == "succeeded", up.stdout[-3000:]
            assert _labelled(testbed, ref), "the claim went through the connector into the control plane"
            resources = _resources(stack)
            marker = next(r for r in resources if r["urn"].endswith("::mcp-component-e2e-served"))
            apiservices = [r["urn"] for r in resources if r["type"].endswith(":APIService")]
            assert apiservices and set(apiservices) <= set(marker["dependencies"])
            made = next(r for r in resources if r["urn"].endswith("::claim"))
            assert marker["urn"] in made["dependencies"], "the claim waits for the served APIServices"

            done = stack.destroy(run_program=True, on_output=log)
            assert done.summary.result == "succeeded", done.stdout[-3000:]
            assert cp_claim(testbed, CLUSTERS, ref) is None or cp_claim(testbed, CLUSTERS, ref)["metadata"].get(
                "deletionTimestamp"
            ), "the claim was deleted through the connector before the connector went"
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)


@pytest.mark.parametrize("on_disconnect", ["Keep", "Release"])
def test_a_lost_app_cluster_disconnects_with_the_control_plane_alone(
    testbed: Testbed,
    connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]],
    monkeypatch: pytest.MonkeyPatch,
    on_disconnect: str,
) -> None:
    """The app cluster's kube-apiserver stopped: destroy keeps or releases, and drops the app-cluster objects.

    As the README says: the app cluster's identity (the stack's ``appClusterUid`` output), cluster
    ID and credentials given as values (no read from the app cluster), and the pulumi-kubernetes
    provider told to drop what it cannot reach.
    """
    setting, stack, ref = connected(on_disconnect=on_disconnect)
    setting.args["app_cluster_uid"] = stack.outputs()["appClusterUid"].value
    monkeypatch.setenv("PULUMI_K8S_DELETE_UNREACHABLE", "true")  # the CLI and its plugins inherit it
    try:
        with cluster.apiserver_stopped(APP_CLUSTER):
            done = stack.destroy(run_program=True, on_output=log)
            assert not _resources(stack), done.stdout[-3000:]
            if on_disconnect == "Keep":
                assert "Keep: 1 claim(s) stay with their labels" in done.stdout
                assert _labelled(testbed, ref)
            else:
                assert "Release: released 1 claim(s)" in done.stdout
                assert not _labelled(testbed, ref)
    finally:
        # The app cluster comes back with the objects the stack dropped: away with them, as its owner would.
        kinds = "secrets,serviceaccounts,services,rolebindings,clusterroles,clusterrolebindings,apiservices,configmaps"
        label = f"app.kubernetes.io/instance={EXTERNAL_NAME}"
        testbed.kubectl(APP_CLUSTER, "delete", kinds, "-A", "-l", label, "--ignore-not-found", check=False)
        testbed.kubectl(APP_CLUSTER, "delete", "apiservice", *SEEDED_APISERVICES, "--ignore-not-found", check=False)
        assert app_objects(testbed) == []
