"""Issue 19: two connector replicas behind one Service, a rolling update and a SIGKILLed leader.

External mode: the replicas are local processes behind the ``ExternalName`` Service, and the test
bed's balancer (``testbed/balancer.py``) plays the Service's endpoints and kube-proxy: it probes
each replica's ``/readyz`` every second and spreads new connections over the ready ones.

* Election against the real app apiserver: one replica holds the Lease; only it copies
  connection Secrets and manages the APIService; SIGKILL it and the other takes over within
  about one lease duration; a leader cut off from the app apiserver (the test bed's fault relay
  stalls every byte) stops its writers within the renew deadline, before anyone takes over.
* Under a writer at 20 claims/s, ``kubectl get -w`` and a client-go style informer: a rolling
  update (start a new replica, SIGTERM an old one, twice) and a SIGKILL of the leader lose no
  write (429 and 503 are retried, as clients do) and no event, and the Secret copies resume.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from connector_fixtures import (
    SERVICE_NAMESPACE,
    WORK_ROOT,
    ConnectorProcess,
    app,
    kubeconfig_copy,
    remove_apiservices,
    start_connector,
    wait_available,
)
from fault_tools import GROUP, PLURAL, VERSION, KubectlWatch, Write, check_deliveries, claim_body
from informer import Informer, https_connection

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.balancer import Balancer
from testbed.harness import Testbed
from testbed.relay import FaultRelay
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

SERVICE = "mcp-connector-ha"
NAMESPACE = f"e2e-replicas-{secrets.token_hex(3)}"
CLUSTER_ID = "e2e-replicas"
APISERVICE = f"{VERSION}.{GROUP}"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
RATE = 20.0  # claims per second
DELAY = 3  # --shutdown-delay-seconds of these replicas
LEASE_S, RENEW_S, RETRY_S = 15.0, 10.0, 2.0  # the connector's defaults
CLAIMS = 20  # claims the writer changes, each once a second
SEQ_LABEL = "e2e.mcp-connector.io/seq"
MERGE_PATCH = "application/merge-patch+json"
#: A replica given SIGTERM must be gone within this (the Deployment's terminationGracePeriodSeconds).
GRACE_S = 30.0


def holder(tb: Testbed) -> str:
    lease = tb.kubectl(APP_CLUSTER, "get", "lease", SERVICE, "-n", SERVICE_NAMESPACE, "-o", "json", check=False)
    if lease.returncode != 0:
        return ""
    return str(json.loads(lease.stdout)["spec"].get("holderIdentity") or "")


def leader_gauge(proc: ConnectorProcess) -> float:
    """The replica's ``mcp_connector_leader_election_master_status`` as ``/metrics`` shows it."""
    status, raw = proc.raw("GET", "/metrics", headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert status == 200, raw[:300]
    name = f'mcp_connector_leader_election_master_status{{name="{SERVICE_NAMESPACE}/{SERVICE}"}}'
    line = next(x for x in raw.decode().splitlines() if x.startswith(name))
    return float(line.rsplit(" ", 1)[1])


def lease_spec(tb: Testbed) -> dict[str, Any]:
    return dict(tb.kubectl_json(APP_CLUSTER, "get", "lease", SERVICE, "-n", SERVICE_NAMESPACE)["spec"])


class Replicas:
    """Connector processes of one install: one serving certificate, one Service, one Lease."""

    def __init__(self, tb: Testbed, balancer: Balancer, cert_dir: Path) -> None:
        self.tb = tb
        self.balancer = balancer
        self.cert_dir = cert_dir
        self.procs: dict[str, ConnectorProcess] = {}

    def start(self, name: str, *, app_kubeconfig: Path | None = None) -> ConnectorProcess:
        # Under a loaded machine a replica's first reads of the control plane take a while.
        extra = ["--service-port", str(self.balancer.port), "--shutdown-delay-seconds", str(DELAY)]
        extra += ["--upstream-timeout-seconds", "15"]
        extra += ["--leader-elect-identity", name]
        if app_kubeconfig is not None:
            extra += ["--app-kubeconfig", str(app_kubeconfig)]
        proc = start_connector(
            self.tb,
            cluster_id=CLUSTER_ID,
            manage_apiservices=True,
            service_name=SERVICE,
            cert_dir=self.cert_dir,
            extra_args=extra,
            wait=False,
        )
        self.procs[name] = proc
        proc.wait_ready(timeout=240)
        self.balancer.add(proc.port)
        eventually(lambda: proc.port in self.balancer.ready(), timeout=30, what=f"{name} to be an endpoint")
        return proc

    def terminate(self, name: str) -> float:
        """SIGTERM, as the kubelet stops a pod; the seconds until the process exited."""
        proc = self.procs.pop(name)
        assert proc.proc is not None
        sent = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(GRACE_S + 10)
        took = time.monotonic() - sent
        self.balancer.remove(proc.port)
        assert proc.proc.returncode == 0, proc.logs()[-3000:]
        return took

    def kill(self, name: str) -> None:
        """SIGKILL: the endpoint stays until its readiness probe fails, as in a cluster."""
        proc = self.procs.pop(name)
        assert proc.proc is not None
        proc.proc.kill()
        proc.proc.wait(10)
        eventually(lambda: proc.port not in self.balancer.ready(), timeout=10, what=f"{name} out of the endpoints")
        self.balancer.remove(proc.port)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.procs.clear()


def expose_balancer(tb: Testbed, balancer: Balancer) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": SERVICE_NAMESPACE},
        "spec": {
            "type": "ExternalName",
            "externalName": "localhost",
            "ports": [{"name": "https", "port": balancer.port, "protocol": "TCP"}],
        },
    }
    tb.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE, check=False)
    tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(service))


