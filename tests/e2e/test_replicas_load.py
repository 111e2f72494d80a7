"""Issue 19: two connector replicas under a writer at 20 writes/s, ``kubectl get -w`` and a
client-go style informer, through a rolling update (start a new replica, SIGTERM an old one,
twice) and a SIGKILL of the leader: no write lost (429 and 503 retried, as clients do), no event
lost, and the Secret copies resume.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from connector_fixtures import app, wait_available
from fault_tools import PLURAL, KubectlWatch, Write, check_deliveries, claim_body
from informer import Informer, https_connection
from replica_fixtures import (
    APISERVICE,
    CLAIMS,
    CLUSTER_ID,
    FIRST_PASS,
    LEASE_S,
    MERGE_PATCH,
    NAMESPACE,
    NS_PATH,
    RATE,
    SEQ_LABEL,
    LeaseWatch,
    Replicas,
    holder,
    logged_at,
    replicas,
    request,
    secret_copy_of,
    with_secret,
)

from mcp_connector.core import contract
from testbed import CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e
__all__ = ["replicas"]  # the fixture


# ------------------------------------------------------------------------------- rolling, killed


@dataclass
class Writer:
    """Writes at RATE per second: the n-th write is due at n / RATE seconds, whatever the earlier
    ones take, and goes to a claim no write is in flight for (CLAIMS of them, so up to CLAIMS
    writes in flight; a claim's writes never overlap, so it ends holding its last acknowledged
    one). When every claim has a write in flight the next waits: then RATE is not held, and
    ``rate()`` and ``late`` say what was (never a queue that outlives the test).

    Each write sets the claim's label ``e2e.mcp-connector.io/seq`` to the claim's next number (a
    merge patch, so a retry writes the same thing again); a 429, a 503 or a broken connection is
    retried, as clients do; anything else is a lost write. Changing a fixed set of claims keeps
    Crossplane's own work (composing a new XR per claim) from swamping the two shared cores.
    """

    tb: Testbed
    claims: list[str]
    acknowledged: list[Write] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    late: float = 0.0  # the most a write began after it was due (every claim busy: RATE not held)
    #: (seconds a write took with its retries, when it began after the writer's start, tries)
    took: list[tuple[float, float, int]] = field(default_factory=list)
    last: dict[str, tuple[int, int]] = field(default_factory=dict)  # claim -> (rv, seq) acknowledged last
    retried: int = 0
    lost: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(CLAIMS, thread_name_prefix="writer")
    )
    _thread: threading.Thread | None = None
    _idle: queue.Queue[str] = field(default_factory=queue.Queue)  # claims with no write in flight
    _seqs: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        for name in self.claims:
            self._idle.put(name)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="writer clock")
        self._thread.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "the writer's clock hangs"
        self.stopped = time.monotonic()
        self._pool.shutdown(wait=True)  # at most CLAIMS writes, each retried for at most 60 s

    def slowest(self, n: int = 3) -> str:
        """The slowest acknowledged writes (with retries) and when they began, for the figure."""
        worst = sorted(self.took, reverse=True)[:n]
        median = sorted(t for t, _, _ in self.took)[len(self.took) // 2] if self.took else 0.0
        shown = ", ".join(f"{t:.1f}s at +{at:.0f}s ({tries} tries)" for t, at, tries in worst)
        return f"median write {median:.2f}s, slowest {shown}"

    def rate(self) -> float:
        """Writes sent per second, as held on this machine (RATE is what was asked)."""
        return self.sent / (self.stopped - self.started)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            due = self.started + n / RATE
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            while True:
                try:
                    name = self._idle.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self._stop.is_set():
                        return
            seq = self._seqs[name] = self._seqs.get(name, 0) + 1
            n += 1
            with self._lock:
                self.sent += 1
            self._pool.submit(self._write, name, seq, due)

    def _write(self, name: str, seq: int, due: float) -> None:
        try:
            self._write_until_acknowledged(name, seq, due)
        finally:
            self._idle.put(name)

    def _write_until_acknowledged(self, name: str, seq: int, due: float) -> None:
        patch = {"metadata": {"labels": {SEQ_LABEL: str(seq)}}}
        began = time.monotonic()
        with self._lock:
            self.late = max(self.late, began - due)
        deadline = began + 60
        tries = 0
        while True:
            tries += 1
            try:
                status, body = request(self.tb, "PATCH", f"{NS_PATH}/{name}", patch, MERGE_PATCH)
            except (OSError, http.client.HTTPException):
                status, body = -1, None
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                with self._lock:
                    rv = int(body["metadata"]["resourceVersion"])
                    self.acknowledged.append(Write("MODIFIED", f"{NAMESPACE}/{name}", rv))
                    if rv > self.last.get(name, (0, 0))[0]:
                        self.last[name] = (rv, seq)
                    self.took.append((time.monotonic() - began, began - self.started, tries))
                return
            if status in (-1, 429, 503) and time.monotonic() < deadline:
                with self._lock:
                    self.retried += 1
                time.sleep(0.2)
                continue
            with self._lock:
                self.lost.append(f"{name} seq {seq}: {status} {str(body)[:200]}")
            return


@pytest.fixture
def stoppers() -> Iterator[list[Callable[[], object]]]:
    """What the test started on threads, stopped even when it fails (before the replicas go)."""
    found: list[Callable[[], object]] = []
    yield found
    for stop in reversed(found):
        with contextlib.suppress(Exception):
            stop()


@pytest.mark.timeout(600)
def test_rolling_update_and_killed_leader_lose_no_write_and_no_event(
    testbed: Testbed, replicas: Replicas, stoppers: list[Callable[[], object]]
) -> None:
    lease = LeaseWatch(testbed).start()
    stoppers.append(lease.stop)
    replicas.start("r1")
    eventually(lambda: holder(testbed) == "r1", timeout=30, what="r1 to lead")
    replicas.start("r2")
    wait_available(testbed, [APISERVICE])
    # A claim whose connection Secret the leader copies; Crossplane writes the source meanwhile.
    with_secret(testbed, "before-kill", "before-kill-conn")
    names = [f"w-{n}" for n in range(CLAIMS)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for status, answer in pool.map(lambda n: request(testbed, "POST", NS_PATH, claim_body(n, NAMESPACE)), names):
            assert status == 201, answer
    informer = Informer(lambda timeout: https_connection(testbed.app_cluster, timeout), NS_PATH, read_timeout=60)
    informer.start()
    stoppers.append(informer.stop)
    eventually(informer.synced, what="the informer's first list")
    kubectl = KubectlWatch(testbed, NAMESPACE).start()
    stoppers.append(kubectl.stop)
    eventually(lambda: kubectl.current() is not None and kubectl.watching(1), timeout=60, what="kubectl -w")
    writer = Writer(testbed, names)
    writer.start()
    stoppers.append(writer.stop)
    figures: dict[str, float] = {}
    try:
        eventually(lambda: len(writer.acknowledged) >= 40, timeout=60, what="the writer to get going")
        # Rolling update, maxSurge 1 / maxUnavailable 0: a new pod, then an old one goes; twice.
        marks = {"update": time.monotonic() - writer.started}
        replicas.start("r3")
        figures["r1 (leader) exit"] = replicas.terminate("r1")
        eventually(lambda: holder(testbed) in ("r2", "r3"), timeout=10, what="the Lease handed over")
        replicas.start("r4")
        figures["r2 exit"] = replicas.terminate("r2")
        count = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) >= count + 40, timeout=60, what="writes after the update")

        # SIGKILL the leader; the Deployment would start a replacement.
        eventually(lambda: secret_copy_of(testbed, "before-kill-conn"), timeout=120, what="the first Secret copy")
        leader = holder(testbed)
        assert leader in ("r3", "r4")
        marks["kill"] = time.monotonic() - writer.started
        killed = replicas.kill(leader)
        # Nobody copies while nobody leads: the copy removed now is back when copying resumes.
        app(testbed, "delete", "secret", "before-kill-conn", "-n", NAMESPACE)
        replicas.start("r5")
        eventually(lambda: holder(testbed) not in ("", leader), timeout=LEASE_S + 15, what="a new leader")
        new, since_renewal = eventually(lambda: lease.handover(leader), timeout=30, what="the handover")
        eventually(lambda: secret_copy_of(testbed, "before-kill-conn"), timeout=LEASE_S + 30,
                   what="Secret copies to resume")  # fmt: skip
        took_over = logged_at(replicas.procs[new], "became leader")
        resumed = logged_at(replicas.procs[new], "connection secret copied", name="before-kill-conn")
        first = logged_at(replicas.procs[new], FIRST_PASS)
        assert took_over is not None and resumed is not None
        # The copy removed while nobody led is in the new leader's first pass, before its full reconcile.
        assert first is not None and took_over <= first <= resumed, (took_over, first, resumed)
        figures["new leader after kill"] = took_over - killed
        figures["after the dead leader's last renewal"] = since_renewal
        figures["Secret copies resumed after kill"] = resumed - killed
        figures["after becoming leader"] = resumed - took_over
        # Never sooner than a lease duration after the last renewal (the new leader saw it no
        # sooner than it was written).
        assert since_renewal >= LEASE_S, since_renewal
        count = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) >= count + 40, timeout=60, what="writes after the kill")
    finally:
        writer.stop()
        lease.stop()
    assert not writer.lost, writer.lost[:10]

    truth: dict[str, int] = {}
    labels: dict[str, str] = {}

    def informer_holds_the_truth() -> bool:
        items = testbed.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", testbed.claim_namespace,
                                     "-l", contract.scope_selector(CLUSTER_ID, NAMESPACE))["items"]  # fmt: skip
        truth.clear()
        truth.update(
            (f"{NAMESPACE}/{c['metadata']['labels'][contract.APP_NAME_LABEL]}", int(c["metadata"]["resourceVersion"]))
            for c in items
        )
        labels.update((c["metadata"]["labels"][contract.APP_NAME_LABEL], c["metadata"]["labels"].get(SEQ_LABEL, ""))
                      for c in items)  # fmt: skip
        return informer.snapshot() == truth

    eventually(informer_holds_the_truth, timeout=90, what="the informer to hold what the control plane holds")
    informer.stop()
    kubectl.stop()

    # Every write acknowledged (after retries), and each claim holds the last one.
    assert len(writer.acknowledged) == writer.sent, (len(writer.acknowledged), writer.sent)
    assert {n: labels.get(n) for n in names} == {n: str(writer.last[n][1]) for n in names}

    report = check_deliveries(informer.deliveries, writer.acknowledged)
    assert not report.problems, report.problems[:10]
    assert informer.counters.hangs == 0, informer.counters.errors

    # kubectl -w does not resume: each run lists and watches anew. Every acknowledged create shows
    # in some run, as its own event or in a later run's list.
    seen: dict[str, int] = {}
    for line in kubectl.lines:
        seen[line.key] = max(seen.get(line.key, 0), line.rv)
    unseen = [w for w in writer.acknowledged if seen.get(w.key, 0) < w.rv]
    assert not unseen, (unseen[:10], kubectl.describe())
    print(
        f"[figure] 2 replicas, rolling update x2 and the leader SIGKILLed under {RATE:.0f} writes/s asked, "
        f"{writer.rate():.1f}/s held (worst lateness {writer.late:.1f}s; {writer.slowest()}; "
        f"update at +{marks['update']:.0f}s, kill at +{marks['kill']:.0f}s): {writer.sent} writes, 0 lost, "
        f"{writer.retried} retries, statuses {dict(sorted(writer.statuses.items()))}; "
        f"informer {informer.counters.watches} watches, {informer.counters.resumes} resumes, "
        f"{informer.counters.lists} lists, writes by watch {report.by_watch}, by relist {report.by_relist}; "
        f"kubectl -w {len(kubectl.sessions)} runs; " + ", ".join(f"{k} {v:.1f}s" for k, v in figures.items())
    )
