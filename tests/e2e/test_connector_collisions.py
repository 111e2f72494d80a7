"""Upbound's name hash joins its parts with "-x-", so two app claims can share a hashed name.

``a-x`` in namespace ``n`` and ``a`` in namespace ``x-n`` of one cluster both hash from
``a-x-x-n-x-<cluster>``. The connector must treat the labels as the identity: the second
claim gets a 409 and can neither read, apply over (even with force) nor delete the first.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
import yaml
from connector_fixtures import start_connector

from mcp_connector.core import contract
from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.seed import KUBERNETES_CLUSTER

pytestmark = pytest.mark.e2e


def test_colliding_names_are_refused_and_never_touch_the_owner(testbed: Testbed) -> None:
    suffix = secrets.token_hex(3)
    owner_ns, other_ns = f"n{suffix}", f"x-n{suffix}"
    cluster_id = f"collide-{uuid.uuid4().hex[:8]}"
    assert contract.control_plane_name(contract.AppRef(cluster_id, owner_ns, "a-x")) == contract.control_plane_name(
        contract.AppRef(cluster_id, other_ns, "a")
    )
    for ns in (owner_ns, other_ns):
        testbed.kubectl(APP_CLUSTER, "create", "namespace", ns)
    conn = start_connector(testbed, cluster_id=cluster_id)
    body: dict[str, Any] = yaml.safe_load(KUBERNETES_CLUSTER.example_claim_file.read_text())
    owner_path = f"/apis/k8s.starter.org/v1alpha1/namespaces/{owner_ns}/kubernetesclusters"
    other_path = f"/apis/k8s.starter.org/v1alpha1/namespaces/{other_ns}/kubernetesclusters"
    try:
        status, created = conn.call("POST", owner_path, {**body, "metadata": {"name": "a-x"}})
        assert status == 201, created

        status, answer = conn.call("POST", other_path, {**body, "metadata": {"name": "a"}})
        assert status == 409, answer
        applied = yaml.safe_dump({**body, "metadata": {"name": "a"}, "spec": {**body["spec"], "id": "stolen"}})
        status, answer = conn.call(
            "PATCH", f"{other_path}/a?fieldManager=thief&force=true", applied.encode(),
            content_type="application/apply-patch+yaml",
        )  # fmt: skip
        assert status == 409, answer
        assert conn.call("GET", f"{other_path}/a")[0] == 404
        assert conn.call("DELETE", f"{other_path}/a")[0] == 404

        status, kept = conn.call("GET", f"{owner_path}/a-x")
        assert status == 200, kept
        assert kept["metadata"]["uid"] == created["metadata"]["uid"]
        assert kept["spec"]["id"] == body["spec"]["id"]
        assert kept["metadata"]["namespace"] == owner_ns
    finally:
        conn.call("DELETE", f"{owner_path}/a-x")
        conn.stop()
        for ns in (owner_ns, other_ns):
            testbed.kubectl(APP_CLUSTER, "delete", "namespace", ns, "--wait=false", check=False)
