"""An HTTPS proxy on 127.0.0.1 that plays an Upbound host in front of the test bed's control plane.

Upbound serves a managed control plane's Kubernetes API under
``https://<host>/v1/controlPlanes/<account>/<name>/k8s``. The proxy strips that prefix and
passes the bearer token on; its serving certificate comes from a CA that clients trust
through ``SSL_CERT_FILE`` (``ca_file``), as they would trust a public CA in production.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from connector_fixtures import free_port

from mcp_connector.core import certs
from testbed.harness import Testbed

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
