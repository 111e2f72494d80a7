"""The control-plane client: errors name the URL and cause, never the token."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from mcp_connector import upstream
from mcp_connector.core import certs
from mcp_connector.core.access import ControlPlaneAccess

TOKEN = "tok-never-print-me"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_control_plane_is_named_without_the_token() -> None:
    url = f"https://127.0.0.1:{free_port()}"
    async with upstream.connected(ControlPlaneAccess(url=url, token=TOKEN), timeout=2) as client:
        with pytest.raises(upstream.ControlPlaneUnreachable) as caught:
            await upstream.fetch_claim_apis(client)
    assert url in str(caught.value)
    assert "cannot connect" in str(caught.value)
    assert TOKEN not in repr(caught.value) and TOKEN not in str(caught.value)


@contextlib.asynccontextmanager
async def serving(app: web.Application, sans: tuple[str, ...] = ("127.0.0.1",)) -> AsyncIterator[tuple[str, bytes]]:
    """``app`` over HTTPS on 127.0.0.1 with a certificate for ``sans``; yields (url, CA PEM)."""
    ca, ca_key = certs.new_ca("test-ca")
    cert, key = certs.issue_serving_cert(ca, ca_key, list(sans), lifetime=datetime.timedelta(hours=1))
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert_file.write_bytes(certs.cert_pem(cert))
        key_file.write_bytes(certs.key_pem(key))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}", certs.cert_pem(ca)
    finally:
        await runner.cleanup()


KINDS = ("httpx", "aiohttp")


@contextlib.asynccontextmanager
async def client_of(kind: str, access: ControlPlaneAccess, **kwargs: Any) -> AsyncIterator[upstream.Client]:
    """The component's httpx client or the connector's aiohttp client: both behave the same."""
    if kind == "httpx":
        async with upstream.connected(access, timeout=5, **kwargs) as client:
            yield client
        return
    aio = upstream.AioClient(access, timeout=5, **kwargs)
    try:
        yield aio
    finally:
        await aio.aclose()


def json_app(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.mark.parametrize("kind", KINDS)
async def test_tls_server_name_is_verified_instead_of_the_url_host(kind: str) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "status": "Success"})

    async with serving(json_app(ok), sans=("cp.internal",)) as (url, ca):
        named = ControlPlaneAccess(url=url, token=TOKEN, ca_pem=ca, tls_server_name="cp.internal")
        async with client_of(kind, named) as client:
            assert (await upstream.request(client, "GET", "/version"))["status"] == "Success"
        async with client_of(kind, ControlPlaneAccess(url=url, token=TOKEN, ca_pem=ca)) as client:
            with pytest.raises(upstream.ControlPlaneUnreachable, match="TLS certificate not trusted"):
                await upstream.request(client, "GET", "/version")


@pytest.mark.parametrize("kind", KINDS)
async def test_headers_go_up_and_warnings_and_retry_after_come_back(kind: str) -> None:
    seen: list[CIMultiDict[str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(CIMultiDict(request.headers))
        headers = {"Warning": '299 - "deprecated"'}
        if request.method == "POST":
            headers["Retry-After"] = "2"
            body = {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "slow down"}
            return web.json_response(body, status=429, headers=headers)
        return web.json_response({"kind": "Thing"}, headers=headers)

    async with (
        serving(json_app(handler)) as (url, ca),
        client_of(kind, ControlPlaneAccess(url=url, ca_pem=ca)) as client,
    ):
        reply = await upstream.exchange(client, "GET", "/x", headers={"Audit-ID": "a-1", "User-Agent": "ua/1"})
        assert reply.warnings == ('299 - "deprecated"',)
        with pytest.raises(upstream.ControlPlaneRejected) as caught:
            await upstream.exchange(client, "POST", "/x", json_body={})
    assert caught.value.retry_after == "2" and caught.value.warnings == ('299 - "deprecated"',)
    assert not caught.value.refuses_credentials
    assert seen[0]["Audit-ID"] == "a-1" and seen[0]["User-Agent"] == "ua/1"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_silent_watch_ends_after_the_idle_timeout(kind: str) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"type":"ADDED","object":{"kind":"Thing"}}\n')
        await asyncio.Event().wait()  # a control plane that vanished without closing the connection
        return response

    got = []
    async with (
        serving(json_app(stalls)) as (url, ca),
        client_of(kind, ControlPlaneAccess(url=url, ca_pem=ca)) as client,
    ):
        started = time.monotonic()
        with pytest.raises(upstream.ControlPlaneUnreachable, match="no answer in time"):
            async with upstream.watch(client, "/w", params={}, idle_timeout=0.5) as events:
                async for event in events:
                    got.append(event)
    assert got == [{"type": "ADDED", "object": {"kind": "Thing"}}]
    assert time.monotonic() - started < 5


async def test_the_aiohttp_client_reads_events_split_anyhow_and_rereads_its_token_file() -> None:
    big = "x" * 200_000
    tokens: list[str] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        tokens.append(request.headers.get("Authorization", ""))
        if request.query.get("watch") != "true":
            return web.json_response({"kind": "Status", "code": 404, "message": "nope"}, status=404)
        response = web.StreamResponse()
        await response.prepare(request)
        data = b'{"type":"ADDED","object":{"big":"' + big.encode() + b'"}}\n\n{"type":"DELETED","object":{}}\n'
        for i in range(0, len(data), 7_000):
            await response.write(data[i : i + 7_000])
        return response

    with tempfile.TemporaryDirectory() as folder:
        token_file = Path(folder, "token")
        token_file.write_text("first\n")
        async with serving(json_app(stream)) as (url, ca):
            aio = upstream.AioClient(ControlPlaneAccess(url=url, ca_pem=ca), timeout=5, token_file=str(token_file))
            try:
                async with upstream.watch(aio, "/w", params={}) as events:
                    got = [e async for e in events]
                with pytest.raises(upstream.ControlPlaneRejected) as caught:
                    await upstream.request(aio, "GET", "/missing")
            finally:
                await aio.aclose()
    assert [e["type"] for e in got] == ["ADDED", "DELETED"] and got[0]["object"]["big"] == big
    assert caught.value.status == 404 and caught.value.body is not None and caught.value.body["message"] == "nope"
    assert tokens == ["Bearer first", "Bearer first"]


async def test_the_aiohttp_client_names_an_unreachable_control_plane_without_the_token() -> None:
    url = f"https://127.0.0.1:{free_port()}"
    aio = upstream.AioClient(ControlPlaneAccess(url=url, token=TOKEN), timeout=2)
    try:
        with pytest.raises(upstream.ControlPlaneUnreachable) as caught:
            await upstream.request(aio, "GET", "/version")
    finally:
        await aio.aclose()
    assert url in str(caught.value) and "cannot connect" in str(caught.value) and TOKEN not in str(caught.value)


def test_upstream_sockets_keep_alive() -> None:
    sock = upstream._keepalive_socket((socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", 1)))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    finally:
        sock.close()
