"""The HTTP server reads what kube-apiserver's Go server reads: long request lines, many headers.

Issue 17's class: a user in 150 groups (the aggregator sends one X-Remote-Group header per
group) and a list with a 20 KB label selector were refused by aiohttp's defaults with a
plain-text 400 before the connector saw them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mcp_connector.connector.http import framing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {"groups": len(request.headers.getall("X-Remote-Group", ())), "query": len(request.query_string)}
    )


@pytest.fixture
async def port() -> AsyncIterator[int]:
    application = web.Application()
    application.router.add_get("/{tail:.*}", _echo)
    runner = framing.runner(application, shutdown_timeout=0.1)
    await runner.setup()
    number = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", number)
    await site.start()
    try:
        yield number
    finally:
        await runner.cleanup()


async def _status(port: int, target: str, headers: list[tuple[str, str]]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = (await reader.readline()).split()[1]
    writer.close()
    return int(status)


async def test_a_user_in_many_groups_is_read(port: int) -> None:
    groups = [("X-Remote-Group", f"group-{i}") for i in range(900)]
    assert await _status(port, "/x", [("X-Remote-User", "jane"), *groups]) == 200


async def test_a_long_label_selector_is_read(port: int) -> None:
    selector = "name+in+(" + ",".join(f"claim-{i}" for i in range(20_000)) + ")"
    assert len(selector) > 200_000
    assert await _status(port, f"/apis?labelSelector={selector}", []) == 200


async def test_the_bounds_still_hold(port: int) -> None:
    """Past Go's 1 MiB for the request line, past 1,024 headers or 8,190 bytes in one: refused."""
    assert await _status(port, "/x?q=" + "a" * (framing.MAX_REQUEST_LINE_BYTES + 1), []) == 400
    assert await _status(port, "/x", [("X-Remote-Group", str(i)) for i in range(framing.MAX_HEADERS + 1)]) == 400
    assert await _status(port, "/x", [("X-Remote-Group", "g" * 2 * framing.MAX_HEADER_BYTES)]) == 400
