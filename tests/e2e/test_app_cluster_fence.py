"""Issue 17, point 3: the app cluster itself fences the connector's writes.

The install's ValidatingAdmissionPolicy (``manifests.admission_policy``, as the component and
``render`` make it) is applied with the install's RBAC. The app cluster then refuses the
connector's own identity (impersonated with ``kubectl --as``; RBAC alone would allow it) any
Secret without the copy label, an update that drops the label, a ServiceAccount-token Secret,
and any APIService it does not own; a connector running with that ServiceAccount's token
still creates its APIService and copies, updates and removes a claim's connection Secret.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from connector_fixtures import (
    SERVICE_NAMESPACE,
    expose,
    fresh_namespace,
    kubeconfig_copy,
    remove_apiservices,
    start_connector,
    wait_available,
)

from mcp_connector.core import contract
from mcp_connector_component import manifests
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

APISERVICE = "v1alpha1.k8s.starter.org"
PLURAL = "kubernetesclusters.k8s.starter.org"
COPY_LABEL = manifests.COPY_LABEL


@pytest.fixture(scope="module")
def names(testbed: Testbed) -> Iterator[manifests.Names]:
    """One install's ServiceAccount, RBAC and policy in the app cluster (removed afterwards)."""
    names = manifests.Names(base=f"fence-{secrets.token_hex(3)}", namespace=SERVICE_NAMESPACE)
    items: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SERVICE_NAMESPACE}},
        manifests.service_account(names),
        manifests.cluster_role(names, manage_apiservices=True),
        manifests.cluster_role_binding(names),
        manifests.leader_role(names),
        manifests.leader_role_binding(names),
        manifests.auth_delegator_binding(names),
        manifests.auth_reader_binding(names),
        manifests.admission_policy(names, manage_apiservices=True, apiservice_owner=names.cluster_role),
        manifests.admission_policy_binding(names),
    ]
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=doc)
    yield names
    testbed.kubectl(APP_CLUSTER, "delete", "-f", "-", "--ignore-not-found", "--wait=false", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": items[1:]}
    ))  # fmt: skip


def as_connector(
    testbed: Testbed, names: manifests.Names, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl against the app cluster with the connector's identity (its ServiceAccount's user and groups)."""
    who = ["--as", names.username, "--as-group", "system:serviceaccounts"]
    who += ["--as-group", f"system:serviceaccounts:{names.namespace}"]
    return testbed.kubectl(APP_CLUSTER, *who, *args, input=input, check=False)


def refused_by_policy(result: subprocess.CompletedProcess[str], names: manifests.Names) -> bool:
    """Refused by this install's policy (not by RBAC, which allows these writes)."""
    return result.returncode != 0 and names.admission_policy in result.stderr and "denied" in result.stderr


def secret(name: str, namespace: str, *, labelled: bool, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labelled:
        meta["labels"] = {COPY_LABEL: "some-cluster"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"k": "v"}, **extra}


