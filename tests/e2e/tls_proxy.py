"""An HTTPS reverse proxy on 127.0.0.1 in front of the test bed's control plane.

It serves with a certificate from a CA of its own (``ca_pem``, also written to ``ca_file``) and
forwards the bearer token, Accept and Content-Type to the control plane, streaming the answer
back (watches included). Subclasses choose the upstream path (``upstream_path``) and may hold a
request before it is forwarded (``before_forward``): the hooks the e2e suites need to play an
Upbound host or to stall a disconnect in its middle.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web
from connector_fixtures import free_port

from mcp_connector.core import certs
from testbed.harness import Testbed

_SESSION = web.AppKey("session", aiohttp.ClientSession)
_FORWARDED_HEADERS = ("authorization", "accept", "content-type")


class ForwardingProxy:
    """Forwards every request to the control plane; a context manager that serves in a thread."""

    def __init__(self, testbed: Testbed, work: Path, name: str) -> None:
        ca, ca_key = certs.new_ca(f"{name}-e2e-ca")
        cert, key = certs.issue_serving_cert(ca, ca_key, ["127.0.0.1"], lifetime=certs.CA_LIFETIME)
        self.ca_pem = certs.cert_pem(ca)
        self.ca_file = work / f"{name}-ca.crt"
        self.ca_file.write_bytes(self.ca_pem)
        (work / f"{name}.crt").write_bytes(certs.cert_pem(cert))
        (work / f"{name}.key").write_bytes(certs.key_pem(key))
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(work / f"{name}.crt", work / f"{name}.key")
        self._upstream_tls = ssl.create_default_context(cafile=str(testbed.control_plane.ca_cert))
        self._upstream = testbed.control_plane.apiserver_url
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def upstream_path(self, request: web.Request) -> str | None:
        """The control-plane path for ``request``, or None to answer 404."""
        return request.path

    async def before_forward(self, request: web.Request) -> None:
        """Called before each request is forwarded; may hold it."""

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        path = self.upstream_path(request)
        if path is None:
            return web.json_response({"kind": "Status", "code": 404, "message": "not found"}, status=404)
        await self.before_forward(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
        async with request.app[_SESSION].request(
            request.method, self._upstream + path, params=request.query, data=await request.read(), headers=headers
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
            await asyncio.get_running_loop().run_in_executor(None, self._stopped.wait)
            await app[_SESSION].close()
            await runner.cleanup()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stopped.set()
        self._thread.join(10)
