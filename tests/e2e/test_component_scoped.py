"""Platform credentials: the component makes the cluster's own control-plane namespace and a token scoped to it.

The connector runs as a local process (external mode) with exactly the kubeconfig the component
put into the app cluster's credentials Secret, so every claim in this test goes through the
scoped identity; the platform (admin) kubeconfig only ever reaches Pulumi state.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from claims import CLUSTER_CLAIM, apply_claim, crossplane_secret_and_copy, wait_available
from component_helpers import CLUSTERS, EXTERNAL_NAME, as_token, log, stack_for
from component_stack import Program, Setting
from connector_fixtures import SERVICE_NAMESPACE, ConnectorProcess, start_connector
from pulumi import automation as auto

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e


def _writes_stopped_before_release(stdout: str) -> bool:
    """The connector's writer RoleBinding went before the Release began.

    The Disconnect holding the Release is deleted in the engine's last round, after the
    connector's objects, its control-plane RoleBinding among them: nothing can create a claim
    behind the Release's back.
    """
    gone = stdout.find(f"RoleBinding {EXTERNAL_NAME}-cp-role deleted")
    released = stdout.find("Release: released")
    return 0 <= gone < released


def test_platform_credentials_scope_the_connector_to_its_own_namespace(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    cluster_id = str(uuid.uuid4())
    namespace = f"mcp-{cluster_id}"
    other = f"mcp-other-{uuid.uuid4().hex[:8]}"
    testbed.kubectl(CONTROL_PLANE, "create", "namespace", other)
    placeholder = start_connector(cluster_id)
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name=EXTERNAL_NAME,
        args={
            "platform_kubeconfig": testbed.control_plane.kubeconfig.read_text(),
            "cluster_id": cluster_id,
            "namespace": SERVICE_NAMESPACE,
            "mode": f"localhost:{placeholder.port}",
            "ca_bundle": placeholder.ca_bundle.decode(),
            "on_disconnect": "Release",
        },
    )
    app_ns = f"e2e-{cluster_id[:8]}"
    scoped: ConnectorProcess | None = None
    try:
        with stack_for(tmp_path, Program(setting)) as stack:
            up = stack.up(on_output=log)
            assert up.outputs["controlPlaneNamespace"].value == namespace
            testbed.kubectl(CONTROL_PLANE, "get", "namespace", namespace)

            # The app cluster holds only the scoped token.
            secret = testbed.kubectl_json(
                APP_CLUSTER, "get", "secret", f"{EXTERNAL_NAME}-credentials", "-n", SERVICE_NAMESPACE
            )
            kubeconfig_text = base64.b64decode(secret["data"]["kubeconfig"]).decode()
            user = yaml.safe_load(kubeconfig_text)["users"][0]["user"]
            assert set(user) == {"token"}, "no client certificate, no platform credential"
            token = user["token"]
            admin_cert = yaml.safe_load(testbed.control_plane.kubeconfig.read_text())["users"][0]["user"]
            assert admin_cert["client-certificate-data"] not in kubeconfig_text

            # What the token may do: its own namespace's claims and Secrets, nobody else's.
            claims = "/apis/k8s.starter.org/v1alpha1/namespaces/{}/kubernetesclusters"
            assert as_token(testbed, token, "GET", claims.format(namespace)) == 200
            assert as_token(testbed, token, "GET", f"/api/v1/namespaces/{namespace}/secrets") == 200
            assert as_token(testbed, token, "GET", claims.format(other)) == 403
            assert as_token(testbed, token, "GET", claims.format(testbed.claim_namespace)) == 403
            assert as_token(testbed, token, "GET", f"/api/v1/namespaces/{other}/secrets") == 403
            assert as_token(testbed, token, "GET", "/api/v1/secrets") == 403
            claim = yaml.safe_load(CLUSTER_CLAIM.read_text())
            assert as_token(testbed, token, "POST", claims.format(other), {**claim, "metadata": {"name": "x"}}) == 403

            # The connector runs with exactly that kubeconfig, and claims go through it.
            scoped_file = tmp_path / "scoped.kubeconfig"
            scoped_file.write_text(kubeconfig_text)
            scoped = start_connector_with(testbed, cluster_id, scoped_file, namespace)
            placeholder.stop()
            setting.args["mode"] = f"localhost:{scoped.port}"
            setting.args["ca_bundle"] = scoped.ca_bundle.decode()
            stack.up(on_output=log)
            wait_available(testbed, "v1alpha1.k8s.starter.org")
            apply_claim(testbed, app_ns, CLUSTER_CLAIM, "s1")
            ref = contract.AppRef(cluster_id, app_ns, "s1-cluster")
            stored = testbed.kubectl_json(
                CONTROL_PLANE, "get", CLUSTERS, contract.control_plane_name(ref), "-n", namespace
            )
            assert contract.app_ref_of(stored) == ref

            # Crossplane writes the claim's connection Secret (controlled by the claim, under the hashed
            # name) from the composition's connection details; the connector copies it.
            source = contract.connection_secret_name(contract.AppRef(cluster_id, app_ns, "my-cluster-kubeconfig"))
            copy = crossplane_secret_and_copy(testbed, source, namespace, app_ns, "my-cluster-kubeconfig")

            # Disconnect: writes are stopped, the claim released, the identity removed, the namespace kept.
            done = stack.destroy(run_program=True, on_output=log)
            assert "Release: released 1 claim(s)" in done.stdout
            assert _writes_stopped_before_release(done.stdout)
            again = stack.destroy(run_program=True, on_output=log)
            assert "mcp-connector disconnect" not in again.stdout, "a re-run converges and touches nothing"
            stored = testbed.kubectl_json(
                CONTROL_PLANE, "get", CLUSTERS, contract.control_plane_name(ref), "-n", namespace
            )
            assert contract.app_ref_of(stored) is None, "released"
            eventually(
                lambda: as_token(testbed, token, "GET", claims.format(namespace)) == 401, what="the token is revoked"
            )
            for kind in ("serviceaccount", "role", "rolebinding", "secret/mcp-connector-token"):
                gone = testbed.kubectl(CONTROL_PLANE, "get", kind, "-n", namespace, "-o", "name", check=False)
                assert "mcp-connector" not in gone.stdout, kind
            clusterroles = testbed.kubectl(CONTROL_PLANE, "get", "clusterroles", "-o", "name").stdout
            assert f"mcp-connector:{namespace}:discovery" not in clusterroles

            # The copied connection Secret stays where the app uses it, unmanaged, labelled for clean-up.
            left = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "my-cluster-kubeconfig", "-n", app_ns)
            assert left["data"] == copy["data"]
            assert left["metadata"]["labels"]["mcp-connector.upbound.io/connection-secret-for"] == cluster_id
    finally:
        if scoped is not None:
            scoped.stop()
        testbed.kubectl(CONTROL_PLANE, "delete", "namespace", other, namespace, "--wait=false", check=False)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)


def start_connector_with(testbed: Testbed, cluster_id: str, kubeconfig: Path, namespace: str) -> ConnectorProcess:
    """A connector that knows only the scoped kubeconfig and its claim namespace."""
    return start_connector(
        testbed,
        cluster_id=cluster_id,
        control_plane_kubeconfig=kubeconfig,
        service_name=EXTERNAL_NAME,
        extra_args=["--claim-namespace", namespace],
    )


def _exec_kubeconfig(testbed: Testbed, tmp_path: Path) -> str:
    """The control plane's admin kubeconfig with its client certificate coming from an exec plugin."""
    config = yaml.safe_load(testbed.control_plane.kubeconfig.read_text())
    user = config["users"][0]["user"]
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": base64.b64decode(user["client-certificate-data"]).decode(),
            "clientKeyData": base64.b64decode(user["client-key-data"]).decode(),
        },
    }
    plugin = tmp_path / "cp-credential-plugin"
    plugin.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(credential))})\n")
    plugin.chmod(0o700)
    config["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never"}
    }
    return str(yaml.safe_dump(config))


