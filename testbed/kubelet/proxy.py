"""kube-proxy's job for the pods this runner plays: a Service's ClusterIP:port reaches a ready pod.

The test bed gives Services ClusterIPs on the loopback range, so the aggregator's route for an
in-cluster APIService (the Service's ClusterIP and port) is an address of this host; this
listens there and relays each new connection to one of the Service's ready endpoints, picked at
random as kube-proxy's iptables mode does. The endpoints come from the Service's EndpointSlices,
written by the real EndpointSlice controller, so a pod that turns unready or terminates gets no
new connections while connections already relayed to it stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """One Service port: where clients connect."""

    service: str  # namespace/name
    port_name: str
    cluster_ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.service} {self.cluster_ip}:{self.port}"


Backend = tuple[str, int]


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
    """Listens on each route's ClusterIP:port and relays to a ready endpoint."""

    def __init__(self) -> None:
        self._servers: dict[Route, asyncio.Server] = {}
        self._backends: dict[Route, list[Backend]] = {}

    @property
    def routes(self) -> list[Route]:
        """The routes being served."""
        return list(self._servers)

    def backends(self, route: Route) -> list[Backend]:
        """The ready endpoints a new connection to ``route`` may go to."""
        return list(self._backends.get(route, []))

    async def sync(self, routes: dict[Route, list[Backend]]) -> None:
        """Serve exactly ``routes``, each to its ready endpoints (OSError if a ClusterIP:port cannot be bound)."""
        self._backends = {r: list(b) for r, b in routes.items()}
        for route in set(self._servers) - set(routes):
            self._servers.pop(route).close()
        for route in set(routes) - set(self._servers):

            async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Route = route) -> None:
                backends = self._backends.get(r) or []
                if not backends:  # no ready endpoint: refused, as kube-proxy rejects it
                    writer.close()
                    return
                ip, port = random.choice(backends)
                try:
                    up_reader, up_writer = await asyncio.open_connection(ip, port)
                except OSError:
                    writer.close()
                    return
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

            self._servers[route] = await asyncio.start_server(relay, route.cluster_ip, route.port, reuse_address=True)

    async def close(self) -> None:
        """Stop listening."""
        await self.sync({})
