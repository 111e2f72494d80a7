"""Issue 10 acceptance: Crossplane v2 namespaced XRs and claims, through the app cluster, with real Crossplane.

The control plane runs Crossplane core and the test bed's composition function; the seed's
Compositions compose each claim's XR and each Bucket XR into a ConfigMap (and a Bucket's
connection Secret), so every condition seen here was set by Crossplane, none by a test.
"""

from __future__ import annotations

import json
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
from testbed.seed import BUCKET, KUBERNETES_CLUSTER, QUEUE, apply_claim_api, delete_claim_api
from testbed.waiting import LineReader, eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = BUCKET.group, BUCKET.storage_version, BUCKET.plural
APISERVICES = (
    "v1alpha1.k8s.starter.org",
    "v1alpha1.db.example.org",
    "v1beta1.db.example.org",
    "v1alpha1.storage.example.org",
)
NXR = contract.Flavor.NAMESPACED_XR


def bucket(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """The seed's example Bucket XR under another name and namespace."""
    body: dict[str, Any] = yaml.safe_load(BUCKET.example_claim_file.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"].update(spec)
    return body


def stored(tb: Testbed, plural: str, name: str) -> dict[str, Any]:
    """A control-plane object in the claim namespace."""
    return tb.kubectl_json(CONTROL_PLANE, "get", plural, "-n", tb.claim_namespace, name)


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    """The connector serving the app cluster, claims and namespaced XRs alike."""
    with serving(testbed, APISERVICES) as proc:
        yield proc


@pytest.fixture
def namespace(testbed: Testbed) -> Iterator[str]:
    with fresh_namespace(testbed, "e2e-xr") as name:
        yield name


def test_seed_claim_is_bound_and_made_ready_by_crossplane(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    app(testbed, "apply", "-n", namespace, "-f", str(KUBERNETES_CLUSTER.example_claim_file))
    app(
        testbed, "wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace,
        f"{KUBERNETES_CLUSTER.plural}/my-cluster",
    )
    got = testbed.kubectl_json(APP_CLUSTER, "get", KUBERNETES_CLUSTER.plural, "-n", namespace, "my-cluster")
    ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Available")  # Crossplane's reason, from its claim controller
    hashed = contract.control_plane_name(contract.AppRef(cluster_uid(testbed), namespace, "my-cluster"))
    claim = stored(testbed, KUBERNETES_CLUSTER.plural, hashed)
    assert claim["spec"]["resourceRef"]["kind"] == "XKubernetesCluster"
    xr = testbed.kubectl_json(CONTROL_PLANE, "get", "xkubernetesclusters", claim["spec"]["resourceRef"]["name"])
    assert xr["spec"]["claimRef"] == {
        "apiVersion": "k8s.starter.org/v1alpha1", "kind": "KubernetesCluster",
        "name": hashed, "namespace": testbed.claim_namespace,
    }
    assert conditions(xr) == {"Responsive": "True", "Synced": "True", "Ready": "True"}
    # The claim's connection Secret, written by Crossplane from the function's connection details.
    secret = eventually(
        lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", namespace, "my-cluster-kubeconfig"),
        timeout=60, what="the claim's connection Secret in the app namespace",
    )
    assert secret["data"]["kubeconfig"] == "bXktY2x1c3Rlcg=="  # the function's value: the claim's spec.id
    app(testbed, "delete", KUBERNETES_CLUSTER.plural, "-n", namespace, "my-cluster", "--timeout=60s")
    eventually(
        lambda: app(testbed, "get", "secret", "-n", namespace, "my-cluster-kubeconfig", check=False).returncode != 0,
        what="the claim's connection Secret gone with the claim",
    )


def test_namespaced_xr_lands_hashed_with_labels_columns_status_and_secret(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    watcher = subprocess.Popen(
        [
            str(Path(".venv/bin/kubectl").resolve()), "--kubeconfig", str(testbed.app_cluster.kubeconfig),
            "get", PLURAL, "-n", namespace, "-w", "--output-watch-events", "--request-timeout=90s",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert watcher.stdout is not None
    events = LineReader(watcher.stdout)

    def event(kind: str, *cells: str) -> Callable[[str], bool]:
        return lambda line: line.split()[: 2 + len(cells)] == [kind, "my-bucket", *cells]

    try:
        app(testbed, "apply", "-f", "-", input=json.dumps(bucket("my-bucket", namespace)))
        events.wait_for(event("ADDED"), what="ADDED my-bucket", timeout=60)
        # Columns: NAME REGION SYNCED READY COMPOSITION AGE, as the XRD and Crossplane define them.
        events.wait_for(event("MODIFIED", "eu-north-1", "True", "True"), what="Crossplane making it Ready", timeout=60)
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert not any(NXR.prefix in line for line in events.lines), "a watch must never show a control-plane name"

    uid = cluster_uid(testbed)
    hashed = contract.control_plane_name(contract.AppRef(uid, namespace, "my-bucket"), flavor=NXR)
    assert hashed.startswith("nxr-") and len(hashed) == len("nxr-") + 16
    xr = stored(testbed, PLURAL, hashed)
    assert xr["metadata"]["labels"] == {
        contract.APP_NAMESPACE_LABEL: namespace,
        contract.APP_NAME_LABEL: "my-bucket",
        contract.APP_CLUSTER_LABEL: uid,
        "crossplane.io/composite": hashed,  # Crossplane's own label: the XR's name
    }
    assert xr["spec"]["crossplane"]["compositionRef"] == {"name": "buckets.storage.example.org"}
    table = app(testbed, "get", PLURAL, "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "REGION", "SYNCED", "READY", "COMPOSITION", "AGE"]
    assert table[1].split()[:5] == ["my-bucket", "eu-north-1", "True", "True", "buckets.storage.example.org"]
    got = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "my-bucket")
    assert got["metadata"]["name"] == "my-bucket" and got["spec"]["writeConnectionSecretToRef"] == {
        "name": "my-bucket-conn"
    }
    assert got["metadata"]["labels"] == {"crossplane.io/composite": "my-bucket"}
    # Crossplane composed the ConfigMap and the connection Secret next to the XR, controlled by it.
    refs = {r["kind"]: r["name"] for r in xr["spec"]["crossplane"]["resourceRefs"]}
    secret_name = contract.connection_secret_name(contract.AppRef(uid, namespace, "my-bucket-conn"))
    assert refs["Secret"] == secret_name
    composed = stored(testbed, "secret", secret_name)
    assert composed["metadata"]["ownerReferences"][0]["uid"] == xr["metadata"]["uid"]
    copied = eventually(
        lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", namespace, "my-bucket-conn"),
        timeout=60, what="the composed connection Secret in the app namespace",
    )
    assert copied["data"] == composed["data"] and set(copied["data"]) == {"endpoint", "region"}

    app(testbed, "delete", PLURAL, "-n", namespace, "my-bucket", "--timeout=60s")
    assert app(testbed, "get", PLURAL, "-n", namespace, "my-bucket", check=False).returncode != 0
    eventually(
        lambda: testbed.kubectl(CONTROL_PLANE, "get", "secret", "-n", testbed.claim_namespace, secret_name,
                                check=False).returncode != 0,
        what="Crossplane deleting what it composed",
    )
    eventually(
        lambda: app(testbed, "get", "secret", "-n", namespace, "my-bucket-conn", check=False).returncode != 0,
        what="the app-side connection Secret gone with the XR",
    )


def test_same_xr_name_in_two_namespaces_and_two_clusters_stays_apart(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    other_ns = f"{namespace}-b"
    app(testbed, "create", "namespace", other_ns)
    other = start_connector(testbed, cluster_id="e2e-xr-other-cluster")
    try:
        app(testbed, "apply", "-f", "-", input=json.dumps(bucket("same", namespace, region="one")))
        app(testbed, "apply", "-f", "-", input=json.dumps(bucket("same", other_ns, region="two")))
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        status, created = other.call("POST", path, bucket("same", namespace, region="three"))
        assert status == 201, created
        listed = testbed.kubectl_json(
            CONTROL_PLANE, "get", PLURAL, "-n", testbed.claim_namespace, "-l", f"{contract.APP_NAME_LABEL}=same"
        )["items"]
        listed = [i for i in listed if i["metadata"]["labels"][contract.APP_NAMESPACE_LABEL] in (namespace, other_ns)]
        assert sorted(i["spec"]["region"] for i in listed) == ["one", "three", "two"]
        names = {i["metadata"]["name"] for i in listed}
        assert len(names) == 3 and all(n.startswith("nxr-") for n in names)
        assert testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "same")["spec"]["region"] == "one"
        assert testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", other_ns, "same")["spec"]["region"] == "two"
        status, got = other.call("GET", f"{path}/same")
        assert status == 200 and got["spec"]["region"] == "three"
        status, everything = other.call("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
        seen = {(i["metadata"]["namespace"], i["spec"]["region"]) for i in everything["items"]}
        assert (namespace, "three") in seen and not {r for _, r in seen} & {"one", "two"}
        status, _ = other.call("DELETE", f"{path}/same")
        assert status == 200
        assert testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "same")["spec"]["region"] == "one"
    finally:
        other.call("DELETE", f"{path}/same")
        other.stop()
        for ns in (namespace, other_ns):
            app(testbed, "delete", PLURAL, "-n", ns, "same", "--ignore-not-found", "--timeout=60s")
        app(testbed, "delete", "namespace", other_ns, "--wait=false", check=False)


def test_v2_xrd_created_while_running_becomes_usable(testbed: Testbed, conn: ConnectorProcess, namespace: str) -> None:
    apply_claim_api(testbed.control_plane.kubeconfig, QUEUE)
    try:
        wait_available(testbed, ["v1.messaging.example.org"])
        eventually(
            lambda: "queues" in app(testbed, "api-resources", "--api-group", QUEUE.group).stdout,
            what="queues in the app cluster's discovery",
        )
        body = yaml.safe_load(QUEUE.example_claim_file.read_text())
        app(testbed, "apply", "-n", namespace, "-f", "-", input=json.dumps(body))
        got = testbed.kubectl_json(APP_CLUSTER, "get", "queues", "-n", namespace, "my-queue")
        assert got["spec"]["retentionHours"] == 24
        # No Composition exists for Queue: Crossplane says so, and the app user sees its message.
        def not_synced() -> str:
            queue = testbed.kubectl_json(APP_CLUSTER, "get", "queues", "-n", namespace, "my-queue")
            conditions = (queue.get("status") or {}).get("conditions") or []
            synced = [c for c in conditions if c["type"] == "Synced"]
            return str(synced[0].get("message")) if synced and synced[0]["status"] == "False" else ""

        message = eventually(not_synced, timeout=60, what="Crossplane's Synced=False on a Queue")
        assert "no compatible Compositions found" in message
        app(testbed, "delete", "queues", "-n", namespace, "my-queue", "--timeout=60s")
    finally:
        delete_claim_api(testbed.control_plane.kubeconfig, QUEUE)
    eventually(
        lambda: app(testbed, "get", "apiservice", "v1.messaging.example.org", check=False).returncode != 0,
        what="the Queue APIService removed with its XRD",
    )


def test_an_xr_naming_a_missing_composition_is_accepted_and_says_so(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    """``spec.crossplane`` passes through; Crossplane reports what it cannot do, in app-side words.

    Nothing composes this XR's connection Secret, so a Secret of that name that the XR does not
    control (here made by hand) is never copied to the app namespace.
    """
    body = bucket(
        "lost", namespace, crossplane={"compositionRef": {"name": "no-such-composition"}},
        writeConnectionSecretToRef={"name": "lost-conn"},
    )
    source = contract.connection_secret_name(contract.AppRef(cluster_uid(testbed), namespace, "lost-conn"))
    testbed.kubectl(
        CONTROL_PLANE, "create", "secret", "generic", source, "-n", testbed.claim_namespace, "--from-literal=k=v"
    )
    try:
        app(testbed, "apply", "-f", "-", input=json.dumps(body))

        def synced_message() -> str:
            got = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", namespace, "lost")
            conditions = (got.get("status") or {}).get("conditions") or []
            synced = [c for c in conditions if c["type"] == "Synced"]
            return str(synced[0].get("message")) if synced and synced[0]["status"] == "False" else ""

        message = eventually(synced_message, timeout=60, what="Crossplane's Synced=False on the XR")
        assert "no-such-composition" in message and NXR.prefix not in message
        # A Bucket whose Secret is composed shows up within seconds (the test above); this one never does.
        app(testbed, "apply", "-f", "-", input=json.dumps(bucket("found", namespace)))
        app(testbed, "wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, f"{PLURAL}/found")
        eventually(
            lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", namespace, "my-bucket-conn"),
            timeout=60, what="the composed Secret of the other XR",
        )
        assert app(testbed, "get", "secret", "-n", namespace, "lost-conn", check=False).returncode != 0
        app(testbed, "delete", PLURAL, "-n", namespace, "lost", "found", "--timeout=60s")
    finally:
        testbed.kubectl(CONTROL_PLANE, "delete", "secret", source, "-n", testbed.claim_namespace, "--ignore-not-found")


COLLIDING_XRD = {
    "apiVersion": "apiextensions.crossplane.io/v2",
    "kind": "CompositeResourceDefinition",
    "metadata": {"name": f"{KUBERNETES_CLUSTER.plural}.{KUBERNETES_CLUSTER.group}"},
    "spec": {
        "scope": "Namespaced",
        "group": KUBERNETES_CLUSTER.group,
        "names": {"kind": KUBERNETES_CLUSTER.kind, "plural": KUBERNETES_CLUSTER.plural},
        "versions": [
            {"name": "v1", "served": True, "referenceable": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
        ],
    },
}
CLUSTER_SCOPED_XRD = {
    "apiVersion": "apiextensions.crossplane.io/v2",
    "kind": "CompositeResourceDefinition",
    "metadata": {"name": "networks.net.example.org"},
    "spec": {
        "scope": "Cluster",
        "group": "net.example.org",
        "names": {"kind": "Network", "plural": "networks"},
        "versions": [
            {"name": "v1", "served": True, "referenceable": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
        ],
    },
}


def test_colliding_and_cluster_scoped_xrds_are_not_served_and_say_why(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    """A v2 XRD asking for the seed claim's kind, and a cluster-scoped v2 XRD: neither is served,
    the connector logs why, and the claim API keeps working, served once."""
    for xrd in (COLLIDING_XRD, CLUSTER_SCOPED_XRD):
        testbed.kubectl(CONTROL_PLANE, "apply", "-f", "-", input=json.dumps(xrd))
    try:
        # Crossplane establishes the cluster-scoped XRD's CRD; the colliding one never gets its CRD.
        # (`--for=condition` fails at once on an object that does not exist yet.)
        testbed.kubectl(CONTROL_PLANE, "wait", "--for=create", "--timeout=60s", "crd/networks.net.example.org")
        testbed.kubectl(
            CONTROL_PLANE, "wait", "--for=condition=Established", "--timeout=60s", "crd/networks.net.example.org"
        )
        def both_logged() -> bool:
            logs = conn.logs()
            return "scope: Cluster" in logs and "networks.net.example.org" in logs and "another XRD took it" in logs

        eventually(both_logged, timeout=60, what="the connector logging both XRDs as not served, with reasons")
        resources = app(testbed, "api-resources", "--api-group", KUBERNETES_CLUSTER.group, "--no-headers").stdout
        assert [line.split()[0] for line in resources.splitlines()] == [KUBERNETES_CLUSTER.plural]
        assert app(testbed, "get", "apiservice", "v1.net.example.org", check=False).returncode != 0
        assert app(testbed, "get", "apiservice", "v1.k8s.starter.org", check=False).returncode != 0
        app(testbed, "apply", "-n", namespace, "-f", str(KUBERNETES_CLUSTER.example_claim_file))
        got = testbed.kubectl_json(APP_CLUSTER, "get", KUBERNETES_CLUSTER.plural, "-n", namespace, "my-cluster")
        assert got["apiVersion"] == f"{KUBERNETES_CLUSTER.group}/v1alpha1"
        app(testbed, "delete", KUBERNETES_CLUSTER.plural, "-n", namespace, "my-cluster", "--timeout=60s")
    finally:
        for xrd in (COLLIDING_XRD, CLUSTER_SCOPED_XRD):
            testbed.kubectl(
                CONTROL_PLANE, "delete", "--ignore-not-found", "--timeout=60s",
                "compositeresourcedefinition", xrd["metadata"]["name"],
            )  # fmt: skip
    # Deleting the colliding XRD left the claim CRD (and the claims) alone: Crossplane does not
    # control it for that XRD.
    testbed.kubectl(CONTROL_PLANE, "get", "crd", KUBERNETES_CLUSTER.crd_name)
