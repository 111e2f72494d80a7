"""McpConnector with the real Pulumi engine against the local test bed.

The connector runs out-of-cluster as a local process (the component's external mode points
an ExternalName Service at it); in-cluster mode is checked as rendered objects with Pulumi's
await turned off. Each test uses its own cluster ID, so Release never touches claims that
other tests (or other engineers' suites) made on the shared test bed.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import connector_fixtures
import pytest
from claims import CLUSTER_CLAIM, apiservice_exists, apply_claim, cp_claim, is_labelled, is_released, wait_available
from component_helpers import (
    BUCKET_XR,
    QUEUE_APISERVICE,
    REDIS_APISERVICE,
    SEEDED_APISERVICES,
    changes,
    external_setting,
    log,
    stack_for,
    token_kubeconfig,
)
from component_stack import Program, Setting
from connector_fixtures import ConnectorProcess
from cryptography import x509
from pulumi import automation as auto

from mcp_connector.core import contract
from testbed import APP_CLUSTER, podman, seed
from testbed.harness import Testbed
from testbed.kubelet import PodRunner

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------------------------------------


def test_connect_preview_new_claim_api_keep_reconnect_and_remove(
    testbed: Testbed, pulumi_tools: None, start_connector: Callable[[str], ConnectorProcess], tmp_path: Path
) -> None:
    cluster_id = str(uuid.uuid4())
    connector = start_connector(cluster_id)
    kubeconfig = testbed.control_plane.kubeconfig.read_text()
    setting = external_setting(testbed, connector, cluster_id, kubeconfig, on_disconnect="Keep")
    program = Program(setting)
    app_ns = f"e2e-{cluster_id[:8]}"
    ref = contract.AppRef(cluster_id, app_ns, "c1-cluster")
    xr_ref = contract.AppRef(cluster_id, app_ns, "c1-bucket")
    nxr = contract.Flavor.NAMESPACED_XR
    cp = testbed.control_plane.kubeconfig
    try:
        with stack_for(tmp_path, program) as stack:
            up = stack.up(on_output=log)
            assert sorted(up.outputs["apiserviceNames"].value) == sorted(SEEDED_APISERVICES)
            assert up.outputs["clusterId"].value == cluster_id
            assert up.outputs["controlPlaneNamespace"].value == testbed.claim_namespace

            # A second run changes nothing (the CLI fails the preview otherwise).
            stack.preview(diff=True, expect_no_changes=True, on_output=log)

            # A claim API (v1 XRD) and a namespaced XR API (v2 XRD) appear in the control plane:
            # preview shows + APIService for each.
            seed.apply_claim_api(cp, seed.REDIS_CACHE)
            seed.apply_claim_api(cp, seed.QUEUE)
            preview = stack.preview(diff=True, on_output=log)
            # + the APIServices; ~ the guard and the Disconnect, whose plan now covers the new kinds;
            # +- the `-served` ConfigMap listing the APIServices (pulumi-kubernetes replaces a
            # ConfigMap whose data changes); and the read of kube-system, the app cluster's identity.
            assert changes(preview) == {"create": 2, "update": 2, "replace": 1, "read": 1}, preview.change_summary
            assert "~ mcp-connector:index:Disconnect: (update)" in preview.stdout
            assert "+-kubernetes:core/v1:ConfigMap: (replace)" in preview.stdout
            assert "+ kubernetes:apiregistration.k8s.io/v1:APIService" in preview.stdout
            assert REDIS_APISERVICE in preview.stdout and QUEUE_APISERVICE in preview.stdout
            up = stack.up(on_output=log)
            assert {REDIS_APISERVICE, QUEUE_APISERVICE} <= set(up.outputs["apiserviceNames"].value)
            assert "cache.example.org/v1/RedisCache" in up.outputs["claimApis"].value
            assert "messaging.example.org/v1/Queue" in up.outputs["claimApis"].value

            # A claim and a namespaced XR applied through the app cluster land in the control plane.
            wait_available(testbed, "v1alpha1.k8s.starter.org")
            apply_claim(testbed, app_ns, CLUSTER_CLAIM, "c1")
            claim = cp_claim(testbed, "kubernetesclusters.k8s.starter.org", ref)
            assert claim is not None and is_labelled(claim, ref)
            wait_available(testbed, "v1alpha1.storage.example.org")
            apply_claim(testbed, app_ns, BUCKET_XR, "c1")
            xr = cp_claim(testbed, "buckets.storage.example.org", xr_ref, nxr)
            assert xr is not None and is_labelled(xr, xr_ref)

            # Without --run-program Pulumi refuses: the hook lives in the program.
            with pytest.raises(auto.errors.CommandError):
                stack.destroy(run_program=False, on_output=log)
            assert apiservice_exists(testbed, "v1alpha1.k8s.starter.org")

            # Disconnect with Keep: the claim stays, labelled; the APIServices go.
            destroyed = stack.destroy(run_program=True, on_output=log)
            assert "Keep: 2 claim(s) stay with their labels" in destroyed.stdout
            assert f"KubernetesCluster {app_ns}/c1-cluster" in destroyed.stdout
            assert f"Bucket {app_ns}/c1-bucket" in destroyed.stdout
            claim = cp_claim(testbed, "kubernetesclusters.k8s.starter.org", ref)
            assert claim is not None and is_labelled(claim, ref)
            for name in [*SEEDED_APISERVICES, REDIS_APISERVICE, QUEUE_APISERVICE]:
                assert not apiservice_exists(testbed, name), name
            again = stack.destroy(run_program=True, on_output=log)
            assert "mcp-connector disconnect" not in again.stdout
            deleted = [line for line in again.stdout.splitlines() if "deleted" in line and " kubernetes:" in line]
            assert deleted == [], "a second destroy touches nothing in the cluster"

            # Reconnecting with the same cluster ID brings the claim back into the app cluster.
            setting.args["on_disconnect"] = "Release"
            stack.up(on_output=log)
            wait_available(testbed, "v1alpha1.k8s.starter.org")
            got = testbed.kubectl_json(
                APP_CLUSTER, "get", "kubernetesclusters.k8s.starter.org", "c1-cluster", "-n", app_ns
            )
            assert got["metadata"]["name"] == "c1-cluster"

            # Removing the component from the program and running up disconnects too (Release).
            setting.connect = False
            removed = stack.up(on_output=log)
            assert "Release: released 2 claim(s)" in removed.stdout
            claim = cp_claim(testbed, "kubernetesclusters.k8s.starter.org", ref)
            assert claim is not None and is_released(claim, ref), "released, never deleted"
            xr = cp_claim(testbed, "buckets.storage.example.org", xr_ref, nxr)
            assert xr is not None and is_released(xr, xr_ref), "the XR is released too, never deleted"
            assert not apiservice_exists(testbed, "v1alpha1.k8s.starter.org")
    finally:
        seed.delete_claim_api(cp, seed.REDIS_CACHE)
        seed.delete_claim_api(cp, seed.QUEUE)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)


# Three rollouts of two real pods (up, the token rotation, the move), each awaited by Pulumi.
@pytest.mark.timeout(900)
def test_in_cluster_render_is_stable_and_token_rotation_rolls_pods(
    testbed: Testbed, pulumi_tools: None, cp_token: Callable[[], str], tmp_path: Path
) -> None:
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name="mcp-e2e-incluster",
        args={
            "claim_namespace": testbed.claim_namespace,
            "control_plane_kubeconfig": token_kubeconfig(testbed, cp_token()),
            "include": ["kubernetesclusters.k8s.starter.org"],
            "image": podman.image_ref(),
            "replicas": 2,
        },
    )
    program = Program(setting)
    # Pulumi awaits the Deployment (two ready pods) and the Service's endpoints: the pod runner plays
    # the kubelet for both namespaces the install lives in during the test.
    with (
        PodRunner.running("kube-system", "mcp-e2e-incluster") as runner,
        PodRunner.running("mcp-e2e-moved", "mcp-e2e-incluster"),
        stack_for(tmp_path, program) as stack,
    ):
        up = stack.up(on_output=log)
        assert len(runner.ready_pods()) == 2, runner.pods()
        assert up.outputs["apiserviceNames"].value == ["v1alpha1.k8s.starter.org"]
        uid = testbed.kubectl(APP_CLUSTER, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
        assert up.outputs["clusterId"].value == uid, "defaults to the kube-system namespace UID"
        deployment = testbed.kubectl_json(APP_CLUSTER, "get", "deployment", "mcp-e2e-incluster", "-n", "kube-system")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
        testbed.kubectl(APP_CLUSTER, "get", "pdb", "mcp-e2e-incluster", "-n", "kube-system")
        apiservice = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", "v1alpha1.k8s.starter.org")
        tls_name = _tls_secret_of(deployment)
        tls = testbed.kubectl_json(APP_CLUSTER, "get", "secret", tls_name, "-n", "kube-system")
        assert apiservice["spec"]["caBundle"] == tls["data"]["ca.crt"]
        _assert_serves(tls, apiservice, "mcp-e2e-incluster.kube-system.svc")

        # Fresh certificates are generated on every run, but the stored ones stick: no diff.
        stack.preview(diff=True, expect_no_changes=True, on_output=log)

        setting.args["control_plane_kubeconfig"] = token_kubeconfig(testbed, cp_token())
        preview = stack.preview(diff=True, on_output=log)
        # pulumi-kubernetes replaces a Secret whose data changes (credentials); the Deployment's
        # checksum annotation, and the guard's and the Disconnect's plan (the hook's credentials),
        # are updated in place.
        assert changes(preview) == {"replace": 1, "update": 3, "read": 1}, preview.change_summary
        assert "mcp-e2e-incluster-credentials" in preview.stdout
        assert "mcp-connector.upbound.io/config-checksum" in preview.stdout
        assert "eyJ" not in preview.stdout, "the token never shows in a diff"
        old_pods = {p["name"] for p in runner.pods()}
        rotated = stack.up(on_output=log)
        assert "mcp-connector disconnect" not in rotated.stdout, "rotating the token must not disconnect"
        rolled = testbed.kubectl_json(APP_CLUSTER, "get", "deployment", "mcp-e2e-incluster", "-n", "kube-system")
        assert rolled["status"].get("updatedReplicas") == 2 and rolled["status"].get("availableReplicas") == 2
        # up returned once the Deployment controller counted two new pods available; the runner
        # sees the old ones' deletion within its next rounds.
        runner.wait_pods(
            lambda ps: {p["name"] for p in ps if p["ready"] and not p["terminating"]}.isdisjoint(old_pods)
            and sum(p["ready"] and not p["terminating"] for p in ps) == 2,
            timeout=60, what="two ready pods of the new template only",
        )  # fmt: skip
        annotation = "mcp-connector.upbound.io/config-checksum"
        before = deployment["spec"]["template"]["metadata"]["annotations"][annotation]
        assert rolled["spec"]["template"]["metadata"]["annotations"][annotation] != before
        assert _tls_secret_of(rolled) == tls_name
        after_tls = testbed.kubectl_json(APP_CLUSTER, "get", "secret", tls_name, "-n", "kube-system")
        assert after_tls["data"] == tls["data"]

        # The install moves to another namespace: the certificate follows the Service's new DNS name.
        testbed.kubectl(APP_CLUSTER, "create", "namespace", "mcp-e2e-moved", check=False)
        setting.args["namespace"] = "mcp-e2e-moved"
        moved = stack.up(on_output=log)
        assert "mcp-connector disconnect" not in moved.stdout
        apiservice = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", "v1alpha1.k8s.starter.org")
        assert apiservice["spec"]["service"]["namespace"] == "mcp-e2e-moved"
        deployment = testbed.kubectl_json(APP_CLUSTER, "get", "deployment", "mcp-e2e-incluster", "-n", "mcp-e2e-moved")
        tls = testbed.kubectl_json(APP_CLUSTER, "get", "secret", _tls_secret_of(deployment), "-n", "mcp-e2e-moved")
        _assert_serves(tls, apiservice, "mcp-e2e-incluster.mcp-e2e-moved.svc")
        gone = testbed.kubectl(APP_CLUSTER, "get", "secret", tls_name, "-n", "kube-system", check=False)
        assert gone.returncode != 0, "the old certificate's Secret is removed"
        stack.preview(diff=True, expect_no_changes=True, on_output=log)


def _tls_secret_of(deployment: dict[str, Any]) -> str:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return str(volumes["tls"]["secret"]["secretName"])


def _assert_serves(tls: dict[str, Any], apiservice: dict[str, Any], dns_name: str) -> None:
    """The Secret's certificate carries the name the aggregator dials and chains to the APIService's caBundle."""
    ca = x509.load_pem_x509_certificate(base64.b64decode(apiservice["spec"]["caBundle"]))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert dns_name in names, names


@pytest.mark.parametrize("failure", ["wrong-token", "unreachable"])
def test_preview_fails_clearly_and_changes_nothing(
    testbed: Testbed, pulumi_tools: None, tmp_path: Path, failure: str
) -> None:
    secret_token = f"not-a-valid-token-{uuid.uuid4().hex}"
    url = (
        testbed.control_plane.apiserver_url
        if failure == "wrong-token"
        else f"https://127.0.0.1:{connector_fixtures.free_port()}"
    )
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name="mcp-e2e-broken",
        args={
            "claim_namespace": testbed.claim_namespace,
            "control_plane_kubeconfig": token_kubeconfig(testbed, secret_token, url=url),
            "image": podman.image_ref(),
        },
    )
    with stack_for(tmp_path, Program(setting)) as stack:
        for operation in (stack.preview, stack.up):
            with pytest.raises(auto.errors.CommandError) as failed:
                operation(on_output=log)
            message = str(failed.value)
            assert f"control plane {url}" in message
            cause = "credentials rejected (HTTP 401)" if failure == "wrong-token" else "cannot connect"
            assert cause in message
            assert secret_token not in message
            assert "Traceback" not in message
        for kind, name in (("secret", "mcp-e2e-broken-credentials"), ("serviceaccount", "mcp-e2e-broken")):
            assert testbed.kubectl(APP_CLUSTER, "get", kind, name, "-n", "kube-system", check=False).returncode != 0
        resources = stack.export_stack().deployment.get("resources") or []
        assert [
            r["type"] for r in resources if r["type"].startswith("kubernetes:") and "Provider" not in r["type"]
        ] in (
            [],
            ["kubernetes:core/v1:Namespace"],
        )


def test_existing_secret_credentials(testbed: Testbed, pulumi_tools: None, tmp_path: Path) -> None:
    """control_plane_secret: the component reads the kubeconfig from an existing Secret and mounts it."""
    secret = "mcp-e2e-cp-access"
    testbed.kubectl(
        APP_CLUSTER, "create", "secret", "generic", secret, "-n", "kube-system",
        f"--from-file=kubeconfig={testbed.control_plane.kubeconfig}",
    )  # fmt: skip
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name="mcp-e2e-secret",
        args={
            "claim_namespace": testbed.claim_namespace,
            "control_plane_secret": secret,
            "include": ["kubernetesclusters.k8s.starter.org"],
            "image": podman.image_ref(),
        },
    )
    try:
        with PodRunner.running("kube-system", "mcp-e2e-secret"), stack_for(tmp_path, Program(setting)) as stack:
            up = stack.up(on_output=log)
            assert up.outputs["claimApis"].value == ["k8s.starter.org/v1alpha1/KubernetesCluster"]
            deployment = testbed.kubectl_json(APP_CLUSTER, "get", "deployment", "mcp-e2e-secret", "-n", "kube-system")
            volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
            assert volumes["credentials"]["secret"]["secretName"] == secret
            gone = testbed.kubectl(
                APP_CLUSTER, "get", "secret", "mcp-e2e-secret-credentials", "-n", "kube-system", check=False
            )
            assert gone.returncode != 0, "no copy of the user's credentials is made"
            stack.preview(diff=True, expect_no_changes=True, on_output=log)
        assert testbed.kubectl(APP_CLUSTER, "get", "secret", secret, "-n", "kube-system", check=False).returncode == 0
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "secret", secret, "-n", "kube-system", "--ignore-not-found")
