"""Issue 8, semantics: through the app cluster's aggregator, claims behave as kube-apiserver objects.

kubectl, the app cluster's garbage collector and RBAC see what a real API server would show
them: discovery survives a control-plane outage, the control plane's own denials reach the
user, owners and field managers round-trip, Table options, ``--sort-by`` and ``resourceNames``
Roles work, and one request can be followed through both clusters' audit logs.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from connector_fixtures import ConnectorProcess, app, cp, fresh_namespace, serving

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.cluster import apiserver_stopped
from testbed.harness import Testbed
from testbed.seed import KUBERNETES_CLUSTER
from testbed.tools import tool_path
from testbed.waiting import LineReader, eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "k8s.starter.org", "v1alpha1", "kubernetesclusters"
RESOURCE = f"{PLURAL}.{GROUP}"
SEEDED_APISERVICES = ("v1alpha1.k8s.starter.org", "v1alpha1.db.example.org", "v1beta1.db.example.org")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def claim(name: str, namespace: str, *, count: int = 1, **metadata: Any) -> dict[str, Any]:
    """The seed's example claim under another name, with ``count`` nodes."""
    body: dict[str, Any] = yaml.safe_load(KUBERNETES_CLUSTER.example_claim_file.read_text())
    body["metadata"] = {"name": name, "namespace": namespace, **metadata}
    body["spec"]["id"] = name
    body["spec"]["parameters"]["nodes"]["count"] = count
    body["spec"].pop("writeConnectionSecretToRef", None)
    return body


def hashed(tb: Testbed, namespace: str, name: str) -> str:
    uid = str(tb.kubectl_json(APP_CLUSTER, "get", "namespace", "kube-system")["metadata"]["uid"])
    return contract.control_plane_name(contract.AppRef(uid, namespace, name))


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


def test_control_plane_stopped_keeps_discovery_and_recovers_by_itself(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("steady", namespace)))
    doomed = f"e2e-doomed-{secrets.token_hex(3)}"
    app(testbed, "create", "namespace", doomed)
    app(testbed, "create", "configmap", "owner", "-n", namespace)
    owner_uid = testbed.kubectl_json(APP_CLUSTER, "get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    app(testbed, "create", "-f", "-", input=json.dumps(dependent))
    with apiserver_stopped(CONTROL_PLANE):
        resources = app(testbed, "api-resources", f"--api-group={GROUP}", "-o", "name").stdout.split()
        assert RESOURCE in resources
        assert app(testbed, "get", "--raw", f"/apis/{GROUP}/{VERSION}").returncode == 0
        assert conn.raw("GET", "/readyz", cert=False)[0] == 200, "readiness must not follow the control plane"
        available = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", f"{VERSION}.{GROUP}")
        assert {"type": "Available", "status": "True"}.items() <= next(
            c for c in available["status"]["conditions"] if c["type"] == "Available"
        ).items()
        read = app(testbed, "get", PLURAL, "steady", "-n", namespace, check=False)
        assert read.returncode != 0 and "ServiceUnavailable" in read.stderr, read.stderr
        status, body = conn.call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/steady")
        assert status == 503 and body["kind"] == "Status" and body["code"] == 503
        # The app cluster's garbage collector keeps working for its own kinds meanwhile.
        app(testbed, "delete", "configmap", "owner", "-n", namespace)
        eventually(
            lambda: app(testbed, "get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0,
            timeout=60,
            what="the garbage collector to delete the dependent ConfigMap",
        )
        # A namespace deleted now needs the claim API to list it: it finishes once the control plane is back.
        app(testbed, "delete", "namespace", doomed, "--wait=false")
    eventually(
        lambda: app(testbed, "get", "namespace", doomed, check=False).returncode != 0,
        timeout=150,
        what="the namespace deleted during the outage to go",
    )
    got = eventually(lambda: testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "steady", "-n", namespace))
    assert got["spec"]["id"] == "steady"
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("after", namespace)))
    # A watch shows the claim (ended once it did: a short --request-timeout would also end a slow list).
    kubectl = [str(tool_path("kubectl")), "--kubeconfig", str(testbed.app_cluster.kubeconfig)]
    with subprocess.Popen([*kubectl, "get", PLURAL, "after", "-n", namespace, "-w", "-o", "name"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as watched:  # fmt: skip
        assert watched.stdout is not None
        try:
            LineReader(watched.stdout).wait_for(
                lambda line: line == f"kubernetescluster.{GROUP}/after", timeout=60, what="the claim through a watch"
            )
        finally:
            watched.terminate()


def test_admission_policy_denial_reaches_kubectl_in_its_own_words(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "e2e-small-clusters"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [PLURAL],
                    }
                ]
            },
            "matchConditions": [{"name": "labelled", "expression": "'e2e-vap' in object.metadata.?labels.orValue({})"}],
            "validations": [
                {
                    "expression": "object.spec.parameters.nodes.count <= 3",
                    "message": "clusters in this control plane have at most 3 nodes",
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "e2e-small-clusters"},
        "spec": {"policyName": "e2e-small-clusters", "validationActions": ["Deny"]},
    }
    cp(testbed, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy, binding]}))
    try:
        big = json.dumps(claim("big", namespace, count=5, labels={"e2e-vap": "yes"}))

        def in_force() -> bool:
            # A server-side dry run goes through admission without creating anything.
            return app(testbed, "create", "--dry-run=server", "-f", "-", input=big, check=False).returncode != 0

        eventually(in_force, what="the admission policy to be in force")
        out = app(testbed, "create", "-f", "-", input=big, check=False)
        assert out.returncode != 0
        stderr = out.stderr
        assert "Error from server (Forbidden)" in stderr, stderr
        assert (
            f"{RESOURCE} \"big\" is forbidden: ValidatingAdmissionPolicy 'e2e-small-clusters' with binding "
            "'e2e-small-clusters' denied request: clusters in this control plane have at most 3 nodes"
        ) in stderr
        assert contract.CLAIM_NAME_PREFIX not in stderr and "credentials" not in stderr
    finally:
        cp(testbed, "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", "e2e-small-clusters",
           "--ignore-not-found")  # fmt: skip


