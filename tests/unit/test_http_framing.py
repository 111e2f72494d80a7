"""The HTTP server reads a user in many groups; its request line stays bounded (issue 17's class).

A user in 150 groups (the aggregator sends one X-Remote-Group header per group) was refused by
aiohttp's defaults with a plain-text 400 before the connector saw the request.
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


async def test_a_label_selector_up_to_the_line_bound_is_read(port: int) -> None:
    selector = "name+in+(" + ",".join(f"c-{i}" for i in range(1200)) + ")"
    target = f"/apis?labelSelector={selector}"
    assert 7_000 < len(target) < framing.MAX_REQUEST_LINE_BYTES - 100
    assert await _status(port, target, []) == 200


async def test_the_bounds_still_hold(port: int) -> None:
    """Past 8,190 bytes of request line, 1,024 headers or 8,190 bytes in one: refused."""
    assert await _status(port, "/x?q=" + "a" * (framing.MAX_REQUEST_LINE_BYTES + 1), []) == 400
    assert await _status(port, "/x", [("X-Remote-Group", str(i)) for i in range(framing.MAX_HEADERS + 1)]) == 400
    assert await _status(port, "/x", [("X-Remote-Group", "g" * 2 * framing.MAX_HEADER_BYTES)]) == 400
