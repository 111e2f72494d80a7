"""Issue 12: reads and watches through the app cluster's aggregator, side by side with two floors.

Three paths serve the same 2 KB claim, measured in one run with the rounds interleaved, so the
figures that matter are the ratios (the machine's 2 cores are shared with everything else):

* ``aggregator``: client -> app kube-apiserver -> connector (its cache) -> control plane;
* ``app CRD``: the same CRD (group renamed) served by the app cluster's kube-apiserver itself,
  the floor for the aggregation hop;
* ``control plane``: the claim read straight from the control plane, label-selected.

GETs (consistent, and ``resourceVersion=0``), LISTs of 1,000 and 10,000 claims, then 1,000
watches through the aggregator while the control plane changes the watched claim: connector
RSS per watch, how late each event arrives (against 1,000 watches of the app cluster's own
CRD), events lost, and how many watches the control plane sees. Claims carry Crossplane's
``crossplane.io/paused`` annotation so the test bed's Crossplane leaves them alone.

    make dev-up && make bench          # or: .venv/bin/python bench/bench_cache.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e")]

from connector_fixtures import ConnectorProcess, expose, start_connector, wait_available  # noqa: E402

from mcp_connector.core import contract  # noqa: E402
from testbed import APP_CLUSTER, CONTROL_PLANE  # noqa: E402
from testbed.harness import Testbed  # noqa: E402
from testbed.state import ClusterState  # noqa: E402

GROUP, LOCAL_GROUP, VERSION, PLURAL, KIND = (
    "k8s.starter.org",
    "bench.mcp-connector.local",
    "v1alpha1",
    "kubernetesclusters",
    "KubernetesCluster",
)
#: The app cluster's own copy of the CRD has names of its own: with the claim's names, kubectl in
#: the app cluster would resolve ``kubernetesclusters`` to it instead of the connector's API.
LOCAL_PLURAL, LOCAL_KIND = "benchclusters", "BenchCluster"
CLUSTER_ID = "bench-cache"
FLOOR = "APIResourceList (the aggregation hop's floor)"
NAMESPACES = {"bench-get": 1, "bench-200": 200, "bench-1k": 1000, "bench-10k": 10000, "bench-watch": 1}
#: What the reads phase alone (--reads-only) needs seeded.
READ_NAMESPACES = ("bench-get", "bench-200")
PAUSED = {"crossplane.io/paused": "true"}
FILLER = "x" * 1300  # brings a claim to about 2 KB


def context(cluster: ClusterState) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cluster.ca_cert))
    ctx.load_cert_chain(str(cluster.admin_cert), str(cluster.admin_key))
    return ctx


def session(cluster: ClusterState, limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=cluster.apiserver_url,
        connector=aiohttp.TCPConnector(ssl=context(cluster), limit=limit),
        headers={"Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
    )


def claim(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "annotations": {**PAUSED, "bench/filler": FILLER}},
        "spec": {"id": name, "parameters": {"nodes": {"count": 1, "size": "small"}}},
    }


class Paths:
    """URLs of one namespace's claims on each of the three paths."""

    def __init__(self, tb: Testbed, namespace: str) -> None:
        self.namespace = namespace
        self.agg = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        self.local = f"/apis/{LOCAL_GROUP}/{VERSION}/namespaces/{namespace}/{LOCAL_PLURAL}"
        self.cp = f"/apis/{GROUP}/{VERSION}/namespaces/{tb.claim_namespace}/{PLURAL}"
        self.selector = contract.scope_selector(CLUSTER_ID, namespace)

    def cp_name(self, name: str) -> str:
        return contract.control_plane_name(contract.AppRef(CLUSTER_ID, self.namespace, name))


async def _status(response: aiohttp.ClientResponse) -> int:
    await response.read()
    return response.status


