"""The Python programs users run (examples/python, the root platform program), by the real CLI and engine.

Each program is copied as it is committed and run with ``pulumi`` commands through
``testbed.pulumi_program`` (the SDK's language server stands in for ``pulumi-language-python``,
which cannot be built here; see testbed/README.md). Stack config is set with ``pulumi config
set`` as the examples' READMEs say.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from claims import (
    CLUSTER_CLAIM,
    CLUSTER_RESOURCE,
    apiservice_exists,
    apply_claim,
    cp_claim,
    delete_cp_claim,
    is_released,
    kube_system_uid,
    remove_install,
    wait_available,
)
from cli_project import CliProject
from component_helpers import as_token
from connector_fixtures import SERVICE_NAMESPACE, ConnectorProcess, control_plane_token, free_port, start_connector
from upbound_proxy import ACCOUNT, CONTROL_PLANE_NAME, PREFIX, UpboundProxy

from mcp_connector.connector.http.tls import ensure_serving_cert
from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE, REPO_ROOT, podman
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

SEEDED_APISERVICES = [
    "v1alpha1.db.example.org",
    "v1alpha1.k8s.starter.org",
    "v1alpha1.storage.example.org",
    "v1beta1.db.example.org",
]


@pytest.fixture
def proxy(testbed: Testbed, tmp_path: Path) -> Iterator[UpboundProxy]:
    with UpboundProxy(testbed, tmp_path) as running:
        yield running


def test_python_example_with_an_upbound_token(
    testbed: Testbed, pulumi_tools: None, proxy: UpboundProxy, tmp_path: Path
) -> None:
    """examples/python: Upbound token, in-cluster connector (2 replicas), Keep on disconnect."""
    project = CliProject.copy_of(
        REPO_ROOT / "examples" / "python",
        tmp_path,
        # The program and its hook trust the stand-in Upbound host as they would trust a public CA.
        env={"SSL_CERT_FILE": str(proxy.ca_file)},
        # No kubelet here: the connector's pods never run, so Pulumi must not wait for them.
        await_deployments=False,
    )
    assert project.python
    project.init_stack(
        "e2e",
        {
            "kubernetes:kubeconfig": str(testbed.app_cluster.kubeconfig),
            "upbound:account": ACCOUNT,
            "upbound:controlPlane": CONTROL_PLANE_NAME,
            "upbound:host": f"127.0.0.1:{proxy.port}",
            "upbound:claimNamespace": testbed.claim_namespace,
            "image": podman.image_ref(),
        },
        secrets={"upbound:token": control_plane_token(testbed, "mcp-e2e-python-example")},
    )
    destroyed = False
    try:
        project.run("up", "--yes", "--skip-preview")
        outputs = project.outputs()
        assert outputs["clusterId"] == kube_system_uid(testbed)
        assert sorted(outputs["claimApis"]) == [
            "db.example.org/v1alpha1/PostgreSQLInstance",
            "db.example.org/v1beta1/PostgreSQLInstance",
            "k8s.starter.org/v1alpha1/KubernetesCluster",
            "storage.example.org/v1alpha1/Bucket",
        ]
        # Discovery went to the control plane through the Upbound URL the token form makes.
        assert proxy.requests and all(path.startswith(PREFIX) for path in proxy.requests), set(proxy.requests)
        deployment = testbed.kubectl_json(APP_CLUSTER, "get", "deployment", "mcp-connector", "-n", "kube-system")
        assert deployment["spec"]["replicas"] == 2
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
        testbed.kubectl(APP_CLUSTER, "get", "pdb", "mcp-connector", "-n", "kube-system")
        secret = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "mcp-connector-credentials", "-n", "kube-system")
        kubeconfig = yaml.safe_load(base64.b64decode(next(iter(secret["data"].values()))))
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{proxy.port}{PREFIX}"
        for name in SEEDED_APISERVICES:
            assert apiservice_exists(testbed, name), name

        project.run("preview", "--diff", "--expect-no-changes")

        # Disconnect: the hook asks the control plane (through the Upbound host) which claims stay.
        before = len(proxy.requests)
        project.run("destroy", "--yes", "--run-program")
        destroyed = True
        assert len(proxy.requests) > before
        for name in SEEDED_APISERVICES:
            assert not apiservice_exists(testbed, name), name
        gone = testbed.kubectl(APP_CLUSTER, "get", "deployment", "mcp-connector", "-n", "kube-system", check=False)
        assert gone.returncode != 0
    finally:
        if not destroyed and project.run("destroy", "--yes", "--run-program", check=False).returncode:
            for instance in ("mcp-connector",):
                remove_install(testbed, instance)
        project.run("stack", "rm", "--yes", "--force", check=False)


def test_root_program_connects_a_claim_and_releases_it(testbed: Testbed, pulumi_tools: None, tmp_path: Path) -> None:
    """The root program (Pulumi.yaml, __main__.py), configured only by stack config, external connector."""
    cluster_id = str(uuid.uuid4())
    name = "mcp-root-e2e"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE, check=False)
    connector = start_connector(testbed, cluster_id=cluster_id, service_name=name)
    project = CliProject.copy_of(REPO_ROOT, tmp_path, files=["Pulumi.yaml", "__main__.py"])
    assert project.python
    app_ns = f"root-{cluster_id[:8]}"
    ref = contract.AppRef(cluster_id, app_ns, "p1-cluster")
    destroyed = False
    try:
        project.init_stack(
            "e2e",
            {
                "kubernetes:kubeconfig": str(testbed.app_cluster.kubeconfig),
                "mcp-connector:claimNamespace": testbed.claim_namespace,
                "mcp-connector:name": name,
                "mcp-connector:namespace": SERVICE_NAMESPACE,
                "mcp-connector:clusterId": cluster_id,
                "mcp-connector:mode": f"localhost:{connector.port}",
                "mcp-connector:caBundle": connector.ca_bundle.decode(),
                "mcp-connector:include": '["k8s.starter.org"]',
                "mcp-connector:onDisconnect": "Release",
            },
            secrets={"mcp-connector:controlPlaneKubeconfig": testbed.control_plane.kubeconfig.read_text()},
        )
        project.run("up", "--yes", "--skip-preview")
        outputs = project.outputs()
        assert outputs["clusterId"] == cluster_id
        assert outputs["appClusterUid"] == kube_system_uid(testbed)  # what a lost cluster's destroy is given
        assert outputs["apiserviceNames"] == ["v1alpha1.k8s.starter.org"]
        project.run("preview", "--diff", "--expect-no-changes")
        # The identity given as a value (as for an app cluster that is gone) is the same identity.
        project.run("config", "set", "mcp-connector:appClusterUid", "--", outputs["appClusterUid"])
        project.run("preview", "--diff", "--expect-no-changes")

        wait_available(testbed, "v1alpha1.k8s.starter.org")
        apply_claim(testbed, app_ns, CLUSTER_CLAIM, "p1")
        assert cp_claim(testbed, CLUSTER_RESOURCE, ref) is not None

        project.run("destroy", "--yes", "--run-program")
        destroyed = True
        claim = cp_claim(testbed, CLUSTER_RESOURCE, ref)
        assert claim is not None and is_released(claim, ref), "released, never deleted"
        assert not apiservice_exists(testbed, "v1alpha1.k8s.starter.org")
    finally:
        if not destroyed and project.run("destroy", "--yes", "--run-program", check=False).returncode:
            for instance in (name,):
                remove_install(testbed, instance)
        connector.stop()
        delete_cp_claim(testbed, CLUSTER_RESOURCE, ref)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)
        project.run("stack", "rm", "--yes", "--force", check=False)


def test_scripts_pulumi_passes_every_command_through_unchanged(pulumi_tools: None) -> None:
    """``scripts/pulumi`` adds no ``--yes`` of its own: ``destroy --preview-only`` previews, ``up`` asks as anywhere."""
    stack = f"e2e-wrapper-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_SKIP_CONFIRMATIONS"}
    env["MCP_PULUMI_STACK"] = stack

    def pulumi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO_ROOT / "scripts" / "pulumi"), *args],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    def resources() -> list[str]:
        exported = pulumi("stack", "export")
        assert exported.returncode == 0, exported.stdout + exported.stderr
        return [r["urn"] for r in json.loads(exported.stdout)["deployment"].get("resources") or []]

    try:
        assert pulumi("config", "set", "mcp-connector:connect", "false").returncode == 0
        asked = pulumi("up")
        assert asked.returncode != 0 and "--yes" in asked.stdout + asked.stderr, "non-interactive up wants --yes"
        done = pulumi("up", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        before = resources()
        assert any("pulumi:pulumi:Stack" in urn for urn in before)
        for args in (("destroy", "--preview-only"), ("destroy", "--preview-only", "--run-program")):
            preview = pulumi(*args)
            assert preview.returncode == 0, f"{args}: {preview.stdout}{preview.stderr}"
            assert "cannot be used together" not in preview.stdout + preview.stderr
            assert "pulumi:pulumi:Stack" in preview.stdout, preview.stdout
            assert resources() == before, f"{args} changed nothing"
    finally:
        pulumi("stack", "rm", "--yes", "--force")


@pytest.mark.timeout(900)
def test_root_program_connects_the_secure_way(testbed: Testbed, pulumi_tools: None, tmp_path: Path) -> None:
    """``platformKubeconfig`` (what ``make demo`` uses): the cluster's own control-plane namespace, and a
    connector that runs with only the scoped token the component made, refused (403) anywhere else."""
    cluster_id = str(uuid.uuid4())
    namespace = f"mcp-{cluster_id}"
    name = "mcp-root-scoped"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE, check=False)
    work, port = tmp_path / "connector", free_port()
    ensure_serving_cert(work / "certs", [f"{name}.{SERVICE_NAMESPACE}.svc"])  # the CA, known before it runs
    project = CliProject.copy_of(REPO_ROOT, tmp_path, files=["Pulumi.yaml", "__main__.py"])
    app_ns = f"scoped-{cluster_id[:8]}"
    ref = contract.AppRef(cluster_id, app_ns, "s1-cluster")
    started: list[ConnectorProcess] = []

    def start_when_credentials_exist() -> None:
        """As the demo does: the connector's only credential is the one `up` puts into the app cluster."""
        secret = eventually(
            lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", f"{name}-credentials", "-n", SERVICE_NAMESPACE),
            timeout=240, what="the credentials Secret",
        )  # fmt: skip
        scoped = work / "scoped.kubeconfig"
        scoped.write_text(base64.b64decode(secret["data"]["kubeconfig"]).decode())
        started.append(start_connector(
            testbed, cluster_id=cluster_id, control_plane_kubeconfig=scoped, service_name=name,
            claim_namespace=namespace, port=port, work=work, wait=False,
        ))  # fmt: skip

    starter = threading.Thread(target=start_when_credentials_exist, daemon=True)
    destroyed = False
    try:
        project.init_stack(
            "e2e",
            {
                "kubernetes:kubeconfig": str(testbed.app_cluster.kubeconfig),
                "mcp-connector:name": name,
                "mcp-connector:namespace": SERVICE_NAMESPACE,
                "mcp-connector:clusterId": cluster_id,
                "mcp-connector:mode": f"localhost:{port}",
                "mcp-connector:caBundle": (work / "certs" / "ca.crt").read_text(),
                "mcp-connector:include": '["k8s.starter.org"]',
            },
            secrets={"mcp-connector:platformKubeconfig": testbed.control_plane.kubeconfig.read_text()},
        )
        starter.start()
        project.run("up", "--yes", "--skip-preview")
        assert project.outputs()["controlPlaneNamespace"] == namespace
        starter.join(timeout=240)
        assert started, "the connector started with the scoped credentials"
        started[0].wait_ready()

        kubeconfig = yaml.safe_load((work / "scoped.kubeconfig").read_text())
        user = kubeconfig["users"][0]["user"]
        assert set(user) == {"token"}, "the app cluster holds only the scoped token"
        claims = "/apis/k8s.starter.org/v1alpha1/namespaces/{}/kubernetesclusters"
        assert as_token(testbed, user["token"], "GET", claims.format(namespace)) == 200
        for outside in ("default", testbed.claim_namespace, "crossplane-system"):
            assert as_token(testbed, user["token"], "GET", claims.format(outside)) == 403, outside
        assert as_token(testbed, user["token"], "GET", "/api/v1/secrets") == 403

        wait_available(testbed, "v1alpha1.k8s.starter.org")
        apply_claim(testbed, app_ns, CLUSTER_CLAIM, "s1")
        stored = cp_claim(testbed, CLUSTER_RESOURCE, ref, namespace=namespace)
        assert stored is not None and contract.app_ref_of(stored) == ref, "the claim went into its own namespace"

        project.run("destroy", "--yes", "--run-program")
        destroyed = True
        assert not apiservice_exists(testbed, "v1alpha1.k8s.starter.org")
    finally:
        if not destroyed and project.run("destroy", "--yes", "--run-program", check=False).returncode:
            remove_install(testbed, name)
        starter.join(timeout=5)
        for connector in started:
            connector.stop()
        delete_cp_claim(testbed, CLUSTER_RESOURCE, ref, namespace=namespace)
        testbed.kubectl(CONTROL_PLANE, "delete", "namespace", namespace, "--wait=false", check=False)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)
        project.run("stack", "rm", "--yes", "--force", check=False)
