"""Disconnecting with the real engine: only a real disconnect disconnects, and a failing one changes nothing.

Every test connects an external-mode McpConnector (a local connector process behind an
ExternalName Service) with its own cluster ID, makes claims through the app cluster, and
then does something that must (or must not) run the disconnect hook.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import connector_fixtures
import pytest
from claims import (
    CLUSTER_CLAIM,
    DB_CLAIM,
    apiservice_exists,
    apply_claim,
    cp_claim,
    crossplane_secret_and_copy,
    is_labelled,
    is_released,
    wait_available,
)
from component_helpers import (
    CLUSTERS,
    DATABASES,
    SEEDED_APISERVICES,
    app_objects,
    as_token,
    external_setting,
    log,
    preview_destroy,
    stack_for,
)
from component_stack import Program, Setting
from connector_fixtures import ConnectorProcess, TcpRelay, control_plane_token
from control_plane_proxy import HoldingProxy
from fault_tools import kill_session
from pulumi import automation as auto

from mcp_connector.core import contract
from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector_component.credentials import to_kubeconfig
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def connected(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> Iterator[Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]]:
    """Connect with a given control-plane kubeconfig, make one claim through the app cluster."""
    namespaces: list[str] = []
    with contextlib.ExitStack() as stacks:

        def connect(kubeconfig: str, **args: Any) -> tuple[Setting, auto.Stack, contract.AppRef]:
            cluster_id = str(uuid.uuid4())
            setting = external_setting(testbed, start_connector(cluster_id), cluster_id, kubeconfig, **args)
            stack = stacks.enter_context(stack_for(tmp_path, Program(setting)))
            stack.up(on_output=log)
            app_ns = f"e2e-{cluster_id[:8]}"
            namespaces.append(app_ns)
            wait_available(testbed, "v1alpha1.k8s.starter.org")
            apply_claim(testbed, app_ns, CLUSTER_CLAIM, "d1")
            ref = contract.AppRef(cluster_id, app_ns, "d1-cluster")
            claim = cp_claim(testbed, CLUSTERS, ref)
            assert claim is not None and is_labelled(claim, ref)
            return setting, stack, ref

        yield connect
    for namespace in namespaces:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def _kubeconfig(testbed: Testbed, token: str, *, url: str | None = None) -> str:
    access = ControlPlaneAccess(
        url=url or testbed.control_plane.apiserver_url, token=token, ca_pem=testbed.control_plane.ca_cert.read_bytes()
    )
    return to_kubeconfig(access, name="e2e")


def _urns(stack: auto.Stack) -> list[str]:
    return sorted(r["urn"] for r in stack.export_stack().deployment.get("resources") or [])


def _labelled(testbed: Testbed, ref: contract.AppRef) -> bool:
    claim = cp_claim(testbed, CLUSTERS, ref)
    return claim is not None and is_labelled(claim, ref)


def test_unreachable_control_plane_leaves_everything_and_a_rerun_completes(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    relay = TcpRelay("127.0.0.1", int(testbed.control_plane.apiserver_url.rsplit(":", 1)[1]))
    relay.start()
    try:
        token = control_plane_token(testbed)
        setting, stack, ref = connected(
            _kubeconfig(testbed, token, url=f"https://127.0.0.1:{relay.port}"), on_disconnect="Release"
        )
        urns, objects = _urns(stack), app_objects(testbed)
        assert any("APIService" in urn for urn in urns) and objects

        relay.stop()
        # A destroy runs the program, whose discovery cannot reach the control plane: it stops, saying so.
        with pytest.raises(auto.errors.CommandError) as failed:
            stack.destroy(run_program=True, on_output=log)
        assert "cannot discover claim APIs" in str(failed.value) and "pin them with claim_apis" in str(failed.value)
        assert _urns(stack) == urns and app_objects(testbed) == objects
        # Pinned, the program needs no discovery; the hook cannot release and stops the destroy before anything.
        setting.args["claim_apis"] = ["kubernetesclusters.k8s.starter.org/v1alpha1"]
        with pytest.raises(auto.errors.CommandError) as failed:
            stack.destroy(run_program=True, on_output=log)
        assert "stopped before deleting anything" in str(failed.value) and "Re-run" in str(failed.value)
        assert _urns(stack) == urns and app_objects(testbed) == objects
        del setting.args["claim_apis"]

        # Remove the component with the control plane gone: the hook (stored credentials) cannot release.
        setting.connect = False
        with pytest.raises(auto.errors.CommandError) as failed:
            stack.up(on_output=log)
        message = str(failed.value)
        assert "stopped before deleting anything" in message and "Re-run" in message, message
        assert f"127.0.0.1:{relay.port}" in message and token not in message
        assert _urns(stack) == urns, "the stack is exactly as it was"
        assert app_objects(testbed) == objects, "so is the app cluster"
        wait_available(testbed, "v1alpha1.k8s.starter.org")
        assert _labelled(testbed, ref)

        relay.start()
        done = stack.up(on_output=log)
        assert "Release: released 1 claim(s)" in done.stdout
        claim = cp_claim(testbed, CLUSTERS, ref)
        assert claim is not None and is_released(claim, ref)
        assert app_objects(testbed) == []
        assert [u for u in _urns(stack) if "McpConnector" in u] == []
    finally:
        relay.stop()


def test_revoked_token_blocks_the_hook_and_current_credentials_finish_it(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    account = f"mcp-e2e-revocable-{uuid.uuid4().hex[:6]}"
    revoked = control_plane_token(testbed, account)
    setting, stack, ref = connected(_kubeconfig(testbed, revoked), on_disconnect="Release")
    urns, objects = _urns(stack), app_objects(testbed)
    testbed.kubectl(CONTROL_PLANE, "delete", "serviceaccount", account, "-n", testbed.claim_namespace)
    eventually(lambda: as_token(testbed, revoked, "GET", "/api") == 401, what="the token to be rejected")

    # The component is gone from the program: the hook has only the stored (revoked) token.
    setting.connect = False
    with pytest.raises(auto.errors.CommandError) as failed:
        stack.up(on_output=log)
    assert "HTTP 401" in str(failed.value) and revoked not in str(failed.value)
    assert _urns(stack) == urns and app_objects(testbed) == objects
    assert _labelled(testbed, ref)

    # Destroy with the program giving a fresh token: the hook uses the stack's current credentials.
    setting.connect = True
    setting.args["control_plane_kubeconfig"] = _kubeconfig(testbed, control_plane_token(testbed))
    done = stack.destroy(run_program=True, on_output=log)
    assert "Release: released 1 claim(s)" in done.stdout
    claim = cp_claim(testbed, CLUSTERS, ref)
    assert claim is not None and is_released(claim, ref)
    assert app_objects(testbed) == []


def test_replacements_renames_and_refreshes_never_disconnect(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    setting, stack, ref = connected(testbed.control_plane.kubeconfig.read_text(), on_disconnect="Release")

    def children() -> list[str]:
        resources = stack.export_stack().deployment.get("resources") or []
        component = next(r["urn"] for r in resources if r["type"] == "mcp-connector:index:McpConnector")
        return [r["urn"] for r in resources if r.get("parent") == component and not r.get("external")]

    def unchanged(result: auto.UpResult) -> None:
        assert "Release: released" not in result.stdout, result.stdout[-3000:]
        assert "stopped the connector's writes" not in result.stdout
        assert _labelled(testbed, ref)

    # One child of each type replaced on its own, then all of them at once (the guard included).
    one_of_each = {urn.split("::")[-2]: urn for urn in reversed(children())}
    for urn in sorted(one_of_each.values()):
        replaced = stack.up(replace=[urn], on_output=log)
        unchanged(replaced)
        if "DisconnectGuard" in urn:
            assert "is being replaced; the connection stays as it is" in replaced.stdout
    unchanged(stack.up(replace=children(), on_output=log))

    # The connector's Secret deleted out of band, then refreshed and put back.
    testbed.kubectl(APP_CLUSTER, "delete", "secret", "mcp-component-e2e-credentials", "-n", "mcp-connector-e2e")
    stack.refresh(on_output=log)
    unchanged(stack.up(on_output=log))
    testbed.kubectl(APP_CLUSTER, "get", "secret", "mcp-component-e2e-credentials", "-n", "mcp-connector-e2e")

    # The app cluster's provider replaced: every object in the cluster is replaced, the guard is not.
    resources = stack.export_stack().deployment["resources"]
    provider = next(r["urn"] for r in resources if r["type"] == "pulumi:providers:kubernetes")
    unchanged(stack.up(replace=[provider], on_output=log))

    # The component renamed (with an alias, so its children follow): the guard is updated, not replaced.
    setting.aliases, setting.name = [setting.name], "mcp-component-e2e-renamed"
    renamed = stack.up(on_output=log)
    unchanged(renamed)
    setting.aliases, setting.name = [setting.name], "mcp-component-e2e"
    unchanged(stack.up(on_output=log))
    stack.preview(diff=True, expect_no_changes=True, on_output=log)

    # Still connected: the claim is served through the app cluster.
    wait_available(testbed, "v1alpha1.k8s.starter.org")
    got = testbed.kubectl_json(APP_CLUSTER, "get", CLUSTERS, ref.name, "-n", ref.namespace)
    assert got["metadata"]["name"] == ref.name

    # And a real disconnect still releases.
    done = stack.destroy(run_program=True, on_output=log)
    assert "Release: released 1 claim(s)" in done.stdout


def test_previews_report_what_a_disconnect_would_do_and_change_nothing(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    setting, stack, ref = connected(testbed.control_plane.kubeconfig.read_text(), on_disconnect="Release")
    urns = _urns(stack)
    wanted = f"would release 1 claim(s) (cluster {ref.cluster_id}"
    preview = preview_destroy(stack)
    assert wanted in preview.stdout and f"KubernetesCluster {ref.namespace}/{ref.name}" in preview.stdout
    setting.connect = False
    removal = stack.preview(on_output=log)
    assert wanted in removal.stdout
    setting.connect, setting.args["on_disconnect"] = True, "Keep"
    keep = preview_destroy(stack)
    assert "Keep: 1 claim(s) would stay with their labels" in keep.stdout
    assert _urns(stack) == urns and _labelled(testbed, ref)
    assert apiservice_exists(testbed, "v1alpha1.k8s.starter.org")


def test_interrupted_release_converges(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]], tmp_path: Path
) -> None:
    with HoldingProxy(testbed, tmp_path) as proxy:
        setting, stack, first = connected(proxy.kubeconfig(control_plane_token(testbed)), on_disconnect="Release")
        cluster_id, app_ns = first.cluster_id, first.namespace
        apply_claim(testbed, app_ns, CLUSTER_CLAIM, "d2")
        apply_claim(testbed, app_ns, DB_CLAIM, "d3")
        refs = {
            (CLUSTERS, first),
            (CLUSTERS, contract.AppRef(cluster_id, app_ns, "d2-cluster")),
            (DATABASES, contract.AppRef(cluster_id, app_ns, "d3-db")),
        }
        assert all(cp_claim(testbed, res, ref) for res, ref in refs)

        # Destroy in a child process; the proxy lets one release through and stalls the next: kill it there.
        setting_file = tmp_path / "setting.json"
        setting.save(setting_file)
        proxy.hold_writes_after(1)
        log_file = tmp_path / "destroy.log"
        with log_file.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("component_stack.py")), "destroy",
                 str(tmp_path / "pulumi"), str(setting_file)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ),
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while not proxy.holding.wait(0.2):
            assert child.poll() is None, log_file.read_text()[-3000:]
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
        kill_session(child.pid)  # the plugins too: the CLI starts them in process groups of their own
        child.wait(timeout=30)
        eventually(proxy.held_clients_gone, what="the proxy to see the killed hook's held request go")
        proxy.release()
        claims = {ref: cp_claim(testbed, res, ref) for res, ref in refs}
        assert sum(is_released(c, r) for r, c in claims.items() if c) == 1
        assert sum(is_labelled(c, r) for r, c in claims.items() if c) == 2
        # The Disconnect goes in the engine's last round (nothing depends on it): the connector's
        # objects are gone, the Disconnect is still in the state, so the re-run releases the rest.
        assert any(":Disconnect::" in urn for urn in _urns(stack)), "the Disconnect stays until its hook completes"

        # Re-running the destroy converges. The killed CLI leaves its lock: `pulumi cancel`, as a person would.
        with contextlib.suppress(auto.errors.CommandError):
            stack.cancel()
        rerun = stack.destroy(run_program=True, on_output=log)
        assert "Release: released 2 claim(s), 1 already released" in rerun.stdout
        for res, ref in refs:
            claim = cp_claim(testbed, res, ref)
            assert claim is not None and is_released(claim, ref), ref
        for name in SEEDED_APISERVICES:
            assert not apiservice_exists(testbed, name), name


def test_narrowing_include_is_shown_and_release_still_finds_the_dropped_kind(
    testbed: Testbed, connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]]
) -> None:
    setting, stack, ref = connected(testbed.control_plane.kubeconfig.read_text(), on_disconnect="Release")
    setting.args["include"] = ["*.example.org"]
    preview = stack.preview(diff=True, on_output=log)
    assert "- kubernetes:apiregistration.k8s.io/v1:APIService" in preview.stdout
    warning = f"{CLUSTERS} is not connected (include/exclude), but 1 claim(s) of this cluster are in it"
    shown = " ".join((preview.stdout + preview.stderr).split())  # warnings go to stderr, wrapped
    assert warning in shown and f"KubernetesCluster {ref.namespace}/{ref.name}" in shown, shown[-2000:]
    stack.up(on_output=log)
    assert not apiservice_exists(testbed, "v1alpha1.k8s.starter.org")
    assert _labelled(testbed, ref), "narrowing changes nothing in the control plane"

    done = stack.destroy(run_program=True, on_output=log)
    assert "Release: released 1 claim(s)" in done.stdout, "found by the cluster's label, not by the selection"
    claim = cp_claim(testbed, CLUSTERS, ref)
    assert claim is not None and is_released(claim, ref)


def test_credentials_known_only_at_apply(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    cluster_id = str(uuid.uuid4())
    setting = external_setting(
        testbed, start_connector(cluster_id), cluster_id, testbed.control_plane.kubeconfig.read_text()
    )
    setting.late_credentials = True
    with stack_for(tmp_path, Program(setting)) as stack:
        with pytest.raises(auto.errors.CommandError) as failed:
            stack.preview(on_output=log)
        assert "not known until apply" in str(failed.value) and "claim_apis" in str(failed.value)

        setting.args["claim_apis"] = ["k8s.starter.org/v1alpha1/KubernetesCluster"]
        preview = stack.preview(on_output=log)
        up = stack.up(on_output=log)
        created = dict(up.summary.resource_changes or {})
        planned = {str(getattr(k, "value", k)): v for k, v in preview.change_summary.items()}
        assert planned.get("create") == created.get("create"), ("the preview shows every child", planned, created)
        assert up.outputs["apiserviceNames"].value == ["v1alpha1.k8s.starter.org"]
        wait_available(testbed, "v1alpha1.k8s.starter.org")


def test_two_connectors_in_one_program_share_one_hook(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    first_id, second_id = str(uuid.uuid4()), str(uuid.uuid4())
    kubeconfig = testbed.control_plane.kubeconfig.read_text()
    setting = external_setting(
        testbed, start_connector(first_id), first_id, kubeconfig, include=["kubernetesclusters.k8s.starter.org"]
    )
    second = connector_fixtures.start_connector(testbed, cluster_id=second_id, service_name="mcp-component-e2e-two")
    try:
        setting.others["mcp-component-e2e-two"] = {
            **external_setting(testbed, second, second_id, kubeconfig).args,
            "include": ["*.example.org"],
        }
        with stack_for(tmp_path, Program(setting)) as stack:
            stack.up(on_output=log)
            for name in SEEDED_APISERVICES:
                wait_available(testbed, name)
            stack.preview(diff=True, expect_no_changes=True, on_output=log)
            done = stack.destroy(run_program=True, on_output=log)
            for cluster_id in (first_id, second_id):
                assert f"Keep: 0 claim(s) stay with their labels (cluster {cluster_id}" in done.stdout
    finally:
        second.stop()


def test_release_leaves_copied_connection_secrets_in_place(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    cluster_id = str(uuid.uuid4())
    connector = start_connector(cluster_id)
    setting = external_setting(
        testbed, connector, cluster_id, testbed.control_plane.kubeconfig.read_text(), on_disconnect="Release"
    )
    app_ns = f"e2e-{cluster_id[:8]}"
    ref = contract.AppRef(cluster_id, app_ns, "cs-cluster")
    try:
        with stack_for(tmp_path, Program(setting)) as stack:
            stack.up(on_output=log)
            wait_available(testbed, "v1alpha1.k8s.starter.org")
            apply_claim(testbed, app_ns, CLUSTER_CLAIM, "cs")
            claim = cp_claim(testbed, CLUSTERS, ref)
            assert claim is not None
            # Crossplane writes the claim's connection Secret (controlled by the claim, under the
            # hashed name) from the composition's connection details; the connector copies it.
            source = contract.connection_secret_name(contract.AppRef(cluster_id, app_ns, "my-cluster-kubeconfig"))
            copy = crossplane_secret_and_copy(testbed, source, testbed.claim_namespace, app_ns, "my-cluster-kubeconfig")

            done = stack.destroy(run_program=True, on_output=log)
            assert "Release: released 1 claim(s)" in done.stdout
            # The connector here outlives its APIServices (a local process): it sees the claim go and
            # must still keep the copy, because the claim was released, not deleted.
            eventually(
                lambda: "connection secret kept: its claim was released" in connector.log_file.read_text(),
                what="the connector leaving the released claim's copy",
            )
            left = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "my-cluster-kubeconfig", "-n", app_ns)
            assert left["data"] == copy["data"]
            assert left["metadata"]["labels"]["mcp-connector.upbound.io/connection-secret-for"] == cluster_id
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)
