"""``/healthz``, ``/livez`` and ``/readyz``: alive means the process serves, ready means the control plane answers.

Readiness is cached for a second so probe storms do not become control-plane load.
"""

from __future__ import annotations

import time

from mcp_connector import upstream
from mcp_connector.core.discovery import XRD_LIST_PATH


class Health:
    """Answers the health endpoints for one control plane."""

    def __init__(self, client: upstream.Client, *, cache_seconds: float = 1.0) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._checked_at = -cache_seconds
        self._last: tuple[bool, str] = (False, "not checked yet")

    async def check(self, path: str) -> tuple[bool, str]:
        """(healthy, text) for a health path."""
        if not path.startswith("/readyz"):
            return True, "ok"
        now = time.monotonic()
        if now - self._checked_at >= self._cache_seconds:
            self._last = await self._ready()
            self._checked_at = time.monotonic()
        return self._last

    async def _ready(self) -> tuple[bool, str]:
        try:
            await upstream.request(self._client, "GET", XRD_LIST_PATH, params={"limit": "1"}, timeout=3.0)
        except upstream.ControlPlaneError as e:
            return False, f"not ready: {e}"
        return True, "ok"
