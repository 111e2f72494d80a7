"""Issue 9: a watch that arrives while the connector's cache relists is not accepted and then dropped.

After a control-plane restart the cache's first re-watch is answered ``410 Gone`` (the new
kube-apiserver's watch cache starts at a newer version) and the cache lists again. A client
watch that came in meanwhile was served from the stale cache (200 OK) and ended by the relist a
moment later, without an event: ``kubectl get -w`` exited before the next change, the flake of
the restart test (its session showed the watch open, then never printed the round's writes).
kube-apiserver's cacher refuses watches while it re-initializes; the connector's cache waits
for its relist or lets the control plane answer, and the watch stays open and delivers.

The relist is provoked from outside: a proxy between the connector and the control plane
answers the cache's first upstream watch with the ``410 Gone`` event kube-apiserver sends for a
version too old, and holds the relist that follows until the test lets it through.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from connector_fixtures import connected, control_plane_token, wait_available
from control_plane_proxy import HoldingProxy
from fault_tools import GROUP, PLURAL, VERSION, ControlPlaneClaims

from mcp_connector.core import contract
from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.tools import tool_path
from testbed.waiting import LineReader, eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-cache-relist"
CLUSTER_ID = "e2e-cache-relist"
APISERVICE = f"{VERSION}.{GROUP}"
_GONE = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version: 1 (2)",
        "reason": "Expired",
        "code": 410,
    },
}


class ExpiringProxy(HoldingProxy):
    """Answers the cache's first upstream watch with 410 Gone and holds its next list until released."""

    def __init__(self, testbed: Testbed, work: Path) -> None:
        super().__init__(testbed, work)
        self._collection = f"/apis/{GROUP}/{VERSION}/namespaces/{testbed.claim_namespace}/{PLURAL}"
        self._selector = contract.scope_selector(CLUSTER_ID, None)
        self.expired = False
        self.lists = 0
        #: Lists of the cache answered so far.
        self.lists_done = 0
        #: Set once the cache's relist is being held.
        self.list_held = threading.Event()
        self._list_release = threading.Event()

    def release_list(self) -> None:
        """Let the held relist (and every later one) through."""
        self._list_release.set()

    def _from_cache(self, request: web.Request) -> bool:
        """The cache's own list or watch: this cluster's objects in the whole claim namespace."""
        return request.path == self._collection and request.query.get("labelSelector") == self._selector

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._from_cache(request) and request.query.get("watch") == "true" and not self.expired:
            self.expired = True
            response = web.StreamResponse(status=200)
            response.content_type = "application/json"
            await response.prepare(request)
            await response.write(json.dumps(_GONE).encode() + b"\n")
            await response.write_eof()
            return response
        if not self._from_cache(request) or request.query.get("watch") == "true":
            return await super()._forward(request)
        self.lists += 1
        if self.lists > 1:
            self.list_held.set()
            await asyncio.get_running_loop().run_in_executor(None, self._list_release.wait)
        response = await super()._forward(request)
        self.lists_done += 1
        return response

    def __exit__(self, *exc: object) -> None:
        self._list_release.set()
        super().__exit__(*exc)


@pytest.fixture
def namespace(testbed: Testbed) -> Iterator[str]:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    yield NAMESPACE
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.mark.timeout(300)
def test_a_kubectl_watch_during_a_relist_stays_open_and_delivers(
    testbed: Testbed, namespace: str, tmp_path: Path
) -> None:
    claims = ControlPlaneClaims(testbed, CLUSTER_ID)
    claims.remove_all()
    token = control_plane_token(testbed)
    with ExpiringProxy(testbed, tmp_path) as proxy:
        kubeconfig = tmp_path / "control-plane.kubeconfig"
        kubeconfig.write_text(proxy.kubeconfig(token))
        with connected(testbed, cluster_id=CLUSTER_ID, control_plane_kubeconfig=kubeconfig):
            wait_available(testbed, [APISERVICE])
            claims.create(namespace, "before")
            assert proxy.list_held.wait(60), "the cache never relisted after its watch was answered 410 Gone"
            command = [
                str(tool_path("kubectl")), "--kubeconfig", str(testbed.app_cluster.kubeconfig),
                "get", PLURAL, "-n", namespace, "-w", "--output-watch-events", "--no-headers", "-v=6",
                "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,RV:.object.metadata.resourceVersion",
            ]  # fmt: skip
            kubectl = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                assert kubectl.stdout is not None
                output = LineReader(kubectl.stdout)
                output.wait_for(lambda line: "watch=true" in line and '"200 OK"' in line, timeout=60,
                                what="kubectl's watch to be answered")  # fmt: skip
                proxy.release_list()
                eventually(lambda: proxy.lists_done >= 2, what="the cache's relist to be answered")
                written = claims.create(namespace, "after")
                expected = ["ADDED", "after", str(written["metadata"]["resourceVersion"])]
                output.wait_for(lambda line: line.split() == expected, timeout=60,
                                what="kubectl -w to print the claim made after the relist")  # fmt: skip
                assert kubectl.poll() is None, "kubectl -w exited"
            finally:
                kubectl.terminate()
                kubectl.wait(15)
    claims.remove_all()
