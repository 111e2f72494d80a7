"""The connector against an Upbound-style control-plane URL with a mounted token file.

Upbound serves a managed control plane's Kubernetes API under
``https://<host>/v1/controlPlanes/<account>/<name>/k8s``. A small HTTPS proxy on 127.0.0.1
plays that host in front of the test bed's control plane (stripping the prefix, passing the
bearer token on), with a serving certificate from a CA the connector trusts through
``SSL_CERT_FILE``, as it would trust a public CA in production.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from connector_fixtures import control_plane_token, free_port, start_connector

from mcp_connector.core import certs, contract
from testbed import CONTROL_PLANE
from testbed.harness import Testbed
from testbed.seed import KUBERNETES_CLUSTER

pytestmark = pytest.mark.e2e

ACCOUNT, CONTROL_PLANE_NAME = "acme", "prod"
PREFIX = f"/v1/controlPlanes/{ACCOUNT}/{CONTROL_PLANE_NAME}/k8s"
SESSION = web.AppKey("session", aiohttp.ClientSession)


class UpboundProxy:
    """An HTTPS reverse proxy serving the control plane under Upbound's URL prefix."""

    def __init__(self, testbed: Testbed, work: Path) -> None:
        ca, ca_key = certs.new_ca("upbound-e2e-ca")
        cert, key = certs.issue_serving_cert(ca, ca_key, ["127.0.0.1"], lifetime=certs.CA_LIFETIME)
        self.ca_file = work / "upbound-ca.crt"
        self.ca_file.write_bytes(certs.cert_pem(ca))
        (work / "upbound.crt").write_bytes(certs.cert_pem(cert))
        (work / "upbound.key").write_bytes(certs.key_pem(key))
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(work / "upbound.crt", work / "upbound.key")
        self._upstream_tls = ssl.create_default_context(cafile=str(testbed.control_plane.ca_cert))
        self._upstream = testbed.control_plane.apiserver_url
        self.port = free_port()
        self.requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if not request.path.startswith(PREFIX):
            return web.json_response({"kind": "Status", "code": 404, "message": "no such control plane"}, status=404)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept", "content-type")}
        session: aiohttp.ClientSession = request.app[SESSION]
        async with session.request(
            request.method,
            self._upstream + request.path.removeprefix(PREFIX),
            params=request.query,
            data=await request.read(),
            headers=headers,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            app = web.Application()
            app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._upstream_tls))
            app.router.add_route("*", "/{tail:.*}", self._forward)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self._server_tls).start()
            await asyncio.get_running_loop().run_in_executor(None, self._stopped.wait)
            await app[SESSION].close()
            await runner.cleanup()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> UpboundProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stopped.set()
        self._thread.join(10)


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
