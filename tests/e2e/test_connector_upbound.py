"""The connector against an Upbound-style control-plane URL with a mounted token file.

Upbound serves a managed control plane's Kubernetes API under
``https://<host>/v1/controlPlanes/<account>/<name>/k8s``. A small HTTPS proxy on 127.0.0.1
plays that host in front of the test bed's control plane (stripping the prefix, passing the
bearer token on), with a serving certificate from a CA the connector trusts through
``SSL_CERT_FILE``, as it would trust a public CA in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from connector_fixtures import control_plane_token, start_connector
from upbound_proxy import ACCOUNT, CONTROL_PLANE_NAME, PREFIX, UpboundProxy

from mcp_connector.core import contract
from testbed import CONTROL_PLANE
from testbed.harness import Testbed
from testbed.seed import KUBERNETES_CLUSTER

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy(testbed: Testbed, tmp_path: Path) -> Iterator[UpboundProxy]:
    with UpboundProxy(testbed, tmp_path) as running:
        yield running


def test_upbound_url_and_token_file_reach_the_control_plane(
    testbed: Testbed, proxy: UpboundProxy, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(control_plane_token(testbed) + "\n")
    cluster_id = f"upbound-{uuid.uuid4().hex[:8]}"
    conn = start_connector(
        testbed,
        cluster_id=cluster_id,
        control_plane_args=[
            "--upbound-host", f"127.0.0.1:{proxy.port}", "--account", ACCOUNT,
            "--control-plane", CONTROL_PLANE_NAME, "--token-file", str(token_file),
        ],
        env={"SSL_CERT_FILE": str(proxy.ca_file)},
    )  # fmt: skip
    claims = "/apis/k8s.starter.org/v1alpha1/namespaces/default/kubernetesclusters"
    body = yaml.safe_load(KUBERNETES_CLUSTER.example_claim_file.read_text())
    try:
        status, created = conn.call("POST", claims, {**body, "metadata": {"name": "via-upbound"}})
        assert status == 201, created
        status, listed = conn.call("GET", claims)
        assert status == 200, listed
        assert [item["metadata"]["name"] for item in listed["items"]] == ["via-upbound"]
        hashed = contract.control_plane_name(contract.AppRef(cluster_id, "default", "via-upbound"))
        stored = testbed.kubectl_json(CONTROL_PLANE, "get", "kubernetesclusters", hashed, "-n", testbed.claim_namespace)
        assert contract.app_ref_of(stored) == contract.AppRef(cluster_id, "default", "via-upbound")
        assert all(path.startswith(PREFIX) for path in proxy.requests), set(proxy.requests)
        assert f"{PREFIX}/apis/apiextensions.crossplane.io/v1/compositeresourcedefinitions" in proxy.requests
    finally:
        conn.call("DELETE", f"{claims}/via-upbound")
        conn.stop()
