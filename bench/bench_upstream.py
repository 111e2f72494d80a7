"""Side-by-side benchmark of the upstream HTTP pool: httpx (HTTP/1.1, HTTP/2) against aiohttp.

Issue 3 asks to choose the connector's upstream transport by measurement (httpx issue 3215
reports httpx's pool far behind aiohttp under concurrency). Each round sends the same
requests through every client against the local control plane, rounds are interleaved so
machine noise hits all clients alike, and the result is reported as ratios to httpx/HTTP2.

    make dev-up && .venv/bin/python bench/bench_upstream.py --requests 2000 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

import aiohttp
import httpx
from loadgen import Send, drive

from mcp_connector import upstream
from mcp_connector.core.access import from_kubeconfig


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", default=".dev/control-plane.kubeconfig")
    parser.add_argument("--path", default="/apis/apiextensions.k8s.io/v1/customresourcedefinitions?limit=5")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    access = from_kubeconfig(Path(args.kubeconfig).read_text())
    connector_default = upstream.new_client(access, max_connections=args.concurrency)
    http2 = httpx.AsyncClient(
        base_url=access.url,
        verify=upstream.ssl_context(access),
        http2=True,
        limits=httpx.Limits(max_connections=args.concurrency),
    )
    http1 = httpx.AsyncClient(
        base_url=access.url,
        verify=upstream.ssl_context(access),
        limits=httpx.Limits(max_connections=args.concurrency),
    )
    connector = aiohttp.TCPConnector(ssl=upstream.ssl_context(access), limit=args.concurrency)
    session = aiohttp.ClientSession(base_url=access.url, connector=connector)

    async def via_aiohttp() -> int:
        async with session.get(args.path) as response:
            await response.read()
            return response.status

    async def via_httpx(client: httpx.AsyncClient) -> int:
        return (await client.get(args.path)).status_code

    clients: dict[str, Send] = {
        "httpx HTTP/2": lambda: via_httpx(http2),
        "httpx HTTP/1.1": lambda: via_httpx(http1),
        "httpx API over aiohttp (connector)": lambda: via_httpx(connector_default),
        "aiohttp HTTP/1.1": via_aiohttp,
    }
    results: dict[str, list[float]] = {name: [] for name in clients}
    for send in clients.values():  # warm the pools and TLS sessions
        await drive(send, requests=args.concurrency * 2, concurrency=args.concurrency)
    for _ in range(args.rounds):
        for name, send in clients.items():
            results[name].append(await drive(send, requests=args.requests, concurrency=args.concurrency))

    baseline = statistics.median(results["httpx HTTP/2"])
    print(f"GET {args.path}: {args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"  {name:34s} {median:8.0f} req/s   ratio {median / baseline:5.2f}")
    await asyncio.gather(http2.aclose(), http1.aclose(), connector_default.aclose(), session.close())


if __name__ == "__main__":
    asyncio.run(main())