def test_the_app_cluster_refuses_the_connector_what_it_did_not_make(testbed: Testbed, names: manifests.Names) -> None:
    with fresh_namespace(testbed, "fence") as ns:
        plain = json.dumps(secret("plain", ns, labelled=False))

        def policy_in_force() -> bool:
            made = as_connector(testbed, names, "create", "-f", "-", input=plain)
            if made.returncode == 0:  # the policy is not yet loaded by kube-apiserver
                testbed.kubectl(APP_CLUSTER, "delete", "secret", "plain", "-n", ns)
            return refused_by_policy(made, names)

        eventually(policy_in_force, timeout=60, what="the policy refusing an unlabelled Secret create")

        # Someone else's Secret: no update, no delete (RBAC would allow both).
        testbed.kubectl(APP_CLUSTER, "create", "-f", "-", input=json.dumps(secret("victim", ns, labelled=False)))
        victim = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "victim", "-n", ns)
        victim["data"] = {"k": "c3RvbGVu"}
        assert refused_by_policy(as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(victim)), names)
        assert refused_by_policy(as_connector(testbed, names, "delete", "secret", "victim", "-n", ns), names)
        # Labelling it on the way is no way in: the old object is checked too.
        victim.setdefault("metadata", {}).setdefault("labels", {})[COPY_LABEL] = "some-cluster"
        assert refused_by_policy(as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(victim)), names)
        kept = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "victim", "-n", ns)
        assert kept["data"] == {"k": "dg=="} and COPY_LABEL not in (kept["metadata"].get("labels") or {})

        # A ServiceAccount token is never a copy, labelled or not.
        token = secret("token", ns, labelled=True, type="kubernetes.io/service-account-token")
        token["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}
        assert refused_by_policy(as_connector(testbed, names, "create", "-f", "-", input=json.dumps(token)), names)

        # Its own labelled copies: created, updated, deleted; but never unlabelled by an update.
        copy = json.dumps(secret("copy", ns, labelled=True))
        assert as_connector(testbed, names, "create", "-f", "-", input=copy).returncode == 0
        mine = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "copy", "-n", ns)
        mine["data"] = {"k": "dHdv"}
        assert as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(mine)).returncode == 0
        mine = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "copy", "-n", ns)
        del mine["metadata"]["labels"][COPY_LABEL]
        assert refused_by_policy(as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(mine)), names)
        assert as_connector(testbed, names, "delete", "secret", "copy", "-n", ns).returncode == 0

        # Another identity (the test bed's admin) is not judged by this install's policy.
        testbed.kubectl(APP_CLUSTER, "delete", "secret", "victim", "-n", ns)

    # APIServices: a built-in one is not the connector's (server-side dry runs: admission runs,
    # nothing is stored); one with its label and its owner's ownerReference is.
    foreign = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", "v1.apps")
    foreign.pop("status", None)
    dry = "--dry-run=server"
    assert refused_by_policy(as_connector(testbed, names, "replace", dry, "-f", "-", input=json.dumps(foreign)), names)
    assert refused_by_policy(as_connector(testbed, names, "delete", dry, "apiservice", "v1.apps"), names)
    owner = testbed.kubectl_json(APP_CLUSTER, "get", "clusterrole", names.cluster_role)
    owned = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "name": "v1.fence.example.org",
            "labels": {"app.kubernetes.io/managed-by": "mcp-connector"},
            "ownerReferences": [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                 "name": names.cluster_role, "uid": owner["metadata"]["uid"]}],
        },
        "spec": {"group": "fence.example.org", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "service": {"namespace": SERVICE_NAMESPACE, "name": names.service, "port": 443},
                 "insecureSkipTLSVerify": True},
    }  # fmt: skip
    assert as_connector(testbed, names, "create", dry, "-f", "-", input=json.dumps(owned)).returncode == 0
    unowned = json.loads(json.dumps(owned))
    unowned["metadata"]["ownerReferences"][0]["name"] = "someone-else"
    assert refused_by_policy(as_connector(testbed, names, "create", dry, "-f", "-", input=json.dumps(unowned)), names)
    del unowned["metadata"]["ownerReferences"]
    assert refused_by_policy(as_connector(testbed, names, "create", dry, "-f", "-", input=json.dumps(unowned)), names)


