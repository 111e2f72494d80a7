"""``/healthz``, ``/livez`` and ``/readyz``: alive means the process serves, ready means discovery can be served.

Readiness must not follow the control plane. The app cluster routes an APIService to the
connector only while it is ready; a connector that went unready with its control plane would
take its groups out of discovery, and the app cluster's namespace controller and garbage
collector stall on any group whose discovery fails. So the connector is ready once it has read
the claim APIs (its catalog) and stays ready; while the control plane is away, resource calls
get a 503 Status and discovery keeps answering from the last catalog. It turns unready only on
SIGTERM, so the Service sends new connections to the other replicas while this one drains.
"""

from __future__ import annotations

from mcp_connector.connector.runtime import Runtime


class Health:
    """Answers the health endpoints from the runtime's state (no I/O)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    async def check(self, path: str) -> tuple[bool, str]:
        """(healthy, text) for a health path."""
        if not path.startswith("/readyz"):
            return True, "ok"
        if self._rt.stopping:
            return False, "not ready: shutting down"
        if not self._rt.catalog_loaded:
            return False, f"not ready: {self._rt.catalog_error}"
        return True, "ok"