async def _names(s: aiohttp.ClientSession, path: str, params: dict[str, str]) -> set[str]:
    """Names at ``path`` (app-side names for control-plane claims), read in pages of metadata."""
    names: set[str] = set()
    query = {**params, "limit": "500"}
    headers = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
    while True:
        for attempt in range(5):  # a loaded machine's apiserver may time a page out (504)
            async with s.get(path, params=query, headers=headers) as r:
                if r.status == 200:
                    page = await r.json()
                    break
                await r.read()
            await asyncio.sleep(1 + attempt)
        else:
            raise AssertionError(f"listing {path} kept failing: HTTP {r.status}")
        for item in page.get("items") or []:
            labels = item["metadata"].get("labels") or {}
            names.add(labels.get(contract.APP_NAME_LABEL) or item["metadata"]["name"])
        token = page["metadata"].get("continue")
        if not token:
            return names
        query["continue"] = token


async def seed(
    tb: Testbed, cp: aiohttp.ClientSession, app: aiohttp.ClientSession, namespaces: tuple[str, ...] = tuple(NAMESPACES)
) -> None:
    """The claims on both sides; only what an earlier run did not make yet."""
    for namespace in namespaces:
        count = NAMESPACES[namespace]
        # An earlier run's namespaces are deleted without waiting: one still terminating takes no claims.
        phase = tb.kubectl(APP_CLUSTER, "get", "namespace", namespace, "-o", "jsonpath={.status.phase}", check=False)
        if phase.stdout == "Terminating":
            tb.kubectl(APP_CLUSTER, "wait", "--for=delete", f"namespace/{namespace}", "--timeout=300s", timeout=320)
        tb.kubectl(APP_CLUSTER, "create", "namespace", namespace, check=False)
        paths = Paths(tb, namespace)
        wanted = {f"bench-{i}" for i in range(count)}
        missing_cp = sorted(wanted - await _names(cp, paths.cp, {"labelSelector": paths.selector}))
        missing_local = sorted(wanted - await _names(app, paths.local, {}))

        async def worker(queue: list[str], post: Callable[[str], Awaitable[None]]) -> None:
            while queue:
                await post(queue.pop())

        async def to_cp(name: str, paths: Paths = paths, namespace: str = namespace) -> None:
            ref = contract.AppRef(CLUSTER_ID, namespace, name)
            stored = contract.to_control_plane(claim(name, namespace), ref, claim_namespace=tb.claim_namespace)
            async with cp.post(paths.cp, json=stored) as r:
                assert r.status in (201, 409), await r.text()

        async def to_local(name: str, paths: Paths = paths, namespace: str = namespace) -> None:
            local = {**claim(name, namespace), "apiVersion": f"{LOCAL_GROUP}/{VERSION}", "kind": LOCAL_KIND}
            async with app.post(paths.local, json=local) as r:
                assert r.status in (201, 409), await r.text()

        if missing_cp or missing_local:
            started = time.monotonic()
            await asyncio.gather(
                *(worker(missing_cp, to_cp) for _ in range(16)), *(worker(missing_local, to_local) for _ in range(16))
            )
            print(f"  seeded {namespace}: {count} claims per side in {time.monotonic() - started:.0f}s", flush=True)


def local_crd(tb: Testbed) -> None:
    """The control plane's claim CRD (schema, printer columns), renamed, installed in the app cluster itself."""
    crd = tb.kubectl_json(CONTROL_PLANE, "get", "crd", f"{PLURAL}.{GROUP}")
    crd["metadata"] = {"name": f"{LOCAL_PLURAL}.{LOCAL_GROUP}"}
    crd["spec"]["group"] = LOCAL_GROUP
    crd["spec"]["names"] = {
        "plural": LOCAL_PLURAL,
        "singular": LOCAL_PLURAL[:-1],
        "kind": LOCAL_KIND,
        "listKind": f"{LOCAL_KIND}List",
    }
    crd.pop("status", None)
    tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(crd))
    name = f"crd/{LOCAL_PLURAL}.{LOCAL_GROUP}"
    tb.kubectl(APP_CLUSTER, "wait", "--for=condition=Established", "--timeout=60s", name)


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


FAILED: list[str] = []


