"""Issue 19: two connector replicas, the election against the real app apiserver.

External mode: the replicas are local processes behind the ``ExternalName`` Service, and the
test bed's balancer (``testbed/balancer.py``) plays the Service's endpoints and kube-proxy. One
replica holds the Lease; only it copies connection Secrets and manages the APIService; SIGKILL it
and the other takes over one lease duration after it last saw the Lease renewed; SIGTERM releases the Lease; a leader
cut off from the app apiserver (the fault relay stalls every byte) stops its writers within the
renew deadline, before anyone takes over.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import signal
import threading
import time
from typing import Any

import pytest
from connector_fixtures import app, kubeconfig_copy, start_connector, wait_available
from fault_tools import claim_body
from replica_fixtures import (
    APISERVICE,
    CLUSTER_ID,
    DELAY,
    FIRST_PASS,
    GRACE_S,
    LEASE_S,
    NAMESPACE,
    NS_PATH,
    RENEW_S,
    RETRY_S,
    LeaseWatch,
    Replicas,
    holder,
    leader_gauge,
    lease_spec,
    logged_at,
    replicas,
    request,
    secret_copy_of,
    with_secret,
)

from mcp_connector.connector.followers.secrets_sync import MANAGED_LABEL
from mcp_connector.connector.leader.election import JITTER
from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.relay import FaultRelay
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e
__all__ = ["replicas"]  # the fixture
ADMIN_HEADERS = {"Accept": "application/json", "X-Remote-User": "admin", "X-Remote-Group": "system:masters"}


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
    lease = LeaseWatch(testbed).start()
    try:
        eventually(lambda: lease.states, timeout=30, what="the Lease watch")
        killed = replicas.kill("replica-a")
        # Nobody copies while nobody leads: the copy removed now is back when copying resumes.
        app(testbed, "delete", "secret", "elect-1-conn", "-n", NAMESPACE)
        with_secret(testbed, "elect-2", "elect-2-conn")
        eventually(lambda: holder(testbed) == "replica-b", timeout=LEASE_S + 15, what="replica-b to take over")
        eventually(lambda: secret_copy_of(testbed, "elect-1-conn") is not None, timeout=LEASE_S + 30,
                   what="the new leader to copy the Secret again")  # fmt: skip
        eventually(lambda: lease.handover("replica-a"), timeout=30, what="the handover in the Lease watch")
    finally:
        lease.stop()
    new, since_renewal = lease.handover("replica-a")
    assert new == "replica-b"
    took_over = logged_at(b, "became leader")
    resumed = logged_at(b, "connection secret copied", name="elect-1-conn")
    first = logged_at(b, FIRST_PASS)
    assert took_over is not None and resumed is not None
    # b watched the copy go while it waited: it is in b's first pass, before the full reconcile.
    assert first is not None and took_over <= first <= resumed, (took_over, first, resumed)
    eventually(lambda: secret_copy_of(testbed, "elect-2-conn") is not None, timeout=90,
               what="the new leader to copy a new claim's Secret")  # fmt: skip
    assert lease_spec(testbed)["leaseTransitions"] == transitions + 1
    # Never before the lease ran out as b saw it (b saw a's last renewal no sooner than it was
    # written); late by b's read period (2-4.4 s) and its calls, one failed try allowed.
    assert LEASE_S <= since_renewal <= LEASE_S + 2 * (1 + JITTER) * RETRY_S + 3, since_renewal
    print(f"[figure] leader SIGKILLed: the other replica took the Lease {took_over - killed:.1f}s after the kill "
          f"({since_renewal:.1f}s after the dead leader's last renewal) and copied a Secret again "
          f"{resumed - killed:.1f}s after the kill, {resumed - took_over:.2f}s after it led "
          f"(lease duration {LEASE_S:.0f}s)")  # fmt: skip

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


MANY = 60  # claims asking for a connection Secret


@pytest.mark.timeout(480)
def test_a_new_leader_copies_first_what_went_missing_however_many_claims(testbed: Testbed, replicas: Replicas) -> None:
    """Issue 19 point 5 with many copies: the one removed while nobody led comes last in the full
    reconcile's order (which reads every source first); the new leader writes it in its first pass."""
    replicas.start("replica-a")
    eventually(lambda: holder(testbed) == "replica-a", timeout=30, what="replica-a to lead")
    b = replicas.start("replica-b")
    names = [f"many-{n:02d}" for n in range(MANY)]

    def create(name: str) -> tuple[int, Any]:
        body = claim_body(name, NAMESPACE)
        body["spec"]["writeConnectionSecretToRef"] = {"name": f"{name}-conn"}
        return request(testbed, "POST", NS_PATH, body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for status, answer in pool.map(create, names):
            assert status == 201, answer

    def copies() -> set[str]:
        selector = f"{MANAGED_LABEL}={CLUSTER_ID}"
        listed = testbed.kubectl_json(APP_CLUSTER, "get", "secret", "-n", NAMESPACE, "-l", selector)
        return {s["metadata"]["name"] for s in listed["items"]} & {f"{n}-conn" for n in names}

    # Crossplane writes each claim's connection Secret in the control plane; the leader copies each.
    eventually(lambda: len(copies()) == MANY, timeout=300, what=f"the leader's {MANY} copies")
    last = f"{names[-1]}-conn"
    killed = replicas.kill("replica-a")
    app(testbed, "delete", "secret", last, "-n", NAMESPACE)
    eventually(lambda: holder(testbed) == "replica-b", timeout=LEASE_S + 15, what="replica-b to take over")
    eventually(lambda: secret_copy_of(testbed, last) is not None, timeout=LEASE_S + 60,
               what="the new leader to copy the Secret again")  # fmt: skip
    took_over = logged_at(b, "became leader")
    resumed = logged_at(b, "connection secret copied", name=last)
    first = logged_at(b, FIRST_PASS)
    assert took_over is not None and resumed is not None
    assert first is not None and took_over <= first <= resumed, (took_over, first, resumed)
    print(f"[figure] {MANY} claims with connection Secrets, the copy last in the full reconcile's order removed "
          f"after a SIGKILL of the leader: new leader {took_over - killed:.1f}s after the kill, the copy written "
          f"again {resumed - killed:.1f}s after the kill, {resumed - took_over:.2f}s after it led")  # fmt: skip


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


@pytest.mark.timeout(300)
def test_a_request_stuck_upstream_does_not_hold_the_exit_past_the_shutdown_timeout(testbed: Testbed) -> None:
    """SIGTERM with a request in flight that never ends (the control plane stalls): the process
    exits once the shutdown delay and the shutdown timeout have passed, within the grace period
    they are sized for, instead of waiting for the request (the kubelet would SIGKILL it)."""
    host, port = testbed.control_plane.apiserver_url.removeprefix("https://").rsplit(":", 1)
    relay = FaultRelay(host, int(port))
    relay.start()
    delay, timeout = 1.0, 6.0
    proc = None
    try:
        stalling = kubeconfig_copy(testbed.control_plane.kubeconfig, server=f"https://127.0.0.1:{relay.port}")
        proc = start_connector(
            testbed,
            cluster_id="e2e-stuck",
            control_plane_kubeconfig=stalling,
            extra_args=["--shutdown-delay-seconds", str(delay), "--shutdown-timeout-seconds", str(timeout),
                        "--upstream-timeout-seconds", "300"],
        )  # fmt: skip
        relay.stall()  # every byte between the connector and the control plane is held back
        answered: list[float] = []

        def stuck_read() -> None:
            # A consistent read: the connector must ask the control plane, which never answers.
            with contextlib.suppress(OSError, http.client.HTTPException):
                proc.raw("GET", f"{NS_PATH}/nothing", headers=ADMIN_HEADERS, timeout=120)
            answered.append(time.monotonic())

        reader = threading.Thread(target=stuck_read, daemon=True)
        reader.start()
        eventually(lambda: relay.open_connections() > 0, timeout=30, what="the connector's calls through the relay")
        assert proc.proc is not None
        sent = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        proc.proc.wait(GRACE_S + 60)
        took = time.monotonic() - sent
        reader.join(30)
        # The read was still in flight when the drain began: it ended only when the process did.
        assert answered and answered[0] - sent >= delay, answered
        assert "stopped" in proc.logs()
        assert took <= delay + timeout + 3, (took, proc.logs()[-2000:])
        print(f"[figure] SIGTERM with a read stuck upstream: exited after {took:.1f}s "
              f"(shutdown delay {delay:.0f}s, timeout {timeout:.0f}s)")  # fmt: skip
    finally:
        relay.resume()
        relay.stop()
        if proc is not None:
            proc.stop()
