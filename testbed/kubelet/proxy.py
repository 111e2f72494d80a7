"""kube-proxy's job for the pods this runner plays: a Service's ClusterIP:port reaches the pod.

The test bed gives Services ClusterIPs on the loopback range, so the aggregator's route for an
in-cluster APIService (the Service's ClusterIP and port) is an address of this host; this
relays each such connection to the pod's IP and target port.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """One Service port: where clients connect, and where the pod listens."""

    service: str  # namespace/name
    port_name: str
    cluster_ip: str
    port: int
    pod_ip: str
    target_port: int

    def __str__(self) -> str:
        return f"{self.service} {self.cluster_ip}:{self.port} -> {self.pod_ip}:{self.target_port}"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


class Proxy:
    """Listens on each route's ClusterIP:port and relays to the pod."""

    def __init__(self) -> None:
        self._servers: dict[Route, asyncio.Server] = {}

    @property
    def routes(self) -> list[Route]:
        """The routes being served."""
        return list(self._servers)

    async def sync(self, routes: list[Route]) -> None:
        """Serve exactly ``routes`` (OSError if a ClusterIP:port cannot be bound)."""
        for route in set(self._servers) - set(routes):
            self._servers.pop(route).close()
        for route in set(routes) - set(self._servers):

            async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Route = route) -> None:
                try:
                    up_reader, up_writer = await asyncio.open_connection(r.pod_ip, r.target_port)
                except OSError:
                    writer.close()
                    return
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

            self._servers[route] = await asyncio.start_server(relay, route.cluster_ip, route.port, reuse_address=True)

    async def close(self) -> None:
        """Stop listening."""
        await self.sync([])