def test_exceeded_quota_reaches_kubectl_in_its_own_words(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    ns = testbed.claim_namespace
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "e2e-claims", "namespace": ns},
        "spec": {"hard": {f"count/{RESOURCE}": "0"}},
    }
    cp(testbed, "apply", "-f", "-", input=json.dumps(quota))
    try:
        body = json.dumps(claim("one-too-many", namespace))
        # Until the quota controller has counted, admission refuses with "status unknown for
        # quota"; the quota's own message comes once its status covers the resource. A quota
        # made before the controller discovered the CRD (every 30 s) waits for its next recount.
        eventually(
            lambda: f"count/{RESOURCE}" in ((testbed.kubectl_json(
                CONTROL_PLANE, "get", "resourcequota", "e2e-claims", "-n", ns).get("status") or {}).get("used") or {}),
            timeout=90, what="the quota controller to count the claims",
        )  # fmt: skip
        out = app(testbed, "create", "-f", "-", input=body, check=False)
        assert out.returncode != 0
        assert "Error from server (Forbidden)" in out.stderr, out.stderr
        assert f'{RESOURCE} "one-too-many" is forbidden: exceeded quota: e2e-claims' in out.stderr
        assert contract.CLAIM_NAME_PREFIX not in out.stderr
    finally:
        cp(testbed, "delete", "resourcequota", "e2e-claims", "-n", ns, "--ignore-not-found")


