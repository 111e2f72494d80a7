"""Issue 9, the connector SIGKILLed and restarted under load.

Writers create claims and append to them through the app cluster while an informer watches the
namespace; the connector is killed (SIGKILL, no chance to clean up) and started again, three
times. Every request ends within a bound, either done or with a 503 Status; the watch ends at
each kill and resumes from its resourceVersion; and nothing is written twice:

* each append is a JSON patch adding a new finalizer (``add /metadata/finalizers/-``), which a
  second application would leave twice in the list;
* generateName creates leave no more objects than requests were sent.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from connector_fixtures import ConnectorProcess, connected, wait_available
from fault_tools import GROUP, KIND, PLURAL, VERSION, Write, check_deliveries
from informer import Informer, https_connection

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-kill"
CLUSTER_ID = "e2e-connector-kill"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
APISERVICE = f"{VERSION}.{GROUP}"
KILLS = 3
WORKERS = 4
STEPS_PER_CLAIM = 4
#: No request through the app cluster may take longer, whatever happens to the connector.
BOUND_S = 20.0
FINALIZER = "e2e.mcp-connector.io/step-"


@dataclass
class Outcome:
    """One request the writers sent and how it ended."""

    op: str
    name: str
    status: int  # -1: the connection failed
    body: Any
    took: float
    at: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def unclear(self) -> bool:
        """Failed in a way that leaves the write's fate unknown (the connector died under it)."""
        return self.status in (-1, 503)


@dataclass
class Claim:
    """What the writers know about one claim they created."""

    name: str
    created: bool | None = None  # None: the create's outcome is unknown
    uid: str = ""
    ok_steps: set[int] = field(default_factory=set)
    unclear_steps: set[int] = field(default_factory=set)
    failed_steps: set[int] = field(default_factory=set)


def request(tb: Testbed, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
    conn = https_connection(tb.app_cluster, BOUND_S + 10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", **({"Content-Type": content_type} if data else {})}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except json.JSONDecodeError:
        return response.status, raw.decode(errors="replace")


class Load:
    """Writer threads: create a claim, append steps to it, move on to the next; plus generateName creates."""

    def __init__(self, tb: Testbed) -> None:
        self.tb = tb
        self.outcomes: list[Outcome] = []
        self.claims: dict[str, Claim] = {}
        self.generated: Counter[str] = Counter()  # prefix -> 201s
        self.generated_unclear: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(w,), daemon=True) for w in range(WORKERS)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(BOUND_S + 15)
            assert not t.is_alive(), "a writer hangs"

    def count(self, *, ok: bool, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.ok == ok and o.at >= since)

    def _send(self, op: str, name: str, method: str, path: str, body: Any, content_type: str) -> Outcome:
        started = time.monotonic()
        try:
            status, answer = request(self.tb, method, path, body, content_type)
        except (OSError, http.client.HTTPException) as e:
            status, answer = -1, f"{type(e).__name__}: {e}"
        outcome = Outcome(op, name, status, answer, time.monotonic() - started, time.monotonic())
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    def _work(self, worker: int) -> None:
        serial = 0
        claim: Claim | None = None
        step = 0
        while not self._stop.is_set():
            if serial % 5 == 4:
                prefix = f"gen-w{worker}-"
                body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"generateName": prefix},
                        "spec": {"id": "generated", "parameters": {"nodes": {"count": 1}}}}  # fmt: skip
                out = self._send("generate", prefix, "POST", NS_PATH, body, "application/json")
                with self._lock:
                    if out.ok:
                        self.generated[prefix] += 1
                    elif out.unclear:
                        self.generated_unclear[prefix] += 1
            elif claim is None or step >= STEPS_PER_CLAIM:
                claim = Claim(f"w{worker}-c{serial}")
                self.claims[claim.name] = claim
                step = 0
                body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                        "metadata": {"name": claim.name, "finalizers": [f"{FINALIZER}0"]},
                        "spec": {"id": claim.name, "parameters": {"nodes": {"count": 1}}}}  # fmt: skip
                out = self._send("create", claim.name, "POST", NS_PATH, body, "application/json")
                if out.ok:
                    claim.created, claim.uid = True, out.body["metadata"]["uid"]
                    step = 1
                else:
                    claim.created = None if out.unclear else False
                    claim = None  # never append to a claim we are not sure exists
            else:
                patch = [{"op": "add", "path": "/metadata/finalizers/-", "value": f"{FINALIZER}{step}"}]
                out = self._send(
                    "append", claim.name, "PATCH", f"{NS_PATH}/{claim.name}", patch, "application/json-patch+json"
                )
                (claim.ok_steps if out.ok else claim.unclear_steps if out.unclear else claim.failed_steps).add(step)
                step += 1  # never retried: a retry of an unclear append could itself write twice
            serial += 1
            if not out.ok:
                self._stop.wait(0.1)  # a client's backoff, so a dead connector is not hammered


@pytest.fixture(scope="module")
def served(testbed: Testbed) -> Iterator[ConnectorProcess]:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    with connected(testbed, cluster_id=CLUSTER_ID) as proc:
        wait_available(testbed, [APISERVICE])
        yield proc
        # Claims carry finalizers nobody else removes: clear them, then delete.
        for item in proc.call("GET", NS_PATH)[1]["items"]:
            name = item["metadata"]["name"]
            proc.call("PATCH", f"{NS_PATH}/{name}", {"metadata": {"finalizers": None}},
                      content_type="application/merge-patch+json")  # fmt: skip
        proc.call("DELETE", NS_PATH)
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