def test_exec_plugin_kubeconfigs_work_where_a_plugin_can_run(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    kubeconfig = _exec_kubeconfig(testbed, tmp_path)
    cluster_id = str(uuid.uuid4())
    connector = start_connector(cluster_id)
    base = {
        "cluster_id": cluster_id,
        "namespace": SERVICE_NAMESPACE,
        "mode": f"localhost:{connector.port}",
        "ca_bundle": connector.ca_bundle.decode(),
        "on_disconnect": "Release",
    }
    app_kubeconfig = testbed.app_cluster.kubeconfig.read_text()

    # Given to the connector as it is, an exec plugin could not run in its pod: refused, saying why.
    given_args = {**base, "claim_namespace": testbed.claim_namespace, "control_plane_kubeconfig": kubeconfig}
    given = Setting(app_kubeconfig=app_kubeconfig, name=EXTERNAL_NAME, args=given_args)
    with stack_for(tmp_path / "given", Program(given)) as stack:
        with pytest.raises(auto.errors.CommandError) as refused:
            stack.preview(on_output=log)
        message = " ".join(str(refused.value).split())
        assert "runs the exec plugin" in message and "pod cannot run" in message and "platform_kubeconfig" in message

    # As platform credentials it only runs in the program: discovery, the scoped identity and the hook.
    platform = Setting(
        app_kubeconfig=app_kubeconfig, name=EXTERNAL_NAME, args={**base, "platform_kubeconfig": kubeconfig}
    )
    with stack_for(tmp_path / "platform", Program(platform)) as stack:
        up = stack.up(on_output=log)
        assert up.outputs["controlPlaneNamespace"].value == f"mcp-{cluster_id}"
        stack.preview(diff=True, expect_no_changes=True, on_output=log)
        done = stack.destroy(run_program=True, on_output=log)
        assert "Release: released 0 claim(s)" in done.stdout and _writes_stopped_before_release(done.stdout)
    testbed.kubectl(CONTROL_PLANE, "delete", "namespace", f"mcp-{cluster_id}", "--wait=false", check=False)
