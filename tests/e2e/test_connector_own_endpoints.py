"""Issue 8, isolation: the connector's own checks, which the aggregator's RBAC cannot show.

Through the aggregator the app cluster authorizes a request before the connector sees it, so
a direct call with a valid front-proxy certificate is the only way to show that the connector
asks for itself (SubjectAccessReview). ``/metrics`` is authorized like Kubernetes components
authorize it: a user (front proxy, or a bearer token the app cluster accepts in a TokenReview)
allowed ``get`` on the non-resource URL. ``/healthz``, ``/livez`` and ``/readyz`` stay open.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from connector_fixtures import ADMIN, ConnectorProcess, start_connector

from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

CLAIMS = "/apis/k8s.starter.org/v1alpha1/namespaces/default/kubernetesclusters"
NOBODY = ("unprivileged-" + secrets.token_hex(2), ("system:authenticated",))


@pytest.fixture(scope="module")
def direct(testbed: Testbed) -> Iterator[ConnectorProcess]:
    proc = start_connector(testbed)
    try:
        yield proc
    finally:
        proc.stop()


def test_unprivileged_user_with_a_valid_front_proxy_certificate_gets_403(direct: ConnectorProcess) -> None:
    status, body = direct.call("GET", CLAIMS, user=NOBODY)
    assert status == 403 and body["kind"] == "Status" and body["reason"] == "Forbidden", body
    assert f'User "{NOBODY[0]}" cannot list resource "kubernetesclusters"' in body["message"]
    status, body = direct.call("GET", "/metrics", user=NOBODY)
    assert status == 403 and body["kind"] == "Status", body
    assert body["message"].startswith(f'forbidden: User "{NOBODY[0]}" cannot get path "/metrics"'), body
    assert direct.call("GET", CLAIMS, user=ADMIN)[0] == 200


def test_metrics_need_a_user_allowed_on_the_path(testbed: Testbed, direct: ConnectorProcess) -> None:
    status, body = direct.call("GET", "/metrics", cert=False)
    assert status == 401 and body["kind"] == "Status", body
    for health in ("/healthz", "/livez", "/readyz"):
        assert direct.raw("GET", health, cert=False)[0] == 200, health
    status, raw = direct.raw("GET", "/metrics", headers={"X-Remote-User": ADMIN[0], "X-Remote-Group": ADMIN[1][0]})
    assert status == 200 and b"mcp_connector_requests_total" in raw


def test_metrics_with_a_service_account_token(testbed: Testbed, direct: ConnectorProcess) -> None:
    """How Prometheus scrapes it: a ServiceAccount token, checked by TokenReview, then RBAC on the path."""
    ns, sa = "default", f"scraper-{secrets.token_hex(3)}"
    testbed.kubectl(APP_CLUSTER, "create", "serviceaccount", sa, "-n", ns)
    role = f"mcp-e2e-metrics-{sa}"
    try:
        token = testbed.kubectl(APP_CLUSTER, "create", "token", sa, "-n", ns).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        status, raw = direct.raw("GET", "/metrics", headers=auth, cert=False)
        assert status == 403 and json.loads(raw)["kind"] == "Status", raw
        testbed.kubectl(APP_CLUSTER, "create", "clusterrole", role, "--verb=get", "--non-resource-url=/metrics")
        testbed.kubectl(
            APP_CLUSTER, "create", "clusterrolebinding", role, f"--clusterrole={role}", f"--serviceaccount={ns}:{sa}"
        )

        def scraped() -> bytes | None:
            status, raw = direct.raw("GET", "/metrics", headers=auth, cert=False)
            return raw if status == 200 else None

        # The connector caches the denial for a second (--authz-denied-ttl-seconds).
        raw = eventually(scraped, what="/metrics allowed once the ClusterRoleBinding exists")
        assert b"mcp_connector_authorization_decisions_total" in raw
        status, raw = direct.raw("GET", "/metrics", headers={"Authorization": "Bearer not-a-token"}, cert=False)
        assert status == 401 and json.loads(raw)["kind"] == "Status"
        assert token not in direct.logs()
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")
        testbed.kubectl(APP_CLUSTER, "delete", "serviceaccount", sa, "-n", ns, "--ignore-not-found")
