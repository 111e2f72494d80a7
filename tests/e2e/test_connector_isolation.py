"""Issue 8, isolation: the "-x-" name collisions and references across tenants, through the aggregator.

Upbound's hash joins name, namespace and cluster with "-x-", so ``a-x`` in ``n`` and ``a`` in
``x-n`` share a control-plane name, and so do the connection Secrets ``creds-x-team`` in
``prod`` and ``creds`` in ``team-x-prod``. Whoever holds the second name must never overwrite,
relabel or read the first: each test plays that user through the app cluster's aggregator (with
kubectl where kubectl can send the request) and checks the victim in the control plane.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from connector_fixtures import AppApi, ConnectorProcess, app, connected, wait_available

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL, KIND = "k8s.starter.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster"
APISERVICES = ("v1alpha1.k8s.starter.org", "v1alpha1.db.example.org", "v1beta1.db.example.org")


def claim(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"id": spec.pop("id", name), "parameters": {"nodes": {"count": 1}}, **spec},
    }


def path(namespace: str, name: str = "", sub: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


@pytest.fixture(scope="module")
def cluster_id(testbed: Testbed) -> str:
    return str(testbed.kubectl_json(APP_CLUSTER, "get", "namespace", "kube-system")["metadata"]["uid"])


@pytest.fixture(scope="module")
def aggregated(testbed: Testbed) -> Iterator[ConnectorProcess]:
    testbed.kubectl(APP_CLUSTER, "delete", "apiservice", "--ignore-not-found", *APISERVICES)
    with connected(testbed) as proc:
        wait_available(testbed, [APISERVICES[0]])
        yield proc


@pytest.fixture
def namespaces(testbed: Testbed) -> Iterator[list[str]]:
    """Fresh app namespaces; the test names them (collisions need related names)."""
    made: list[str] = []
    yield made
    for ns in made:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", ns, "--wait=false", check=False)


def make_namespaces(tb: Testbed, made: list[str], *names: str) -> None:
    for ns in names:
        tb.kubectl(APP_CLUSTER, "create", "namespace", ns)
        made.append(ns)


def stored(tb: Testbed, ref: contract.AppRef) -> dict[str, Any]:
    name = contract.control_plane_name(ref)
    return dict(tb.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", tb.claim_namespace, name))


# --- updates pin ownership --------------------------------------------------------------------


def test_replace_and_status_replace_never_touch_the_colliding_claim(
    testbed: Testbed, aggregated: ConnectorProcess, cluster_id: str, namespaces: list[str]
) -> None:
    sfx = secrets.token_hex(3)
    owner_ns, other_ns = f"n{sfx}", f"x-n{sfx}"
    owner, other = contract.AppRef(cluster_id, owner_ns, "a-x"), contract.AppRef(cluster_id, other_ns, "a")
    assert contract.control_plane_name(owner) == contract.control_plane_name(other)
    make_namespaces(testbed, namespaces, owner_ns, other_ns)
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("a-x", owner_ns, id="owner")))
    before = stored(testbed, owner)

    # The user of other_ns knows (or guesses: they are etcd revisions) the victim's resourceVersion.
    forged = claim("a", other_ns, id="stolen")
    forged["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
    replaced = app(testbed, "replace", "-f", "-", input=json.dumps(forged), check=False)
    assert replaced.returncode != 0 and "NotFound" in replaced.stderr, replaced.stderr
    forged["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Stolen",
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}  # fmt: skip
    status = app(testbed, "replace", "--subresource=status", "-f", "-", input=json.dumps(forged), check=False)
    assert status.returncode != 0 and "NotFound" in status.stderr, status.stderr

    # Crossplane keeps updating the owner's claim (binding, status), so its resourceVersion moves;
    # what the forger wrote must be nowhere.
    after = stored(testbed, owner)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert contract.app_ref_of(after) == owner
    assert after["spec"]["id"] == "owner"
    assert "Stolen" not in json.dumps(after.get("status") or {})
    assert app(testbed, "get", PLURAL, "-n", other_ns, "a", check=False).returncode != 0

    # The owner's own replace still works (retried on 409: Crossplane writes too), and keeps its uid.
    def replace_mine() -> bool:
        mine = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", owner_ns, "a-x")
        mine["spec"]["id"] = "owner-2"
        return app(testbed, "replace", "-f", "-", input=json.dumps(mine), check=False).returncode == 0

    eventually(replace_mine, what="the owner's replace")
    assert stored(testbed, owner)["spec"]["id"] == "owner-2"
    assert stored(testbed, owner)["metadata"]["uid"] == before["metadata"]["uid"]


def test_a_callers_uid_precondition_on_delete_is_honoured(
    testbed: Testbed, aggregated: ConnectorProcess, cluster_id: str, namespaces: list[str]
) -> None:
    ns = f"del-{secrets.token_hex(3)}"
    make_namespaces(testbed, namespaces, ns)
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("c", ns)))
    uid = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", ns, "c")["metadata"]["uid"]
    api = AppApi(testbed)
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-" + uid}}
    code, _, body = api.call("DELETE", path(ns, "c"), options)
    assert code == 409 and body["kind"] == "Status" and body["reason"] == "Conflict", body
    assert "Precondition failed: UID in precondition" in body["message"]
    assert stored(testbed, contract.AppRef(cluster_id, ns, "c"))["metadata"]["uid"] == uid
    options["preconditions"] = {"uid": uid}
    code, _, body = api.call("DELETE", path(ns, "c"), options)
    assert code == 200, body


# --- connection Secrets -------------------------------------------------------------------------


def test_connection_secret_is_copied_only_to_the_claim_it_was_written_for(
    testbed: Testbed, aggregated: ConnectorProcess, cluster_id: str, namespaces: list[str]
) -> None:
    sfx = secrets.token_hex(3)
    victim_ns, thief_ns = f"p{sfx}", f"team-x-p{sfx}"
    victim_secret, thief_secret = (
        contract.AppRef(cluster_id, victim_ns, "creds-x-team"),
        contract.AppRef(cluster_id, thief_ns, "creds"),
    )
    source = contract.connection_secret_name(victim_secret)
    assert source == contract.connection_secret_name(thief_secret)
    make_namespaces(testbed, namespaces, victim_ns, thief_ns)
    app(testbed, "apply", "-f", "-",
        input=json.dumps(claim("victim", victim_ns, writeConnectionSecretToRef={"name": "creds-x-team"})))  # fmt: skip
    victim = stored(testbed, contract.AppRef(cluster_id, victim_ns, "victim"))
    assert victim["spec"]["writeConnectionSecretToRef"]["name"] == source
    try:
        # Crossplane's claim controller writes the victim's Secret (controlled by the victim's claim).
        copied = eventually(
            lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", victim_ns, "creds-x-team"), timeout=60
        )
        assert copied["data"]["kubeconfig"]  # the victim got its Secret
        # The thief asks for the same control-plane Secret. Crossplane refuses to write it for the
        # thief's claim (another claim controls it), and the connector copies it to no one else.
        app(testbed, "apply", "-f", "-",
            input=json.dumps(claim("thief", thief_ns, writeConnectionSecretToRef={"name": "creds"})))  # fmt: skip

        def thief_refused() -> str:
            got = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", thief_ns, "thief")
            synced = [c for c in (got.get("status") or {}).get("conditions") or [] if c["type"] == "Synced"]
            return str(synced[0].get("message")) if synced and synced[0]["status"] == "False" else ""

        assert "controlled by" in eventually(thief_refused, timeout=60, what="Crossplane refusing the thief's Secret")
        copied_again = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", victim_ns, "creds-x-team")
        assert copied_again["data"] == copied["data"]
        leaked = app(testbed, "get", "secret", "-n", thief_ns, "creds", check=False)
        assert leaked.returncode != 0 and "NotFound" in leaked.stderr, leaked.stdout
        # A Secret controlled by nobody goes to no one: test_connector_xr shows it with a Secret
        # nothing composes (here Crossplane would adopt an uncontrolled Secret for the next claim
        # that asks for the name, writing that claim's own details into it).
    finally:
        testbed.kubectl(CONTROL_PLANE, "delete", "secret", source, "-n", testbed.claim_namespace, "--ignore-not-found")


# --- references across tenants ------------------------------------------------------------------

XR_REF = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "XKubernetesCluster", "name": "someone-elses-xr"}


def test_a_claim_cannot_bind_itself_to_an_xr(
    testbed: Testbed, aggregated: ConnectorProcess, cluster_id: str, namespaces: list[str]
) -> None:
    ns = f"ref-{secrets.token_hex(3)}"
    make_namespaces(testbed, namespaces, ns)
    ref = contract.AppRef(cluster_id, ns, "c")

    created = app(testbed, "apply", "-f", "-", check=False, input=json.dumps(claim("c", ns, resourceRef=XR_REF)))
    assert created.returncode != 0 and "spec.resourceRef: Forbidden" in created.stderr, created.stderr
    assert app(testbed, "get", PLURAL, "-n", ns, "c", check=False).returncode != 0
    publish = claim("c", ns, publishConnectionDetailsTo={"name": "claim-0123456789abcdef"})
    # Crossplane v2's claim CRDs have no such field, so kubectl's own validation would stop it first.
    refused = app(testbed, "apply", "--validate=false", "-f", "-", check=False, input=json.dumps(publish))
    assert refused.returncode != 0 and "spec.publishConnectionDetailsTo: Forbidden" in refused.stderr

    # Crossplane binds the claim to its XR in the control plane; the app user can keep, not change it.
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("c", ns)))
    own_xr = eventually(
        lambda: testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", ns, "c")["spec"].get("resourceRef"),
        timeout=60,
        what="Crossplane binding the claim",
    )
    assert own_xr["name"].startswith("c-"), own_xr  # the XR is named after the claim, in app-side words
    change = json.dumps({"spec": {"resourceRef": XR_REF}})
    changed = app(testbed, "patch", PLURAL, "c", "-n", ns, "--type=merge", "-p", change, check=False)
    assert changed.returncode != 0 and "spec.resourceRef: Forbidden" in changed.stderr, changed.stderr
    applied = app(
        testbed, "apply", "--server-side", "--field-manager=e2e", "-f", "-",
        input=json.dumps(claim("c", ns, resourceRef=XR_REF)), check=False,
    )  # fmt: skip
    assert applied.returncode != 0 and "spec.resourceRef: Forbidden" in applied.stderr, applied.stderr

    # A replace that leaves it out (a manifest from git) keeps the binding; repeating it is fine.
    def replace_without_it() -> bool:
        current = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", ns, "c")
        replacement = claim("c", ns, id="changed")
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return app(testbed, "replace", "-f", "-", input=json.dumps(replacement), check=False).returncode == 0

    eventually(replace_without_it, what="a replace without the binding (retried on 409: Crossplane writes too)")
    app(testbed, "apply", "-f", "-", input=json.dumps(claim("c", ns, id="again", resourceRef=own_xr)))
    kept = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", ns, "c")
    assert kept["spec"]["resourceRef"] == own_xr and kept["spec"]["id"] == "again"
    assert stored(testbed, ref)["spec"]["resourceRef"]["name"].startswith(contract.control_plane_name(ref) + "-")
