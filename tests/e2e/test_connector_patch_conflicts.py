"""Merge patches of one claim from many clients at once all succeed, as with kube-apiserver.

kube-apiserver applies a patch without a resourceVersion of its own to the latest object again on
every conflict until the request times out, so clients patching one object together (a
controller and a user, two writers) never see a 409. The connector patches by read, modify and
update at the version read; it must retry as long, not give up after a few conflicts.
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
from collections import Counter
from typing import Any

import pytest
from connector_fixtures import app, start_connector
from fault_tools import GROUP, PLURAL, VERSION, claim_body
from informer import https_connection

from testbed.harness import Testbed

pytestmark = pytest.mark.e2e

LABEL = "e2e.mcp-connector.io/writer"
MERGE_PATCH = "application/merge-patch+json"
CLIENTS, PATCHES = 20, 60


@pytest.mark.timeout(300)
def test_concurrent_merge_patches_of_one_claim_all_succeed(testbed: Testbed) -> None:
    namespace = f"e2e-patch-{secrets.token_hex(3)}"
    app(testbed, "create", "namespace", namespace)
    proc = start_connector(testbed, cluster_id="e2e-patch-conflicts")
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    try:
        status, created = proc.call("POST", path, claim_body("contended", namespace))
        assert status == 201, created

        def patch(i: int) -> tuple[int, Any]:
            return proc.call("PATCH", f"{path}/contended", {"metadata": {"labels": {LABEL: str(i)}}},
                             content_type=MERGE_PATCH)  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(patch, range(PATCHES)))
        statuses = Counter(status for status, _ in results)
        assert statuses == {200: PATCHES}, [body for status, body in results if status != 200][:3]
        # The claim holds the patch that was applied last (the highest resourceVersion).
        last = max((body for _, body in results), key=lambda body: int(body["metadata"]["resourceVersion"]))
        status, now = proc.call("GET", f"{path}/contended")
        assert status == 200, now
        assert now["metadata"]["labels"][LABEL] == last["metadata"]["labels"][LABEL]

        # kube-apiserver, the same patches of a ConfigMap: all succeed too.
        app(testbed, "create", "configmap", "contended", "-n", namespace)
        configmap = f"/api/v1/namespaces/{namespace}/configmaps/contended"

        def patch_configmap(i: int) -> int:
            conn = https_connection(testbed.app_cluster, 30)
            try:
                body = json.dumps({"metadata": {"labels": {LABEL: str(i)}}}).encode()
                conn.request("PATCH", configmap, body=body, headers={"Content-Type": MERGE_PATCH})
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            assert Counter(pool.map(patch_configmap, range(PATCHES))) == {200: PATCHES}
    finally:
        proc.call("DELETE", f"{path}/contended")
        proc.stop()
        app(testbed, "delete", "namespace", namespace, "--wait=false", check=False)