def control_plane_claims(tb: Testbed) -> list[dict[str, Any]]:
    selector = contract.scope_selector(CLUSTER_ID, NAMESPACE)
    return list(tb.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", tb.claim_namespace, "-l", selector)["items"])


@pytest.mark.timeout(300)
def test_kill_under_load_fails_cleanly_resumes_watches_and_writes_once(
    testbed: Testbed, served: ConnectorProcess
) -> None:
    proc = served
    informer = Informer(lambda timeout: https_connection(testbed.app_cluster, timeout), NS_PATH, read_timeout=60)
    informer.start()
    eventually(informer.synced, what="the informer's first list")
    load = Load(testbed)
    load.start()
    recoveries: list[float] = []
    try:
        for kill in range(KILLS):
            since = time.monotonic()
            eventually(lambda since=since: load.count(ok=True, since=since) >= 10, timeout=60,  # type: ignore[misc]
                       what=f"writes to succeed before kill {kill + 1}")  # fmt: skip
            assert proc.proc is not None
            proc.proc.kill()
            proc.proc.wait(10)
            killed = time.monotonic()
            eventually(lambda killed=killed: load.count(ok=False, since=killed) >= WORKERS, timeout=BOUND_S,  # type: ignore[misc]
                       what=f"writes to fail after kill {kill + 1}")  # fmt: skip
            proc.start()
            restarted = time.monotonic()
            eventually(lambda restarted=restarted: load.count(ok=True, since=restarted) >= 1, timeout=90,  # type: ignore[misc]
                       what=f"writes to succeed again after restart {kill + 1}")  # fmt: skip
            recoveries.append(time.monotonic() - restarted)
    finally:
        load.stop()
    wait_available(testbed, [APISERVICE])
    truth: dict[str, dict[str, Any]] = {}

    def informer_holds_the_truth() -> bool:
        # Read the truth anew each time: Crossplane keeps updating the claims (binding, status).
        truth.clear()
        truth.update(
            (f"{NAMESPACE}/{c['metadata']['labels'][contract.APP_NAME_LABEL]}", c)
            for c in control_plane_claims(testbed)
        )
        return informer.snapshot() == {k: int(c["metadata"]["resourceVersion"]) for k, c in truth.items()}

    eventually(informer_holds_the_truth, timeout=60, what="the informer to hold what the control plane holds")
    informer.stop()

    # Every request ended within the bound, done or with a 503. While the connector is down the
    # aggregator answers for it, in its own words and as plain text, as for any aggregated API
    # server that is down: 503 "error trying to reach service: EOF" (or "connection refused"),
    # then "service unavailable" once it marked the APIService unavailable.
    outcomes = load.outcomes
    slow = [o for o in outcomes if o.took >= BOUND_S]
    assert not slow, f"requests hung: {slow[:5]}"
    unclean = [o for o in outcomes if not o.ok and not (o.status == 503 and (
        any(m in o.body for m in ("error trying to reach service", "service unavailable"))
        if isinstance(o.body, str) else o.body.get("kind") == "Status"
    ))]  # fmt: skip
    assert not unclean, f"failures that are not a 503: {unclean[:5]}"

    # Nothing written twice, nothing acknowledged lost.
    for claim in load.claims.values():
        key = f"{NAMESPACE}/{claim.name}"
        if claim.created is False:
            assert key not in truth, claim
            continue
        if claim.created is None:
            continue  # may or may not exist; the hashed name keeps it to one object either way
        stored = truth.get(key)
        assert stored is not None, f"acknowledged create lost: {claim}"
        assert stored["metadata"]["uid"] == claim.uid, f"{claim.name} was replaced"
        # The load's own finalizers; Crossplane adds its own to every claim it binds.
        finalizers = [f for f in stored["metadata"].get("finalizers") or [] if f.startswith(FINALIZER)]
        steps = Counter(int(f.removeprefix(FINALIZER)) for f in finalizers)
        assert all(n == 1 for n in steps.values()), f"{claim.name} written twice: {finalizers}"
        assert claim.ok_steps | {0} <= set(steps), f"{claim.name} lost acknowledged appends: {finalizers}"
        assert set(steps) <= claim.ok_steps | claim.unclear_steps | {0}, f"{claim.name}: {finalizers}"
    for prefix in set(load.generated) | set(load.generated_unclear):
        made = sum(1 for k in truth if k.startswith(f"{NAMESPACE}/{prefix}"))
        assert load.generated[prefix] <= made <= load.generated[prefix] + load.generated_unclear[prefix], prefix

    # The watch ended at every kill and resumed; every acknowledged write reached it exactly once.
    writes = [
        Write("ADDED" if o.op != "append" else "MODIFIED",
              f"{NAMESPACE}/{o.body['metadata']['name']}", int(o.body["metadata"]["resourceVersion"]))
        for o in outcomes if o.ok
    ]  # fmt: skip
    report = check_deliveries(informer.deliveries, writes)
    assert not report.problems, report.problems[:10]
    counters = informer.counters
    assert counters.hangs == 0, counters.errors
    assert counters.watches >= KILLS + 1 and counters.resumes >= KILLS, counters
    failed = sum(1 for o in outcomes if not o.ok)
    print(
        f"[figure] connector SIGKILL x{KILLS} under {WORKERS} writers: {len(outcomes)} requests, {failed} failed "
        f"(all 503), slowest {max(o.took for o in outcomes):.1f}s; recovery after restart "
        f"{min(recoveries):.1f}-{max(recoveries):.1f}s; watch: {counters.watches} watches, {counters.resumes} "
        f"resumes, {counters.lists} lists, {counters.gone} 410s; writes by watch {report.by_watch}, "
        f"by relist {report.by_relist}"
    )