def test_configmap_owned_claim_is_garbage_collected_by_the_app_cluster(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    app(testbed, "create", "configmap", "owner", "-n", namespace, "--from-literal=a=b")
    uid = testbed.kubectl_json(APP_CLUSTER, "get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("owned", namespace)))
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "controller": True,
             "blockOwnerDeletion": True}  # fmt: skip

    # What a controller's SetControllerReference + Update does (client-go keeps managedFields),
    # retrying on 409 as controllers do: Crossplane is updating the claim at the same time.
    def set_owner() -> bool:
        current = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "owned", "-n", namespace, "--show-managed-fields")
        current["metadata"]["ownerReferences"] = [owner]
        return app(testbed, "replace", "-f", "-", input=json.dumps(current), check=False).returncode == 0

    eventually(set_owner, what="the owner reference set")
    got = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "owned", "-n", namespace)
    assert got["metadata"]["ownerReferences"] == [owner]
    stored = testbed.kubectl_json(CONTROL_PLANE, "get", PLURAL, hashed(testbed, namespace, "owned"), "-n",
                                  testbed.claim_namespace, "--show-managed-fields")  # fmt: skip
    assert "ownerReferences" not in stored["metadata"], "the control plane's GC must not see app-side owners"
    owned_labels = [m for m in stored["metadata"]["managedFields"] if contract.APP_CLUSTER_LABEL in json.dumps(m)]
    assert owned_labels, "an update that leaves managedFields alone keeps the control plane's as they were"
    bad = claim("two-controllers", namespace, ownerReferences=[owner, {**owner, "uid": "other", "name": "b"}])
    refused = app(testbed, "create", "-f", "-", input=json.dumps(bad), check=False)
    assert "Only one reference can have Controller set to true" in refused.stderr, refused.stderr
    app(testbed, "delete", "configmap", "owner", "-n", namespace)
    eventually(lambda: app(testbed, "get", PLURAL, "owned", "-n", namespace, check=False).returncode != 0, timeout=120)
    gone = cp(testbed, "get", PLURAL, hashed(testbed, namespace, "owned"), "-n", testbed.claim_namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_server_side_apply_after_client_side_apply_prunes_a_removed_field(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    body = claim("pruned", namespace)
    assert body["spec"]["parameters"]["nodes"]["size"] == "small"
    app(testbed, "apply", "-f", "-", input=json.dumps(body))
    shown = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "pruned", "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
    assert "kubectl-client-side-apply" in managers, managers
    assert contract.LABEL_DOMAIN not in json.dumps(shown["metadata"]["managedFields"])
    del body["spec"]["parameters"]["nodes"]["size"]
    app(testbed, "apply", "--server-side", "-f", "-", input=json.dumps(body))
    after = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "pruned", "-n", namespace, "--show-managed-fields")
    assert "size" not in after["spec"]["parameters"]["nodes"], after["spec"]
    managers = {m["manager"] for m in after["metadata"]["managedFields"]}
    assert "kubectl" in managers and "kubectl-client-side-apply" not in managers, managers


def test_replace_describe_sort_by_and_custom_columns(testbed: Testbed, conn: ConnectorProcess, namespace: str) -> None:
    for name, count in (("bravo", 3), ("alpha", 7), ("charlie", 1)):
        app(testbed, "apply", "-f", "-", input=json.dumps(claim(name, namespace, count=count)))
    rows = app(testbed, "get", PLURAL, "-n", namespace, "--sort-by=.spec.parameters.nodes.count", "--no-headers").stdout
    assert [line.split()[0] for line in rows.splitlines()] == ["charlie", "bravo", "alpha"]
    columns = app(testbed, "get", PLURAL, "-n", namespace, "--sort-by=.metadata.name",
                  "-o", "custom-columns=NAME:.metadata.name,NODES:.spec.parameters.nodes.count").stdout  # fmt: skip
    assert [line.split() for line in columns.splitlines()] == [
        ["NAME", "NODES"], ["alpha", "7"], ["bravo", "3"], ["charlie", "1"],
    ]  # fmt: skip
    described = app(testbed, "describe", PLURAL, "alpha", "-n", namespace).stdout
    assert "Name:         alpha" in described and f"Namespace:    {namespace}" in described

    def replace() -> bool:  # retried on 409, as kubectl users do: Crossplane is writing the claim too
        current = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "alpha", "-n", namespace)
        current["spec"]["parameters"]["nodes"]["count"] = 9
        return app(testbed, "replace", "-f", "-", input=json.dumps(current), check=False).returncode == 0

    eventually(replace, what="kubectl replace")
    assert (
        testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "alpha", "-n", namespace)["spec"]["parameters"]["nodes"][
            "count"
        ]
        == 9
    )
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    for include, check in (
        ("None", lambda o: o is None),
        ("Metadata", lambda o: o["kind"] == "PartialObjectMetadata" and "spec" not in o),
        ("Object", lambda o: o["kind"] == "KubernetesCluster" and o["spec"]["id"] == o["metadata"]["name"]),
    ):
        status, table = conn.call("GET", f"{path}?includeObject={include}", accept=TABLE)
        assert status == 200 and table["kind"] == "Table", table
        assert len(table["rows"]) == 3 and all(check(r["object"]) for r in table["rows"]), (include, table["rows"][0])
    status, body = conn.call("GET", f"{path}?includeObject=Everything", accept=TABLE)
    assert status == 400 and "includeObject" in body["message"], body