async def latencies(send: Callable[[], Awaitable[int]], n: int) -> list[float]:
    """Latencies of ``n`` requests one at a time (failures are counted, not timed)."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        status = await send()
        if status == 200:
            out.append(time.perf_counter() - started)
        else:
            FAILED.append(f"HTTP {status}")
    return out


async def rate(send: Callable[[], Awaitable[int]], n: int, concurrency: int) -> float:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await send()
            if status != 200:
                FAILED.append(f"HTTP {status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def getter(s: aiohttp.ClientSession, path: str, **params: str) -> Callable[[], Awaitable[int]]:
    async def send() -> int:
        async with s.get(path, params=params) as r:
            return await _status(r)

    return send


async def cp_watches(cp: aiohttp.ClientSession) -> float:
    async with cp.get("/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_longrunning_requests{")
        and f'resource="{PLURAL}"' in line
        and 'verb="WATCH"' in line
        and f'group="{GROUP}"' in line
    )


async def measure(tb: Testbed, pid: int, args: argparse.Namespace) -> list[str]:
    rows: list[str] = []
    cp, app = session(tb.control_plane, 64), session(tb.app_cluster, 64)
    # All of them, also for --watches-only: the cache's size is part of the conditions.
    await seed(tb, cp, app, READ_NAMESPACES if args.reads_only else tuple(NAMESPACES))
    if args.reads_only:
        rows += await reads(tb, pid, args, cp, app)
        await cp.close()
        await app.close()
        return rows
    if args.watches_only:
        rows += await watches(tb, pid, args)
        await cp.close()
        await app.close()
        return rows
    rows += await reads(tb, pid, args, cp, app)
    rows.append("")
    rows += await watches(tb, pid, args)
    rows.append("")
    rows.append("| LIST | p50 ms | p99 ms | ratio to control plane | ratio to app CRD |")
    rows.append("|---|---|---|---|---|")
    for namespace, n in (("bench-1k", args.list_1k), ("bench-10k", args.list_10k)):
        p = Paths(tb, namespace)
        sends = {
            "aggregator": getter(app, p.agg),
            "aggregator RV=0": getter(app, p.agg, resourceVersion="0"),
            "app CRD": getter(app, p.local),
            "control plane": getter(cp, p.cp, labelSelector=p.selector),
        }
        for send in sends.values():
            await send()
        ll: dict[str, list[float]] = {k: [] for k in sends}
        for _ in range(n):
            for name, send in sends.items():
                ll[name] += await latencies(send, 1)
        for name in sends:
            p50, p99 = pct(ll[name], 0.5), pct(ll[name], 0.99)
            rows.append(
                f"| {NAMESPACES[namespace]:,} claims, {name} | {p50 * 1000:.0f} | {p99 * 1000:.0f} | "
                f"{p50 / pct(ll['control plane'], 0.5):.2f}x | {p50 / pct(ll['app CRD'], 0.5):.2f}x |"
            )
    await cp.close()
    await app.close()
    return rows


#: The connector under measurement (set by main), for its own /metrics.
CONNECTOR: list[ConnectorProcess] = []


def metric(name: str, labels: str = "") -> float:
    """A counter of the connector's /metrics (0 when absent), read as an admin of the app cluster;
    ``labels`` as the exposition writes them (``{path="cache"}``), or the first series when empty."""
    admin = {"X-Remote-User": "bench-admin", "X-Remote-Group": "system:masters"}
    status, body = CONNECTOR[0].raw("GET", "/metrics", headers=admin)
    assert status == 200, body[:300]
    for line in body.decode().splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def list_paths() -> tuple[float, float]:
    """The connector's consistent LISTs so far, by the path it chose: (cache, control plane)."""
    name = "mcp_connector_consistent_list_paths_total"
    return metric(name, '{path="cache"}'), metric(name, '{path="control plane"}')


