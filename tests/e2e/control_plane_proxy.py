"""An HTTPS reverse proxy in front of the test bed's control plane that can stall writes.

Interrupting the disconnect hook from outside needs a point in the middle of it: the
proxy forwards everything, and once ``hold_writes_after(n)`` has let ``n`` PATCH requests
through it holds every further PATCH unanswered until ``release()`` (or until the client
gives up), so a test can kill the Pulumi process while the hook waits. It serves on
127.0.0.1 with a certificate from its own CA; ``kubeconfig(token)`` reaches the control
plane through it.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from connector_fixtures import free_port

from mcp_connector.core import certs
from testbed.harness import Testbed

_SESSION = web.AppKey("session", aiohttp.ClientSession)


class HoldingProxy:
    """Forwards to the control plane; holds PATCHes past a count (see module docstring)."""

    def __init__(self, testbed: Testbed, work: Path) -> None:
        ca, ca_key = certs.new_ca("holding-proxy-e2e-ca")
        cert, key = certs.issue_serving_cert(ca, ca_key, ["127.0.0.1"], lifetime=certs.CA_LIFETIME)
        self.ca_pem = certs.cert_pem(ca)
        (work / "proxy.crt").write_bytes(certs.cert_pem(cert))
        (work / "proxy.key").write_bytes(certs.key_pem(key))
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(work / "proxy.crt", work / "proxy.key")
        self._upstream_tls = ssl.create_default_context(cafile=str(testbed.control_plane.ca_cert))
        self._upstream = testbed.control_plane.apiserver_url
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.patches = 0
        self.held = 0
        self._allowed: int | None = None
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def hold_writes_after(self, count: int) -> None:
        """Let ``count`` more PATCH requests through, then hold the rest."""
        self._release.clear()
        self._allowed = self.patches + count

    def release(self) -> None:
        """Forward every PATCH again, including the held ones."""
        self._allowed = None
        self._release.set()

    def kubeconfig(self, token: str) -> str:
        """A control-plane kubeconfig that goes through this proxy with a bearer token."""
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "proxy",
                        "cluster": {
                            "server": self.url,
                            "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                        },
                    }
                ],
                "users": [{"name": "proxy", "user": {"token": token}}],
                "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
                "current-context": "proxy",
            }
        )

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.method == "PATCH":
            if self._allowed is not None and self.patches >= self._allowed:
                self.held += 1
                while not self._release.is_set():
                    await asyncio.sleep(0.05)
            self.patches += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept", "content-type")}
        session = request.app[_SESSION]
        async with session.request(
            request.method,
            self._upstream + request.path,
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
            app[_SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._upstream_tls))
            app.router.add_route("*", "/{tail:.*}", self._forward)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self._server_tls).start()
            while not self._stopped.is_set():
                await asyncio.sleep(0.1)
            await app[_SESSION].close()
            await runner.cleanup()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._release.set()
        self._stopped.set()
        self._thread.join(10)
