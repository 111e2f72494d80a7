"""Discovery that reads only the CRDs the XRDs name, and a control plane reached by its TLS server name."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from mcp_connector import upstream
from mcp_connector.core import certs
from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector.core.discovery import CRD_LIST, XRD_LIST, crd_names_for

XRD_LIST_PATH = "/" + "/".join(XRD_LIST)
CRD_LIST_PATH = "/" + "/".join(CRD_LIST)

LEGACY = {
    "metadata": {"name": "xwidgets.example.org", "uid": "xrd-uid"},
    "spec": {"group": "example.org", "claimNames": {"kind": "Widget", "plural": "widgets"}},
}
NAMESPACED = {
    "spec": {"group": "v2.example.org", "scope": "Namespaced", "names": {"kind": "Gadget", "plural": "gadgets"}}
}
NO_CLAIMS = {"spec": {"group": "cluster.example.org", "names": {"kind": "XThing", "plural": "xthings"}}}


def test_crd_names_for_claims_and_namespaced_xrs() -> None:
    assert crd_names_for([LEGACY, NAMESPACED, NO_CLAIMS, {}]) == ("gadgets.v2.example.org", "widgets.example.org")


def _crd(name: str, kind: str, plural: str, group: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": [{"controller": True, "uid": "xrd-uid"}]},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }


async def test_only_the_named_crds_are_read() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == XRD_LIST_PATH:
            return httpx.Response(200, json={"items": [LEGACY], "metadata": {}})
        if request.url.path == f"{CRD_LIST_PATH}/widgets.example.org":
            return httpx.Response(200, json=_crd("widgets.example.org", "Widget", "widgets", "example.org"))
        return httpx.Response(403, json={"kind": "Status", "code": 403, "message": "forbidden"})

    async with httpx.AsyncClient(base_url="https://cp.test", transport=httpx.MockTransport(handler)) as client:
        apis = await upstream.fetch_claim_apis_by_name(client)
    assert [a.resource for a in apis] == ["widgets.example.org"]
    assert asked == [XRD_LIST_PATH, f"{CRD_LIST_PATH}/widgets.example.org"], "never the whole CRD list"


@pytest.fixture
async def server_named_cp_internal(tmp_path: Path) -> AsyncIterator[tuple[str, bytes]]:
    ca, key = certs.new_ca("sni-test-ca")
    cert, cert_key = certs.issue_serving_cert(ca, key, ["cp.internal"], lifetime=certs.CA_LIFETIME)
    (tmp_path / "tls.crt").write_bytes(certs.cert_pem(cert))
    (tmp_path / "tls.key").write_bytes(certs.key_pem(cert_key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def xrds(request: web.Request) -> web.Response:
        return web.json_response({"items": [], "metadata": {}})

    app = web.Application()
    app.router.add_get(XRD_LIST_PATH, xrds)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}", certs.cert_pem(ca)
    await runner.cleanup()


async def test_tls_server_name_is_what_the_certificate_is_checked_against(
    server_named_cp_internal: tuple[str, bytes],
) -> None:
    url, ca_pem = server_named_cp_internal
    named = ControlPlaneAccess(url=url, ca_pem=ca_pem, tls_server_name="cp.internal")
    async with upstream.connected(named, timeout=5) as client:
        assert await upstream.fetch_claim_apis_by_name(client) == ()
    unnamed = ControlPlaneAccess(url=url, ca_pem=ca_pem)
    async with upstream.connected(unnamed, timeout=5) as client:
        with pytest.raises(upstream.ControlPlaneUnreachable, match=r"TLS certificate not trusted|cannot connect"):
            await upstream.fetch_claim_apis_by_name(client)
