"""What the connector costs: the same reads through the connector and straight to the control plane.

The connector authenticates the front proxy, authorizes by SubjectAccessReview (cached),
translates and forwards; this measures that overhead as a ratio, side by side in one run
(rounds interleaved), for a get and a list of 20 claims, on the local test bed.

    make dev-up && .venv/bin/python bench/bench_connector.py
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import uuid
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e")]

from connector_fixtures import start_connector  # noqa: E402
from loadgen import Send, drive  # noqa: E402

from mcp_connector.core import contract  # noqa: E402
from testbed.harness import Testbed  # noqa: E402
from testbed.seed import KUBERNETES_CLUSTER  # noqa: E402

NAMESPACE = "bench"
CLAIMS = 20


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


async def measure(
    tb: Testbed, connector_port: int, connector_ca: Path, cluster_id: str, args: argparse.Namespace
) -> None:
    app = tb.app_cluster
    assert app.proxy_client_cert and app.proxy_client_key
    via_connector = aiohttp.ClientSession(
        base_url=f"https://127.0.0.1:{connector_port}",
        connector=aiohttp.TCPConnector(
            ssl=client_context(connector_ca, app.proxy_client_cert, app.proxy_client_key), limit=args.concurrency
        ),
        headers={"X-Remote-User": "bench", "X-Remote-Group": "system:masters"},
    )
    cp = tb.control_plane
    direct = aiohttp.ClientSession(
        base_url=cp.apiserver_url,
        connector=aiohttp.TCPConnector(
            ssl=client_context(cp.ca_cert, cp.admin_cert, cp.admin_key), limit=args.concurrency
        ),
    )
    group = "/apis/k8s.starter.org/v1alpha1"
    app_list = f"{group}/namespaces/{NAMESPACE}/kubernetesclusters"
    cp_list = f"{group}/namespaces/{tb.claim_namespace}/kubernetesclusters"
    selector = contract.scope_selector(cluster_id, NAMESPACE)
    hashed = contract.control_plane_name(contract.AppRef(cluster_id, NAMESPACE, "bench-0"))

    async def get(session: aiohttp.ClientSession, path: str, **params: str) -> int:
        async with session.get(path, params=params) as response:
            await response.read()
            return response.status

    pairs: dict[str, tuple[Send, Send]] = {
        "get one claim": (
            lambda: get(direct, f"{cp_list}/{hashed}"),
            lambda: get(via_connector, f"{app_list}/bench-0"),
        ),
        f"list {CLAIMS} claims": (
            lambda: get(direct, cp_list, labelSelector=selector),
            lambda: get(via_connector, app_list),
        ),
    }
    rates: dict[tuple[str, str], list[float]] = {}
    for pair in pairs.values():  # warm pools, TLS sessions and the authorization cache
        for send in pair:
            await drive(send, requests=args.concurrency * 2, concurrency=args.concurrency)
    for _ in range(args.rounds):
        for name, (to_cp, to_connector) in pairs.items():
            for side, send in (("control plane", to_cp), ("connector", to_connector)):
                rate = await drive(send, requests=args.requests, concurrency=args.concurrency)
                rates.setdefault((name, side), []).append(rate)
    print(f"{args.requests} requests x {args.rounds} rounds, concurrency {args.concurrency}, medians:")
    for name in pairs:
        direct_rate = statistics.median(rates[(name, "control plane")])
        connector_rate = statistics.median(rates[(name, "connector")])
        print(
            f"  {name:16s} control plane {direct_rate:7.0f} req/s   through the connector {connector_rate:7.0f} req/s"
            f"   ratio {connector_rate / direct_rate:4.2f}"
        )
    await asyncio.gather(via_connector.close(), direct.close())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tb = Testbed.from_state_file()
    tb.kubectl("app-cluster", "create", "namespace", NAMESPACE, check=False)
    cluster_id = f"bench-{uuid.uuid4().hex[:8]}"
    connector = start_connector(tb, cluster_id=cluster_id)
    body = yaml.safe_load(KUBERNETES_CLUSTER.example_claim_file.read_text())
    path = f"/apis/k8s.starter.org/v1alpha1/namespaces/{NAMESPACE}/kubernetesclusters"
    try:
        for i in range(CLAIMS):
            status, answer = connector.call("POST", path, {**body, "metadata": {"name": f"bench-{i}"}})
            assert status == 201, answer
        asyncio.run(measure(tb, connector.port, connector.cert_dir / "ca.crt", cluster_id, args))
    finally:
        connector.call("DELETE", path)
        connector.stop()


if __name__ == "__main__":
    main()
