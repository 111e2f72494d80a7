"""Issue 3, bad input and failure: every error is a Kubernetes Status with app-side names, and
an unreachable or refusing control plane gives a 503 naming it (never a hang, never the token)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from connector_fixtures import ConnectorProcess, TcpRelay, kubeconfig_copy, start_connector

from testbed import CONTROL_PLANE
from testbed.harness import Testbed
from testbed.relay import FaultRelay
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "k8s.starter.org", "v1alpha1", "kubernetesclusters"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
TOKEN = "e2e-token-must-never-appear-0123456789"


@pytest.fixture(scope="module")
def direct(testbed: Testbed) -> Iterator[ConnectorProcess]:
    """A connector called directly (playing the aggregator), with its own cluster ID."""
    proc = start_connector(testbed, cluster_id="e2e-failures")
    yield proc
    proc.stop()


def claim(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KubernetesCluster",
        "metadata": {"name": name},
        "spec": {"id": name, "parameters": {"nodes": {"count": 1}}, **spec},
    }


def test_invalid_claim_is_the_control_planes_422_with_app_names(direct: ConnectorProcess) -> None:
    status, body = direct.call("POST", NS_PATH, {**claim("broken"), "spec": {"id": "x"}})
    assert status == 422, body
    assert body["kind"] == "Status" and body["reason"] == "Invalid"
    assert '"broken"' in body["message"] and "claim-" not in str(body)
    assert body["details"]["name"] == "broken"


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "code"),
    [
        ("GET", f"/apis/{GROUP}/{VERSION}/namespaces/default/nosuchthings", None, "", 404),
        ("GET", "/apis/nosuch.example.org/v1", None, "", 404),
        ("GET", f"{NS_PATH}/does-not-exist", None, "", 404),
        ("GET", f"{NS_PATH}/x/scale", None, "", 404),
        ("POST", NS_PATH, b"{not json", "application/json", 400),
        ("POST", NS_PATH, b"[1,2]", "application/json", 400),
        ("POST", NS_PATH, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "application/json", 400),
        ("PATCH", f"{NS_PATH}/x", {"spec": {}}, "application/strategic-merge-patch+json", 415),
        ("PUT", NS_PATH, {}, "application/json", 405),
        ("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", {}, "application/json", 405),
        ("POST", NS_PATH, claim("UPPER-case"), "application/json", 422),
        ("POST", NS_PATH, claim("a" * 64), "application/json", 422),
    ],
)
def test_bad_requests_get_a_status(
    direct: ConnectorProcess, method: str, path: str, body: object, content_type: str, code: int
) -> None:
    status, answer = direct.call(method, path, body, content_type=content_type or "application/json")
    assert status == code, answer
    assert isinstance(answer, dict) and answer["kind"] == "Status" and answer["code"] == code


def test_control_plane_down_is_503_naming_it_in_the_log_then_recovers(testbed: Testbed) -> None:
    target = urlsplit(testbed.control_plane.apiserver_url)
    relay = TcpRelay(target.hostname or "127.0.0.1", target.port or 443)
    relay.start()
    kubeconfig = kubeconfig_copy(testbed.control_plane.kubeconfig, server=f"https://127.0.0.1:{relay.port}")
    proc = start_connector(testbed, cluster_id="e2e-cp-down", control_plane_kubeconfig=kubeconfig)
    try:
        assert proc.call("GET", NS_PATH)[0] == 200
        relay.stop()
        started = time.monotonic()
        status, body = proc.call("GET", NS_PATH)
        assert time.monotonic() - started < 10
        assert status == 503, body
        # The app user learns what happened, not where (issue 17): the address is in the log only.
        assert f"127.0.0.1:{relay.port}" not in body["message"] and body["kind"] == "Status"
        assert "unreachable" in body["message"]
        eventually(lambda: f"127.0.0.1:{relay.port}" in proc.logs(), what="the log to name the control plane")
        # Ready means discovery can be served: it must not follow the control plane (issue 8).
        assert proc.raw("GET", "/readyz", cert=False)[0] == 200
        assert proc.call("GET", f"/apis/{GROUP}/{VERSION}")[0] == 200
        assert proc.raw("GET", "/healthz", cert=False)[0] == 200
        relay.start()
        eventually(lambda: proc.call("GET", NS_PATH)[0] == 200, what="the connector to recover")
        proc.wait_ready()
    finally:
        proc.stop()
        relay.stop()
        kubeconfig.unlink()


def test_a_silently_dead_control_plane_ends_the_watch(testbed: Testbed) -> None:
    """A control plane that stops answering without closing its connections (a dead host, a
    dropped route) must not leave watches hanging: the app client has to see the watch end and
    re-watch, as kube-apiserver's own watches end (issue 8)."""
    target = urlsplit(testbed.control_plane.apiserver_url)
    relay = FaultRelay(target.hostname or "127.0.0.1", target.port or 443)
    relay.start()
    kubeconfig = kubeconfig_copy(testbed.control_plane.kubeconfig, server=f"https://127.0.0.1:{relay.port}")
    proc = start_connector(
        testbed,
        cluster_id="e2e-cp-silent",
        control_plane_kubeconfig=kubeconfig,
        extra_args=["--watch-idle-timeout-seconds", "3"],
    )
    headers = {"X-Remote-User": "e2e-admin", "X-Remote-Group": "system:masters"}
    try:
        connection = http.client.HTTPSConnection("127.0.0.1", proc.port, context=proc.ssl_context(), timeout=30)
        connection.request("GET", f"{NS_PATH}?watch=1", headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        relay.drop()  # the control plane goes silent; its connections stay open
        started = time.monotonic()
        response.read()  # returns when the connector ends the watch
        assert time.monotonic() - started < 15, "the watch outlived the idle deadline"
        connection.close()
        relay.resume()
        # The client re-watches and is served again.
        eventually(lambda: proc.call("GET", NS_PATH)[0] == 200, what="requests after the network is back")
        connection = http.client.HTTPSConnection("127.0.0.1", proc.port, context=proc.ssl_context(), timeout=30)
        connection.request("GET", f"{NS_PATH}?watch=1&timeoutSeconds=1", headers=headers)
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        proc.stop()
        relay.stop()
        kubeconfig.unlink()


def test_rejected_token_is_a_clear_503_and_never_shown(testbed: Testbed) -> None:
    kubeconfig = kubeconfig_copy(testbed.control_plane.kubeconfig, token=TOKEN)
    proc = start_connector(testbed, cluster_id="e2e-bad-token", control_plane_kubeconfig=kubeconfig, wait=False)
    try:
        eventually(lambda: proc.raw("GET", "/healthz", cert=False)[0] == 200, what=f"healthz; log:\n{proc.logs()}")
        responses = [proc.call("GET", NS_PATH), proc.call("POST", NS_PATH, claim("t")), proc.call("GET", "/apis")]
        for status, body in responses:
            assert status == 503, body
            # What happened, not where (issue 17): the control plane's address is in the log only.
            assert "credentials" in body["message"], body
            assert testbed.control_plane.apiserver_url.split("//")[1] not in body["message"], body
        ready = proc.raw("GET", "/readyz", cert=False)
        assert ready[0] == 500
        eventually(lambda: "credentials rejected" in proc.logs() or "refused" in proc.logs(), what="the refusal logged")
        assert testbed.control_plane.apiserver_url.split("//")[1] in proc.logs()
        everything = proc.logs() + str(responses) + ready[1].decode()
        assert TOKEN not in everything
    finally:
        proc.stop()
        kubeconfig.unlink()


def test_rbac_denial_of_the_connectors_own_identity_is_a_clear_503(testbed: Testbed) -> None:
    """The connector may read the claim APIs but not the claims: that is the connector's RBAC
    being wrong (503 naming it), not the user's request being forbidden (issue 8)."""
    ns, account = testbed.claim_namespace, "mcp-e2e-discovery-only"
    rules = "--verb=get,list,watch --resource=compositeresourcedefinitions.apiextensions.crossplane.io"
    testbed.kubectl(CONTROL_PLANE, "create", "serviceaccount", account, "-n", ns, check=False)
    testbed.kubectl(CONTROL_PLANE, "create", "clusterrole", account, *rules.split(),
                    "--resource=customresourcedefinitions.apiextensions.k8s.io", check=False)  # fmt: skip
    testbed.kubectl(CONTROL_PLANE, "create", "clusterrolebinding", account, f"--clusterrole={account}",
                    f"--serviceaccount={ns}:{account}", check=False)  # fmt: skip
    token = testbed.kubectl(CONTROL_PLANE, "create", "token", account, "-n", ns, "--duration=1h").stdout.strip()
    kubeconfig = kubeconfig_copy(testbed.control_plane.kubeconfig, token=token)
    proc = start_connector(testbed, cluster_id="e2e-rbac-denied", control_plane_kubeconfig=kubeconfig)
    try:
        assert proc.call("GET", f"/apis/{GROUP}/{VERSION}")[0] == 200
        for status, body in (proc.call("GET", NS_PATH), proc.call("POST", NS_PATH, claim("rbac"))):
            assert status == 503, body
            assert "denied the connector's own identity" in body["message"], body
            assert account not in body["message"] and token not in body["message"]
            assert testbed.control_plane.apiserver_url.split("//")[1] not in body["message"], body
    finally:
        proc.stop()
        kubeconfig.unlink()
        testbed.kubectl(CONTROL_PLANE, "delete", "clusterrolebinding,clusterrole", account, check=False)