@pytest.fixture
def replicas(testbed: Testbed) -> Iterator[Replicas]:
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    app(testbed, "delete", "apiservice", "--ignore-not-found", APISERVICE)
    app(testbed, "delete", "lease", SERVICE, "-n", SERVICE_NAMESPACE, "--ignore-not-found")
    app(testbed, "create", "namespace", NAMESPACE, check=False)
    balancer = Balancer().start()
    expose_balancer(testbed, balancer)
    cert_dir = WORK_ROOT / f"replicas-certs-{time.monotonic_ns()}"
    group = Replicas(testbed, balancer, cert_dir)
    try:
        yield group
    finally:
        if group.procs:
            app(testbed, "delete", PLURAL, "--all", "-n", NAMESPACE, "--wait=false", check=False)
        group.stop_all()
        balancer.stop()
        remove_apiservices(testbed)
        app(testbed, "delete", "lease", SERVICE, "-n", SERVICE_NAMESPACE, "--ignore-not-found", check=False)
        app(testbed, "delete", "service", SERVICE, "-n", SERVICE_NAMESPACE, "--ignore-not-found", check=False)


def request(
    tb: Testbed, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    conn = https_connection(tb.app_cluster, 30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Accept": "application/json", "Content-Type": content_type})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except json.JSONDecodeError:
        return response.status, raw.decode(errors="replace")


def secret_copy_of(tb: Testbed, name: str) -> dict[str, Any] | None:
    found = tb.kubectl(APP_CLUSTER, "get", "secret", name, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def stored_claim(tb: Testbed, name: str) -> dict[str, Any]:
    ref = contract.AppRef(CLUSTER_ID, NAMESPACE, name)
    return dict(
        tb.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", tb.claim_namespace, contract.control_plane_name(ref))
    )


def with_secret(tb: Testbed, name: str, secret: str) -> dict[str, Any]:
    """A claim asking for a connection Secret, created through the app cluster; its stored form."""
    body = claim_body(name, NAMESPACE)
    body["spec"]["writeConnectionSecretToRef"] = {"name": secret}
    status, answer = request(tb, "POST", NS_PATH, body)
    assert status == 201, answer
    return stored_claim(tb, name)


# -------------------------------------------------------------------------------------- election


@pytest.mark.timeout(300)
def test_one_leader_writes_and_the_other_takes_over_when_it_is_killed(testbed: Testbed, replicas: Replicas) -> None:
    a = replicas.start("replica-a")
    eventually(lambda: holder(testbed) == "replica-a", timeout=30, what="replica-a to lead")
    b = replicas.start("replica-b")
    wait_available(testbed, [APISERVICE])
    spec = lease_spec(testbed)
    assert spec["leaseDurationSeconds"] == 15 and spec["holderIdentity"] == "replica-a"
    assert "became leader" in a.logs() and "became leader" not in b.logs()
    assert "writers started" in a.logs() and "writers started" not in b.logs()
    assert leader_gauge(a) == 1.0 and leader_gauge(b) == 0.0

    # Crossplane writes each claim's connection Secret in the control plane; the leader copies it.
    with_secret(testbed, "elect-1", "elect-1-conn")
    eventually(lambda: secret_copy_of(testbed, "elect-1-conn") is not None, timeout=90, what="the leader's copy")

    transitions = lease_spec(testbed).get("leaseTransitions", 0)
    replicas.kill("replica-a")
    killed = time.monotonic()
    with_secret(testbed, "elect-2", "elect-2-conn")
    eventually(lambda: holder(testbed) == "replica-b", timeout=LEASE_S + 15, what="replica-b to take over")
    took_over = time.monotonic() - killed
    eventually(lambda: secret_copy_of(testbed, "elect-2-conn") is not None, timeout=LEASE_S + 30,
               what="the new leader to copy the new claim's Secret")  # fmt: skip
    resumed = time.monotonic() - killed
    assert lease_spec(testbed)["leaseTransitions"] == transitions + 1
    # Never before the lease ran out as b saw it, and soon after (b tries every 2-4.4 s).
    assert LEASE_S - 2 * RETRY_S <= took_over <= LEASE_S + 2 * (1 + 1.2) * RETRY_S + 3, took_over
    print(f"[figure] leader SIGKILLed: the other replica took the Lease after {took_over:.1f}s, "
          f"Secret copies resumed after {resumed:.1f}s (lease duration {LEASE_S:.0f}s)")  # fmt: skip

    # SIGTERM releases the Lease: a replica started now takes it at once, not after 15 s.
    c = replicas.start("replica-c")
    released = time.monotonic()
    took = replicas.terminate("replica-b")
    eventually(lambda: holder(testbed) == "replica-c", timeout=10, what="replica-c to take the released Lease")
    handover = time.monotonic() - released
    assert "released the leader lease" in b.logs(), b.logs()[-3000:]
    assert took < GRACE_S
    assert "became leader" in c.logs()
    print(f"[figure] leader SIGTERMed: exited after {took:.1f}s (shutdown delay {DELAY}s), "
          f"next leader {handover:.1f}s after the signal")  # fmt: skip


@pytest.mark.timeout(300)
def test_a_partitioned_leader_stops_writing_before_the_other_takes_over(testbed: Testbed, replicas: Replicas) -> None:
    host, port = testbed.app_cluster.apiserver_url.removeprefix("https://").rsplit(":", 1)
    relay = FaultRelay(host, int(port))
    relay.start()
    try:
        cut_off = kubeconfig_copy(testbed.app_cluster.kubeconfig, server=f"https://127.0.0.1:{relay.port}")
        a = replicas.start("replica-a", app_kubeconfig=cut_off)
        eventually(lambda: holder(testbed) == "replica-a", timeout=30, what="replica-a to lead")
        replicas.start("replica-b")
        relay.stall()  # every byte between replica-a and the app apiserver is held back
        stalled = time.monotonic()
        eventually(lambda: "stopped leading" in a.logs(), timeout=RENEW_S + 10, what="replica-a to stop leading")
        stopped = time.monotonic() - stalled
        eventually(lambda: holder(testbed) == "replica-b", timeout=LEASE_S + 15, what="replica-b to take over")
        taken = time.monotonic() - stalled
        assert stopped <= RENEW_S + 1.5, stopped
        assert taken > stopped, (stopped, taken)
        print(f"[figure] leader cut off from the app apiserver: stopped its writers after {stopped:.1f}s "
              f"(renew deadline {RENEW_S:.0f}s); the other replica led after {taken:.1f}s")  # fmt: skip
        relay.resume()
        eventually(lambda: "leader is" in a.logs().split("stopped leading", 1)[1], timeout=30,
                   what="replica-a to see replica-b lead")  # fmt: skip
        assert holder(testbed) == "replica-b"
    finally:
        relay.stop()


# ------------------------------------------------------------------------------- rolling, killed


@dataclass
class Writer:
    """Writes at RATE per second: CLAIMS claims, each changed once a second by a worker of its own.

    Each write sets the claim's label ``e2e.mcp-connector.io/seq`` to the next number (a merge
    patch, so a retry writes the same thing again); a 429, a 503 or a broken connection is
    retried, as clients do; anything else is a lost write. Changing a fixed set of claims keeps
    Crossplane's own work (composing a new XR per claim) from swamping the two shared cores.
    """

    tb: Testbed
    claims: list[str]
    acknowledged: list[Write] = field(default_factory=list)
    last: dict[str, int] = field(default_factory=dict)  # claim -> last acknowledged seq
    retried: int = 0
    lost: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        period = len(self.claims) / RATE
        for i, name in enumerate(self.claims):
            t = threading.Thread(target=self._run, args=(name, period, i * period / len(self.claims)), daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive(), "a writer hangs"

    def _run(self, name: str, period: float, offset: float) -> None:
        started = time.monotonic() + offset
        seq = 0
        while not self._stop.is_set():
            self._stop.wait(max(0.0, started + seq * period - time.monotonic()))
            if self._stop.is_set():
                return
            seq += 1
            with self._lock:
                self.sent += 1
            self._write(name, seq)

    def _write(self, name: str, seq: int) -> None:
        patch = {"metadata": {"labels": {SEQ_LABEL: str(seq)}}}
        deadline = time.monotonic() + 60
        while True:
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
                    self.last[name] = seq
                return
            if status in (-1, 429, 503) and time.monotonic() < deadline:
                with self._lock:
                    self.retried += 1
                time.sleep(0.2)
                continue
            with self._lock:
                self.lost.append(f"{name} seq {seq}: {status} {str(body)[:200]}")
            return


@pytest.mark.timeout(600)
def test_rolling_update_and_killed_leader_lose_no_write_and_no_event(testbed: Testbed, replicas: Replicas) -> None:
    replicas.start("r1")
    eventually(lambda: holder(testbed) == "r1", timeout=30, what="r1 to lead")
    replicas.start("r2")
    wait_available(testbed, [APISERVICE])
    names = [f"w-{n}" for n in range(CLAIMS)]
    for name in names:
        status, answer = request(testbed, "POST", NS_PATH, claim_body(name, NAMESPACE))
        assert status == 201, answer
    informer = Informer(lambda timeout: https_connection(testbed.app_cluster, timeout), NS_PATH, read_timeout=60)
    informer.start()
    eventually(informer.synced, what="the informer's first list")
    kubectl = KubectlWatch(testbed, NAMESPACE).start()
    eventually(lambda: kubectl.current() is not None and kubectl.watching(1), timeout=60, what="kubectl -w")
    writer = Writer(testbed, names)
    writer.start()
    figures: dict[str, float] = {}
    try:
        eventually(lambda: len(writer.acknowledged) >= 40, timeout=60, what="the writer to get going")
        # Rolling update, maxSurge 1 / maxUnavailable 0: a new pod, then an old one goes; twice.
        replicas.start("r3")
        figures["r1 (leader) exit"] = replicas.terminate("r1")
        eventually(lambda: holder(testbed) in ("r2", "r3"), timeout=10, what="the Lease handed over")
        replicas.start("r4")
        figures["r2 exit"] = replicas.terminate("r2")
        count = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) >= count + 40, timeout=60, what="writes after the update")

        # SIGKILL the leader; the Deployment would start a replacement.
        leader = holder(testbed)
        assert leader in ("r3", "r4")
        replicas.kill(leader)
        killed = time.monotonic()
        with_secret(testbed, "after-kill", "after-kill-conn")
        replicas.start("r5")
        eventually(lambda: holder(testbed) not in ("", leader), timeout=LEASE_S + 15, what="a new leader")
        figures["new leader after kill"] = time.monotonic() - killed

        def resumed() -> bool:
            return secret_copy_of(testbed, "after-kill-conn") is not None

        eventually(resumed, timeout=LEASE_S + 30, what="Secret copies to resume")
        figures["Secret copies resumed after kill"] = time.monotonic() - killed
        count = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) >= count + 40, timeout=60, what="writes after the kill")
    finally:
        writer.stop()
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
    assert {n: labels.get(n) for n in names} == {n: str(writer.last.get(n, "")) for n in names}

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
        f"[figure] 2 replicas, rolling update x2 and the leader SIGKILLed under {RATE:.0f} writes/s: "
        f"{writer.sent} writes, 0 lost, {writer.retried} retries, statuses {dict(sorted(writer.statuses.items()))}; "
        f"informer {informer.counters.watches} watches, {informer.counters.resumes} resumes, "
        f"{informer.counters.lists} lists, writes by watch {report.by_watch}, by relist {report.by_relist}; "
        f"kubectl -w {len(kubectl.sessions)} runs; " + ", ".join(f"{k} {v:.1f}s" for k, v in figures.items())
    )