def test_the_connector_with_its_own_token_still_keeps_its_apiservice_and_copies(
    testbed: Testbed, names: manifests.Names
) -> None:
    """The Secret sync and the APIService follower work end to end under the policy."""
    token = testbed.kubectl(
        APP_CLUSTER, "create", "token", names.service, "-n", names.namespace, "--duration=1h"
    ).stdout.strip()
    app_kubeconfig = kubeconfig_copy(testbed.app_cluster.kubeconfig, token=token)
    remove_apiservices(testbed)
    testbed.kubectl(APP_CLUSTER, "delete", "apiservice", APISERVICE, "--ignore-not-found")
    proc = start_connector(
        testbed,
        manage_apiservices=True,
        service_name=names.service,
        # The install's Lease (its Role names it); argparse keeps the last of the fixture's and this.
        extra_args=[
            "--app-kubeconfig",
            str(app_kubeconfig),
            f"--apiservice-owner={names.cluster_role}",
            "--leader-elect-lease-name",
            names.leader_lease,
        ],
    )
    try:
        expose(testbed, proc)
        wait_available(testbed, [APISERVICE], timeout=120)
        made = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", APISERVICE)
        assert [o["name"] for o in made["metadata"]["ownerReferences"]] == [names.cluster_role]
        # Under the policy, a change of the owned APIService is still the connector's to make.
        mine = {k: v for k, v in made.items() if k != "status"}
        del mine["metadata"]["labels"]["app.kubernetes.io/managed-by"]
        dropped = as_connector(testbed, names, "replace", "--dry-run=server", "-f", "-", input=json.dumps(mine))
        assert refused_by_policy(dropped, names), dropped.stderr

        with fresh_namespace(testbed, "fence-sync") as ns:
            cluster_id = str(testbed.kubectl_json(APP_CLUSTER, "get", "namespace", "kube-system")["metadata"]["uid"])
            claim = {
                "apiVersion": "k8s.starter.org/v1alpha1",
                "kind": "KubernetesCluster",
                "metadata": {"name": "db", "namespace": ns},
                "spec": {"id": "first", "parameters": {"nodes": {"count": 1}},
                         "writeConnectionSecretToRef": {"name": "db-conn"}},
            }  # fmt: skip
            testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(claim))
            source = contract.connection_secret_name(contract.AppRef(cluster_id, ns, "db-conn"))

            def copied() -> str:
                found = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", ns, "db-conn")
                assert found["metadata"]["labels"][COPY_LABEL] == cluster_id
                return str(found["data"]["kubeconfig"])

            assert eventually(copied, timeout=90, what="the copy, made with the connector's token") == "Zmlyc3Q="
            written = testbed.kubectl_json(CONTROL_PLANE, "get", "secret", "-n", testbed.claim_namespace, source)
            assert written["type"] == "connection.crossplane.io/v1alpha1"
            patch = '{"spec":{"id":"second"}}'
            testbed.kubectl(APP_CLUSTER, "patch", PLURAL, "db", "-n", ns, "--type=merge", "-p", patch)
            eventually(lambda: copied() == "c2Vjb25k", timeout=90, what="the copy updated")
            testbed.kubectl(APP_CLUSTER, "delete", PLURAL, "-n", ns, "db")
            eventually(
                lambda: testbed.kubectl(APP_CLUSTER, "get", "secret", "-n", ns, "db-conn", check=False).returncode != 0,
                timeout=90,
                what="the copy removed",
            )
        assert names.admission_policy not in proc.log_file.read_text(), "it never tried a write the policy refuses"
        # The install's ClusterRole lets every replica keep its index of the copies (a metadata watch).
        assert "secret index watch failed" not in proc.log_file.read_text(), proc.logs()[-3000:]
    finally:
        proc.stop()
        remove_apiservices(testbed)


def test_the_app_cluster_refuses_the_connector_events_that_are_not_its_copies(
    testbed: Testbed, names: manifests.Names
) -> None:
    """Issue 22: the connector writes Events (its copies of claim events); only labelled ones."""

    def event(name: str, namespace: str, *, labelled: bool) -> str:
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if labelled:
            meta["labels"] = {manifests.EVENT_COPY_LABEL: "some-cluster"}
        involved = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": namespace}
        return json.dumps({"apiVersion": "v1", "kind": "Event", "metadata": meta, "involvedObject": involved,
                           "reason": "Test", "message": "m", "type": "Normal"})  # fmt: skip

    with fresh_namespace(testbed, "fence-ev") as ns:

        def policy_in_force() -> bool:
            made = as_connector(testbed, names, "create", "-f", "-", input=event("plain", ns, labelled=False))
            if made.returncode == 0:  # the policy is not yet loaded by kube-apiserver
                testbed.kubectl(APP_CLUSTER, "delete", "event", "plain", "-n", ns)
            return refused_by_policy(made, names)

        eventually(policy_in_force, timeout=60, what="the policy refusing an unlabelled Event create")
        testbed.kubectl(APP_CLUSTER, "create", "-f", "-", input=event("victim", ns, labelled=False))
        assert refused_by_policy(as_connector(testbed, names, "delete", "event", "victim", "-n", ns), names)
        # kubectl patch reads first (the connector never gets an Event), so updates are replaces.
        victim = testbed.kubectl_json(APP_CLUSTER, "get", "event", "victim", "-n", ns)
        victim["message"] = "changed"
        assert refused_by_policy(as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(victim)), names)

        assert as_connector(testbed, names, "create", "-f", "-", input=event("copy", ns, labelled=True)).returncode == 0
        mine = testbed.kubectl_json(APP_CLUSTER, "get", "event", "copy", "-n", ns)
        mine["message"] = "changed"
        made = as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(mine))
        assert made.returncode == 0, made.stderr
        mine = testbed.kubectl_json(APP_CLUSTER, "get", "event", "copy", "-n", ns)
        del mine["metadata"]["labels"][manifests.EVENT_COPY_LABEL]
        assert refused_by_policy(as_connector(testbed, names, "replace", "-f", "-", input=json.dumps(mine)), names)
        assert as_connector(testbed, names, "delete", "event", "copy", "-n", ns).returncode == 0
