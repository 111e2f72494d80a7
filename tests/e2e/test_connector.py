"""Issue 3 acceptance: kubectl against the app cluster works on claims that live in the control plane.

One connector process serves the app cluster through APIServices it manages itself
(``--manage-apiservices``) behind an ExternalName Service; a second one, with another cluster
ID, is called directly (playing the aggregator) to show two clusters never see each other.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from connector_fixtures import (
    ConnectorProcess,
    app,
    cluster_uid,
    fresh_namespace,
    serving,
    start_connector,
    wait_available,
)

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.seed import KUBERNETES_CLUSTER, REDIS_CACHE, apply_claim_api, delete_claim_api
from testbed.waiting import LineReader, eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "k8s.starter.org", "v1alpha1", "kubernetesclusters"
CLAIM_FILE = KUBERNETES_CLUSTER.example_claim_file
SEEDED_APISERVICES = ("v1alpha1.k8s.starter.org", "v1alpha1.db.example.org", "v1beta1.db.example.org")


def claim(name: str, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """The seed's example claim under another name (and namespace)."""
    body: dict[str, Any] = yaml.safe_load(CLAIM_FILE.read_text())
    body["metadata"] = {"name": name, **({"namespace": namespace} if namespace else {})}
    body["spec"].update(spec)
    return body


def cp_claims(tb: Testbed, *selector: str) -> list[dict[str, Any]]:
    args = ["get", PLURAL, "-n", tb.claim_namespace, *(["-l", ",".join(selector)] if selector else [])]
    return list(tb.kubectl_json(CONTROL_PLANE, *args)["items"])


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    """The connector serving the app cluster, with its APIServices Available."""
    with serving(testbed, SEEDED_APISERVICES) as proc:
        yield proc


@pytest.fixture
def namespace(testbed: Testbed) -> Iterator[str]:
    """A fresh app namespace, deleted afterwards (without waiting)."""
    with fresh_namespace(testbed) as name:
        yield name


def test_seed_claim_applied_lands_hashed_with_labels_and_shows_columns(
    testbed: Testbed, conn: ConnectorProcess
) -> None:
    app(testbed, "delete", "--ignore-not-found", "-n", "default", "-f", str(CLAIM_FILE))
    app(testbed, "apply", "-n", "default", "-f", str(CLAIM_FILE))
    uid = cluster_uid(testbed)
    hashed = contract.control_plane_name(contract.AppRef(uid, "default", "my-cluster"))
    stored = testbed.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", testbed.claim_namespace, hashed)
    assert stored["metadata"]["labels"] == {
        contract.APP_NAMESPACE_LABEL: "default",
        contract.APP_NAME_LABEL: "my-cluster",
        contract.APP_CLUSTER_LABEL: uid,
    }
    assert stored["spec"]["writeConnectionSecretToRef"]["name"].startswith("claim-")
    out = app(testbed, "get", PLURAL, "-n", "default").stdout
    header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
    assert header[:4] == ["NAME", "SYNCED", "READY", "CONNECTION-SECRET"]
    assert row[0] == "my-cluster" and "my-cluster-kubeconfig" in row
    got = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", "default", "my-cluster")
    assert got["metadata"]["name"] == "my-cluster" and got["metadata"]["namespace"] == "default"
    assert "labels" not in got["metadata"] or not any(k.startswith("mcp-connector") for k in got["metadata"]["labels"])
    assert got["spec"]["writeConnectionSecretToRef"]["name"] == "my-cluster-kubeconfig"
    all_ns = app(testbed, "get", PLURAL, "-A").stdout
    assert any(line.split()[:2] == ["default", "my-cluster"] for line in all_ns.splitlines())