def direct_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The share of the consistent LISTs between two readings that the control plane answered."""
    cache, control_plane = after[0] - before[0], after[1] - before[1]
    return control_plane / (cache + control_plane) if cache + control_plane else 0.0


async def reads(
    tb: Testbed, pid: int, args: argparse.Namespace, cp: aiohttp.ClientSession, app: aiohttp.ClientSession
) -> list[str]:
    """Issue 23: consistent and resourceVersion=0 GETs and LISTs of 200, at 1 and 16 clients.

    Every path in each round, rounds interleaved; figures are medians over the rounds (p50 at 1
    client, throughput at 16), so a floor that moves with the machine's load moves for all.
    """
    g, l200 = Paths(tb, "bench-get"), Paths(tb, "bench-200")
    targets = {
        "GET of a 2 KB claim": {
            "aggregator": (app, f"{g.agg}/bench-0", {}),
            "app CRD": (app, f"{g.local}/bench-0", {}),
            "control plane": (cp, f"{g.cp}/{g.cp_name('bench-0')}", {}),
        },
        "LIST of 200 x 2 KB": {
            "aggregator": (app, l200.agg, {}),
            "app CRD": (app, l200.local, {}),
            "control plane": (cp, l200.cp, {"labelSelector": l200.selector}),
        },
        # The aggregation hop's floor: the connector's cheapest answer (its group version's
        # APIResourceList, from memory) through the aggregator, beside the app cluster's own.
        FLOOR: {
            "aggregator": (app, f"/apis/{GROUP}/{VERSION}", {}),
            "app CRD": (app, f"/apis/{LOCAL_GROUP}/{VERSION}", {}),
            "control plane": (cp, f"/apis/{GROUP}/{VERSION}", {}),
        },
    }
    rows = [
        "| read | path | 1 client p50 ms | x app CRD | x control plane | 16 clients req/s | x app CRD "
        "| connector CPU ms per read | proof reads per read at 16 clients "
        "| consistent LISTs the control plane answered, 1 / 16 clients |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    profiler = profile(pid, args.profile) if args.reads_only else None
    for read, paths in targets.items():
        listing = read.startswith("LIST")
        sequential = max(10, args.sequential // 5) if listing else args.sequential
        requests = max(50, args.requests // 5) if listing else args.requests
        for consistency in ("discovery",) if read == FLOOR else ("consistent", "resourceVersion=0"):
            extra = {"resourceVersion": "0"} if consistency == "resourceVersion=0" else {}
            sends = {name: getter(s, path, **params, **extra) for name, (s, path, params) in paths.items()}
            for send in sends.values():  # warm pools, TLS, caches
                await rate(send, 50, 16)
            p50s: dict[str, list[float]] = {k: [] for k in sends}
            rates: dict[str, list[float]] = {k: [] for k in sends}
            cpu: list[float] = []
            proofs: list[float] = []
            direct: dict[int, list[float]] = {1: [], 16: []}
            for _ in range(args.rounds):
                for name, send in sends.items():
                    before = proc_stats(pid)[0]
                    paths_before = list_paths()
                    p50s[name].append(pct(await latencies(send, sequential), 0.5))
                    paths_between = list_paths()
                    asked, proved = (
                        metric("mcp_connector_cache_consistent_reads_total"),
                        metric("mcp_connector_cache_proof_reads_total"),
                    )
                    rates[name].append(await rate(send, requests, 16))
                    if name == "aggregator":
                        cpu.append((proc_stats(pid)[0] - before) / (sequential + requests))
                        asked = metric("mcp_connector_cache_consistent_reads_total") - asked
                        proved = metric("mcp_connector_cache_proof_reads_total") - proved
                        proofs.append(proved / asked if asked else 0.0)
                        if listing and consistency == "consistent":
                            direct[1].append(direct_share(paths_before, paths_between))
                            direct[16].append(direct_share(paths_between, list_paths()))
            med = {k: statistics.median(v) for k, v in p50s.items()}
            med_rate = {k: statistics.median(v) for k, v in rates.items()}
            shares = " / ".join(f"{statistics.median(direct[n]):.0%}" for n in (1, 16) if direct[n])
            for name in sends:
                cells = [
                    read if name == "aggregator" else "",
                    f"{name}, {consistency}",
                    f"{med[name] * 1000:.1f}",
                    f"{med[name] / med['app CRD']:.2f}x",
                    f"{med[name] / med['control plane']:.2f}x",
                    f"{med_rate[name]:.0f}",
                    f"{med_rate[name] / med_rate['app CRD']:.2f}x",
                    f"{statistics.median(cpu) * 1000:.2f}" if name == "aggregator" else "",
                    f"{statistics.median(proofs):.2f}" if name == "aggregator" and consistency == "consistent" else "",
                    shares if direct[1] and name == "aggregator" else "",
                ]
                rows.append("| " + " | ".join(cells) + " |")
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    return rows


async def watch_set(s: aiohttp.ClientSession, path: str, n: int) -> tuple[list[aiohttp.ClientResponse], str]:
    async with s.get(path) as r:
        rv = (await r.json())["metadata"]["resourceVersion"]

    async def open_one() -> aiohttp.ClientResponse:
        r = await s.get(path, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "600"})
        assert r.status == 200, await r.text()
        return r

    opened: list[aiohttp.ClientResponse] = []
    for i in range(0, n, 50):
        opened += await asyncio.gather(*(open_one() for _ in range(min(50, n - i))))
    return opened, rv


async def watches(tb: Testbed, pid: int, args: argparse.Namespace) -> list[str]:
    n, writes = args.watches, args.writes
    w = Paths(tb, "bench-watch")
    cp = session(tb.control_plane, 8)
    agg_s, local_s = session(tb.app_cluster, n + 10), session(tb.app_cluster, n + 10)
    upstream_before = await cp_watches(cp)
    await asyncio.sleep(5)  # the connector's heap settles after the GET phase before RSS is sampled
    _, rss_before = proc_stats(pid)
    agg, _ = await watch_set(agg_s, w.agg, n)
    local, _ = await watch_set(local_s, w.local, n)
    await asyncio.sleep(2)  # let the connector settle its per-watch buffers before sampling RSS
    _, rss_after = proc_stats(pid)
    upstream_during = await cp_watches(cp)
    seen: dict[str, list[list[float]]] = {"aggregator": [[] for _ in agg], "app CRD": [[] for _ in local]}
    sent: dict[str, dict[int, float]] = {"aggregator": {}, "app CRD": {}}

    marker = b'"nodes":{"count":'

    async def reader(kind: str, i: int, response: aiohttp.ClientResponse) -> None:
        got: set[int] = set()
        async for line in response.content:
            now = time.perf_counter()  # before any parsing: the client's own cost is not the server's
            at = line.find(marker)
            if at < 0 or not line.startswith(b'{"type":"MODIFIED"'):
                continue
            digits = line[at + len(marker) : line.index(b"}", at)].split(b",")[0]
            count = int(digits)
            sent_at = sent[kind].get(count)
            if sent_at is not None and count not in got:  # Crossplane's own update after a write repeats its count
                got.add(count)
                seen[kind][i].append(now - sent_at)

    readers = [asyncio.create_task(reader("aggregator", i, r)) for i, r in enumerate(agg)]
    readers += [asyncio.create_task(reader("app CRD", i, r)) for i, r in enumerate(local)]
    app = session(tb.app_cluster, 8)
    merge = {"Content-Type": "application/merge-patch+json"}
    profiler = profile(pid, args.profile)
    for k in range(writes):
        count = 100 + k
        for kind, s, url in (
            ("aggregator", cp, f"{w.cp}/{w.cp_name('bench-0')}"),
            ("app CRD", app, f"{w.local}/bench-0"),
        ):
            sent[kind][count] = time.perf_counter()
            patch = {"spec": {"parameters": {"nodes": {"count": count}}}}
            async with s.patch(url, data=json.dumps(patch), headers=merge) as r:
                assert r.status == 200, await r.text()
            deadline = time.monotonic() + 30
            while any(len(v) <= k for v in seen[kind]) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        profiler.wait(60)
    for task in readers:
        task.cancel()
    for r in (*agg, *local):
        r.close()
    await asyncio.gather(*readers, return_exceptions=True)
    rows = [
        f"| {n:,} watches, {writes} control-plane writes | p50 ms | p99 ms | events lost |",
        "|---|---|---|---|",
    ]
    floor = [x for v in seen["app CRD"] for x in v]
    for kind in seen:
        values = [x for v in seen[kind] for x in v]
        lost = n * writes - len(values)
        rows.append(
            f"| event latency, {kind} | {pct(values, 0.5) * 1000:.1f} | {pct(values, 0.99) * 1000:.1f} | {lost} |"
        )
    values = [x for v in seen["aggregator"] for x in v]
    rows.append(
        f"| added by the connector path | {(pct(values, 0.5) - pct(floor, 0.5)) * 1000:.1f} | "
        f"{(pct(values, 0.99) - pct(floor, 0.99)) * 1000:.1f} | |"
    )
    rows.append(f"| connector RSS per watch | {(rss_after - rss_before) / n / 1024:.0f} KB | | |")
    rows.append(
        f"| control-plane watches on the claim API | {upstream_before:.0f} before, {upstream_during:.0f} "
        f"with {n:,} client watches open | | |"
    )
    for s in (cp, agg_s, local_s, app):
        await s.close()
    return rows


def profile(pid: int, to: str | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the connector (native frames too: the garbage collector shows) into ``to``."""
    if not to:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--native", "--rate", "50", "--format", "raw", "-o", to]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=200, help="GETs one at a time per round (latency)")
    parser.add_argument("--requests", type=int, default=1000, help="GETs per round at 16 clients (rate)")
    parser.add_argument("--list-1k", type=int, default=15, help="lists of 1,000 per path")
    parser.add_argument("--list-10k", type=int, default=5, help="lists of 10,000 per path")
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="a short run to check the benchmark works")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy samples the connector during the watch writes (with --reads-only: during the reads)",
    )
    parser.add_argument(
        "--watches-only", action="store_true", help="only the watch phase (use with --keep to seed once)"
    )
    parser.add_argument(
        "--reads-only", action="store_true", help="only issue 23's reads (GETs and LISTs of 200, both consistencies)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the 11,002 claims per side for the next run (Crossplane resyncs them)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.sequential, args.requests, args.list_1k, args.list_10k = 1, 30, 100, 2, 1
        args.watches, args.writes = 50, 3
    tb = Testbed.from_state_file()
    local_crd(tb)
    tb.kubectl(APP_CLUSTER, "delete", "apiservice", "--ignore-not-found", f"{VERSION}.{GROUP}")
    connector = start_connector(
        tb,
        cluster_id=CLUSTER_ID,
        manage_apiservices=True,
        service_name=f"bench-{uuid.uuid4().hex[:6]}",
        extra_args=[
            "--max-watches", str(args.watches + 500), "--max-watches-per-user", str(args.watches + 500),
            "--max-requests-inflight", "1000", "--max-requests-inflight-per-user", "1000",
            "--authz-allowed-ttl-seconds", "10", "--log-level", "warning", "--upstream-timeout-seconds", "60",
            "--secret-resync-seconds", "60",  # the default: the e2e tests' 5 s full resync walks all 11,002 claims
        ],
    )  # fmt: skip
    try:
        expose(tb, connector)
        wait_available(tb, [f"{VERSION}.{GROUP}"])
        assert connector.proc is not None
        started, load_before = time.monotonic(), os.getloadavg()[0]
        print(f"connector pid {connector.proc.pid}", flush=True)
        CONNECTOR.append(connector)
        rows = asyncio.run(measure(tb, connector.proc.pid, args))
        load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        print(f"\n`{' '.join(['bench/bench_cache.py', *sys.argv[1:]])}` ({time.monotonic() - started:.0f}s, {load}):\n")
        print("\n".join(rows))
        print(f"\nfailed requests: {len(FAILED)} {sorted(set(FAILED))}")
    finally:
        connector.stop()
        tb.kubectl(APP_CLUSTER, "delete", "apiservice", "-l", "app.kubernetes.io/managed-by=mcp-connector",
                   "--ignore-not-found")  # fmt: skip
        if not args.keep:  # 11,000 paused claims would make the test bed's Crossplane resync them every 30 s
            asyncio.run(remove_seeds(tb))


async def remove_seeds(tb: Testbed) -> None:
    """Delete the benchmark's claims (one deletecollection), its CRD in the app cluster and its namespaces."""
    async with session(tb.control_plane, 4) as cp:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{tb.claim_namespace}/{PLURAL}"
        async with cp.delete(path, params={"labelSelector": f"{contract.APP_CLUSTER_LABEL}={CLUSTER_ID}"}) as r:
            await r.read()
    tb.kubectl(APP_CLUSTER, "delete", "crd", f"{LOCAL_PLURAL}.{LOCAL_GROUP}", "--ignore-not-found", "--wait=false")
    tb.kubectl(APP_CLUSTER, "delete", "namespace", *NAMESPACES, "--ignore-not-found", "--wait=false")


if __name__ == "__main__":
    main()
