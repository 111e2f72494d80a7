"""The control-plane client: errors name the URL and cause, never the token."""

from __future__ import annotations

import socket

import pytest

from mcp_connector import upstream
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