def test_connection_secret_is_copied_and_removed(testbed: Testbed, conn: ConnectorProcess, namespace: str) -> None:
    """Crossplane writes the claim's connection Secret (the function's details); the connector copies it."""
    body = claim("db", namespace, id="first", writeConnectionSecretToRef={"name": "db-conn"})
    app(testbed, "apply", "-f", "-", input=json.dumps(body))
    source = contract.connection_secret_name(contract.AppRef(cluster_uid(testbed), namespace, "db-conn"))

    def copied() -> str:
        return str(testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", namespace, "db-conn")["data"]["kubeconfig"])

    assert eventually(copied, timeout=60) == "Zmlyc3Q="  # "first": the composition's detail is the claim's spec.id
    written = testbed.kubectl_json(CONTROL_PLANE, "get", "secret", "-n", testbed.claim_namespace, source)
    assert written["type"] == "connection.crossplane.io/v1alpha1"  # written by Crossplane's claim controller
    app(testbed, "patch", PLURAL, "db", "-n", namespace, "--type=merge", "-p", '{"spec":{"id":"second"}}')
    eventually(lambda: copied() == "c2Vjb25k", timeout=60)  # "second"
    app(testbed, "delete", PLURAL, "-n", namespace, "db")
    eventually(lambda: app(testbed, "get", "secret", "-n", namespace, "db-conn", check=False).returncode != 0)


def test_watch_sees_added_modified_deleted(testbed: Testbed, conn: ConnectorProcess, namespace: str) -> None:
    # A claim that exists before the watch: its ADDED line proves the watch has listed, and
    # everything after the listed resourceVersion is delivered from then on.
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("before", namespace)))
    watcher = subprocess.Popen(
        [
            str(Path(".venv/bin/kubectl").resolve()),
            "--kubeconfig",
            str(testbed.app_cluster.kubeconfig),
            "get",
            PLURAL,
            "-n",
            namespace,
            "-w",
            "--output-watch-events",
            "--request-timeout=60s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert watcher.stdout is not None
    events = LineReader(watcher.stdout)

    def event(kind: str, name: str) -> Callable[[str], bool]:
        return lambda line: line.split()[:2] == [kind, name]

    try:
        events.wait_for(event("ADDED", "before"), what="the initial list")
        app(testbed, "apply", "-f", "-", input=json.dumps(claim("watched", namespace)))
        events.wait_for(event("ADDED", "watched"), what="ADDED watched")
        # Crossplane's claim controller binds the claim and sets its conditions: SYNCED turns True.
        modified = events.wait_for(
            lambda line: event("MODIFIED", "watched")(line) and line.split()[2] == "True", what="MODIFIED to Synced"
        )
        app(testbed, "delete", PLURAL, "-n", namespace, "watched")
        events.wait_for(event("DELETED", "watched"), what="DELETED watched")
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        events.finish()
    assert "claim-" not in "\n".join(events.lines) and modified


def test_explain_api_resources_and_server_side_apply(testbed: Testbed, conn: ConnectorProcess, namespace: str) -> None:
    explained = app(testbed, "explain", "kubernetescluster.spec.parameters").stdout
    assert "KIND:       KubernetesCluster" in explained and "nodes" in explained
    resources = app(testbed, "api-resources", "--api-group", GROUP).stdout
    assert "kubernetesclusters" in resources and "KubernetesCluster" in resources
    body = claim("ssa", namespace)
    applied = app(testbed, "apply", "--server-side", "-f", "-", input=json.dumps(body)).stdout
    assert "serverside-applied" in applied
    body["spec"]["parameters"]["nodes"]["count"] = 5
    dry = app(testbed, "apply", "--server-side", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body))
    assert json.loads(dry.stdout)["spec"]["parameters"]["nodes"]["count"] == 5
    assert (
        testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "ssa")["spec"]["parameters"]["nodes"]["count"]
        == 3
    )
    app(testbed, "apply", "--server-side", "-f", "-", input=json.dumps(body))
    got = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "ssa")
    assert got["spec"]["parameters"]["nodes"]["count"] == 5
    # Client-side apply (merge patch with last-applied) and kubectl edit-style patches work too.
    body["spec"]["parameters"]["nodes"]["count"] = 4
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("csa", namespace)))
    app(
        testbed,
        "patch",
        PLURAL,
        "csa",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"parameters":{"nodes":{"count":2}}}}',
    )
    app(
        testbed,
        "patch",
        PLURAL,
        "csa",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/parameters/nodes/count","value":7}]',
    )
    assert (
        testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "csa")["spec"]["parameters"]["nodes"]["count"]
        == 7
    )
    app(testbed, "delete", PLURAL, "-n", namespace, "ssa", "csa")
    assert not cp_claims(testbed, f"{contract.APP_NAMESPACE_LABEL}={namespace}")


def test_same_name_in_two_namespaces_and_two_clusters_is_isolated(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    other_ns = f"{namespace}-b"
    app(testbed, "create", "namespace", other_ns)
    other = start_connector(testbed, cluster_id="e2e-other-cluster")
    try:
        app(testbed, "apply", "-f", "-", input=json.dumps(claim("same", namespace)))
        app(testbed, "apply", "-f", "-", input=json.dumps(claim("same", other_ns, id="other")))
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        status, created = other.call("POST", path, claim("same", namespace, id="third"))
        assert status == 201, created
        names = {c["metadata"]["name"] for c in cp_claims(testbed, f"{contract.APP_NAME_LABEL}=same")}
        assert len(names) == 3
        assert testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "same")["spec"]["id"] == "my-cluster"
        assert testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", other_ns, "same")["spec"]["id"] == "other"
        status, got = other.call("GET", f"{path}/same")
        assert status == 200 and got["spec"]["id"] == "third"
        status, listed = other.call("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
        assert [i["spec"]["id"] for i in listed["items"]] == ["third"]
        status, _ = other.call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{other_ns}/{PLURAL}/same")
        assert status == 404
        status, _ = other.call("DELETE", f"{path}/same")
        assert status == 200
        assert testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "same")["spec"]["id"] == "my-cluster"
    finally:
        other.stop()
        app(testbed, "delete", "namespace", other_ns, "--wait=false", check=False)


def test_namespace_deletion_with_claims_completes(testbed: Testbed, conn: ConnectorProcess) -> None:
    name = f"e2e-del-{secrets.token_hex(3)}"
    app(testbed, "create", "namespace", name)
    for n in ("one", "two"):
        app(testbed, "apply", "-f", "-", input=json.dumps(claim(n, name)))
    assert len(cp_claims(testbed, f"{contract.APP_NAMESPACE_LABEL}={name}")) == 2
    app(testbed, "delete", "namespace", name, "--timeout=90s")
    assert app(testbed, "get", "namespace", name, check=False).returncode != 0
    assert not cp_claims(testbed, f"{contract.APP_NAMESPACE_LABEL}={name}")


def test_new_claim_api_gets_served_and_an_apiservice(testbed: Testbed, conn: ConnectorProcess) -> None:
    apply_claim_api(testbed.control_plane.kubeconfig, REDIS_CACHE)
    try:
        wait_available(testbed, ["v1.cache.example.org"])
        eventually(lambda: "rediscaches" in app(testbed, "api-resources", "--api-group", "cache.example.org").stdout)
        service = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", "v1.cache.example.org")
        assert service["spec"]["caBundle"] and not service["spec"].get("insecureSkipTLSVerify")
    finally:
        delete_claim_api(testbed.control_plane.kubeconfig, REDIS_CACHE)
    eventually(lambda: app(testbed, "get", "apiservice", "v1.cache.example.org", check=False).returncode != 0)