def test_resource_names_role_can_get_watch_wait_and_delete(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("mine", namespace)))
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("theirs", namespace)))
    app(testbed, "create", "role", "only-mine", "-n", namespace, f"--resource={RESOURCE}", "--resource-name=mine",
        "--verb=get,list,watch,delete")  # fmt: skip
    app(testbed, "create", "rolebinding", "only-mine", "-n", namespace, "--role=only-mine", "--user=jane")
    as_jane = ("--as=jane", "-n", namespace)
    # The authorizer learns of a new binding from its informer, a moment after the create returned.
    eventually(lambda: app(testbed, "auth", "can-i", "watch", f"{PLURAL}/mine", *as_jane).stdout.strip() == "yes",
               what="the RoleBinding in force")  # fmt: skip
    kubectl = [str(tool_path("kubectl")), "--kubeconfig", str(testbed.app_cluster.kubeconfig)]
    with subprocess.Popen(
        [*kubectl, "get", PLURAL, "mine", "-w", "-o", "name", *as_jane],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as watch:
        assert watch.stdout is not None
        lines = LineReader(watch.stdout)
        try:
            lines.wait_for(lambda line: line == f"kubernetescluster.{GROUP}/mine", what="the watched claim")
            app(testbed, "wait", f"{PLURAL}/mine", "--for=jsonpath={.spec.id}=mine", "--timeout=20s", *as_jane)
            assert watch.poll() is None, "the watch ended: " + "\n".join(lines.lines)
        finally:
            watch.terminate()
    assert app(testbed, "get", PLURAL, "theirs", *as_jane, check=False).returncode != 0
    app(testbed, "delete", PLURAL, "mine", "--timeout=90s", *as_jane)
    assert app(testbed, "get", PLURAL, "mine", "-n", namespace, check=False).returncode != 0


def test_one_request_is_followed_through_both_audit_logs(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    probe = f"audit-probe-{secrets.token_hex(3)}"
    app(testbed, "apply", "-f", "-", input=json.dumps(claim(probe, namespace)))
    app(testbed, "get", PLURAL, probe, "-n", namespace)
    app_log, cp_log = testbed.app_cluster.logs["audit"], testbed.control_plane.logs["audit"]
    target = hashed(testbed, namespace, probe)

    def audited() -> tuple[dict[str, Any], dict[str, Any]]:
        reads = [
            e for e in map(json.loads, (line for line in app_log.read_text().splitlines() if probe in line))
            if e["verb"] == "get" and e["stage"] == "ResponseComplete" and e["requestURI"].split("?")[0].endswith(probe)
        ]  # fmt: skip
        assert reads, "the app cluster did not audit the read yet"
        ids = {e["auditID"]: e for e in reads}
        cp_reads = [
            e for e in map(json.loads, (line for line in cp_log.read_text().splitlines() if target in line))
            if e["auditID"] in ids and e["verb"] == "get"
        ]  # fmt: skip
        assert cp_reads, "no control-plane read under an audit ID of the app cluster"
        return ids[cp_reads[-1]["auditID"]], cp_reads[-1]

    read, followed = eventually(audited)
    uid = str(testbed.kubectl_json(APP_CLUSTER, "get", "namespace", "kube-system")["metadata"]["uid"])
    assert f"cluster={uid}; user={read['user']['username']}" in followed["userAgent"]
    assert "kubectl/" in followed["userAgent"]


def test_explain_owner_references_warnings_and_legacy_watch_paths(
    testbed: Testbed, conn: ConnectorProcess, namespace: str
) -> None:
    explained = app(testbed, "explain", "kubernetescluster.metadata.ownerReferences").stdout
    assert "FIELD: ownerReferences <[]OwnerReference>" in explained, explained
    assert "blockOwnerDeletion" in explained and "uid" in explained
    body = claim("warned", namespace)
    body["spec"]["bogus"] = "x"
    applied = app(testbed, "apply", "--validate=warn", "-f", "-", input=json.dumps(body))
    assert 'Warning: unknown field "spec.bogus"' in applied.stderr, applied.stderr
    legacy = app(testbed, "get", "--raw",
                 f"/apis/{GROUP}/{VERSION}/watch/namespaces/{namespace}/{PLURAL}/warned?timeoutSeconds=1")  # fmt: skip
    event = json.loads(legacy.stdout.splitlines()[0])
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "warned"
