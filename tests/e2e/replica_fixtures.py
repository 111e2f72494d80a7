"""Shared by the replica tests (issue 19): two connector replicas behind one Service.

External mode: the replicas are local processes behind the ``ExternalName`` Service, and the test
bed's balancer (``testbed/balancer.py``) plays the Service's endpoints and kube-proxy: it probes
each replica's ``/readyz`` every second and spreads new connections over the ready ones.
"""

from __future__ import annotations

import datetime
import json
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from connector_fixtures import (
    SERVICE_NAMESPACE,
    WORK_ROOT,
    ConnectorProcess,
    app,
    remove_apiservices,
    start_connector,
)
from fault_tools import GROUP, PLURAL, VERSION, claim_body
from informer import https_connection

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.balancer import Balancer
from testbed.harness import Testbed
from testbed.tools import tool_path
from testbed.waiting import eventually

SERVICE = "mcp-connector-ha"
NAMESPACE = f"e2e-replicas-{secrets.token_hex(3)}"
CLUSTER_ID = "e2e-replicas"
APISERVICE = f"{VERSION}.{GROUP}"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
RATE = 20.0  # claims per second
DELAY = 3  # --shutdown-delay-seconds of these replicas
LEASE_S, RENEW_S, RETRY_S = 15.0, 10.0, 2.0  # the connector's defaults
#: Claims the writer changes, each with at most one write in flight: RATE is held while a write
#: takes under CLAIMS / RATE seconds (3 s; the median was 1.2 s at load average 12).
CLAIMS = 60
SEQ_LABEL = "e2e.mcp-connector.io/seq"
MERGE_PATCH = "application/merge-patch+json"
#: What a new leader logs when it syncs the copies its warm indexes show missing or stale.
FIRST_PASS = "connection secrets: syncing first the copies missing or stale"
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
        extra += ["--upstream-timeout-seconds", "60"]
        extra += ["--leader-elect-identity", name, "--leader-elect-lease-name", SERVICE]
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

    def kill(self, name: str) -> float:
        """SIGKILL: the endpoint stays until its readiness probe fails, as in a cluster.

        Returns the wall time of the signal (every process here shares this host's clock, so the
        test may compare it with the replicas' log times; the connector never does)."""
        proc = self.procs.pop(name)
        assert proc.proc is not None
        killed = time.time()
        proc.proc.kill()
        proc.proc.wait(10)
        eventually(lambda: proc.port not in self.balancer.ready(), timeout=10, what=f"{name} out of the endpoints")
        self.balancer.remove(proc.port)
        return killed

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.procs.clear()


def logged_at(proc: ConnectorProcess, msg: str, **match: str) -> float | None:
    """The wall time (epoch seconds) of the first log line saying ``msg`` with fields ``match``."""
    for line in proc.logs().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("msg") == msg and all(entry.get(k) == v for k, v in match.items()):
            return datetime.datetime.fromisoformat(entry["ts"]).timestamp()
    return None


@dataclass(frozen=True)
class LeaseState:
    """One version of the Lease as ``kubectl get -w`` delivered it."""

    holder: str
    renew: float | None  # renewTime, epoch seconds (written by the holder's wall clock)
    acquire: float | None


def _epoch(text: str) -> float | None:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


class LeaseWatch:
    """Every version of the install's Lease, from ``kubectl get -w`` (rerun if it ends).

    From outside, the test sees each renewal the leader wrote; the gap between a dead leader's
    last ``renewTime`` and the next holder's ``acquireTime`` is what the election guarantees
    (at least a lease duration), both stamped by this host's one wall clock.
    """

    def __init__(self, tb: Testbed) -> None:
        self.tb = tb
        self.states: list[LeaseState] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="lease -w")

    def start(self) -> LeaseWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._proc is not None:
                self._proc.terminate()
        self._thread.join(15)
        assert not self._thread.is_alive(), "kubectl get lease -w did not stop"

    def _run(self) -> None:
        template = '{.spec.holderIdentity}|{.spec.renewTime}|{.spec.acquireTime}{"\\n"}'
        while not self._stop.is_set():
            command = [
                str(tool_path("kubectl")), "--kubeconfig", str(self.tb.app_cluster.kubeconfig),
                "get", "lease", SERVICE, "-n", SERVICE_NAMESPACE, "-w", "-o", f"jsonpath={template}",
            ]  # fmt: skip
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            with self._lock:
                self._proc = proc
            assert proc.stdout is not None
            with proc.stdout:
                for raw in proc.stdout:
                    parts = raw.rstrip("\n").split("|")
                    if len(parts) == 3:
                        state = LeaseState(parts[0], _epoch(parts[1]), _epoch(parts[2]))
                        with self._lock:
                            self.states.append(state)
            proc.wait()
            self._stop.wait(0.3)

    def handover(self, old: str) -> tuple[str, float]:
        """The holder after ``old``, and the seconds from ``old``'s last renewal to its acquisition."""
        with self._lock:
            states = list(self.states)
        last = max((s.renew for s in states if s.holder == old and s.renew is not None), default=None)
        after = next((s for s in states if s.holder not in ("", old) and s.acquire is not None
                      and last is not None and s.acquire > last), None)  # fmt: skip
        assert last is not None and after is not None and after.acquire is not None, states[-5:]
        return after.holder, after.acquire - last


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
        try:
            if group.procs:
                app(testbed, "delete", PLURAL, "--all", "-n", NAMESPACE, "--wait=false", check=False)
        except subprocess.TimeoutExpired:
            pass  # a swamped control plane: the conftest's cleanup removes what is left
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
