"""Issue 9, network cut between the connector and the control plane.

A FaultRelay sits on the connector's way to the control plane and stalls, drops, resets or
refuses its connections. Whatever the fault, every request in flight and every new one ends
within a bound with a Kubernetes Status (503 while the control plane cannot be reached), both
called directly and through the app cluster's aggregator; when the network comes back the
connector recovers by itself, without a restart.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from connector_fixtures import ConnectorProcess, connected, kubeconfig_copy, wait_available
from fault_tools import GROUP, PLURAL, VERSION, claim_body
from informer import https_connection

from testbed.harness import Testbed
from testbed.relay import FaultRelay
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "default"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
APISERVICE = f"{VERSION}.{GROUP}"
#: The connector's upstream timeout in these tests (connector_fixtures passes 5 s) plus slack for
#: a loaded 2-core machine: no request may take longer than this while the network is cut.
BOUND_S = 12.0
#: How long recovery may take once the network is back.
RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def cut(testbed: Testbed) -> Iterator[tuple[FaultRelay, ConnectorProcess]]:
    """A connector serving the app cluster, reaching the control plane only through a relay."""
    target = urlsplit(testbed.control_plane.apiserver_url)
    relay = FaultRelay(target.hostname or "127.0.0.1", target.port or 443)
    relay.start()
    kubeconfig = kubeconfig_copy(testbed.control_plane.kubeconfig, server=f"https://127.0.0.1:{relay.port}")
    try:
        with connected(testbed, cluster_id="e2e-network-cut", control_plane_kubeconfig=kubeconfig) as proc:
            wait_available(testbed, [APISERVICE])
            yield relay, proc
    finally:
        relay.stop()
        kubeconfig.unlink()


def through_app_cluster(tb: Testbed, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the app cluster's kube-apiserver (which forwards claim APIs to the connector)."""
    conn = https_connection(tb.app_cluster, BOUND_S + 20)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(
            method, path, body=data, headers={"Accept": "application/json", "Content-Type": "application/json"}
        )
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except json.JSONDecodeError:
        return response.status, raw.decode(errors="replace")


def timed(call: Callable[[], tuple[int, Any]]) -> tuple[int, Any, float]:
    started = time.monotonic()
    try:
        status, body = call()
    except (OSError, http.client.HTTPException) as e:
        status, body = -1, f"{type(e).__name__}: {e}"
    return status, body, time.monotonic() - started


def is_status(body: Any, code: int) -> bool:
    return isinstance(body, dict) and body.get("kind") == "Status" and body.get("code") == code


FAULTS: dict[str, Callable[[FaultRelay], None]] = {
    "stall": FaultRelay.stall,
    "drop": FaultRelay.drop,
    "reset": FaultRelay.reset,
    "refuse": FaultRelay.stop,
}
HEAL: dict[str, Callable[[FaultRelay], None]] = {
    "stall": FaultRelay.resume,
    "drop": FaultRelay.resume,
    "reset": lambda relay: None,
    "refuse": FaultRelay.start,
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.timeout(180)
def test_requests_fail_fast_with_503_and_recover(
    testbed: Testbed, cut: tuple[FaultRelay, ConnectorProcess], fault: str
) -> None:
    relay, proc = cut
    name = f"cut-{fault}"
    assert proc.call("GET", NS_PATH)[0] == 200
    assert through_app_cluster(testbed, "GET", NS_PATH)[0] == 200  # warm pools on both hops

    FAULTS[fault](relay)
    calls: list[tuple[str, Callable[[], tuple[int, Any]]]] = [
        ("direct list", lambda: proc.call("GET", NS_PATH)),
        ("direct get", lambda: proc.call("GET", f"{NS_PATH}/{name}")),
        ("direct create", lambda: proc.call("POST", NS_PATH, claim_body(name, NAMESPACE))),
        ("app list", lambda: through_app_cluster(testbed, "GET", NS_PATH)),
        ("app get", lambda: through_app_cluster(testbed, "GET", f"{NS_PATH}/{name}")),
    ]
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        results = dict(zip([c[0] for c in calls], pool.map(lambda c: timed(c[1]), calls), strict=True))
    for what, (status, body, took) in results.items():
        assert took < BOUND_S, f"{fault}: {what} took {took:.1f}s (bound {BOUND_S}s): {status} {body}"
        if fault == "reset":
            # A reset only breaks the open connections: a request may fail on one (503) or get a
            # new connection and succeed; never anything else.
            assert status in (200, 201, 404, 503), f"{fault}: {what}: {status} {body}"
            assert status in (200, 201) or (isinstance(body, dict) and body.get("kind") == "Status")
        else:
            assert status == 503 and is_status(body, 503), f"{fault}: {what}: {status} {body}"
    if fault != "reset":
        # The connector's own answer says what happened, not where (issue 17): the control plane
        # it cannot reach is named in its log only.
        assert f"127.0.0.1:{relay.port}" not in results["direct list"][1]["message"]
        eventually(lambda: f"127.0.0.1:{relay.port}" in proc.logs(), what="the log to name the control plane")

    HEAL[fault](relay)
    recovered = time.monotonic()
    eventually(lambda: proc.call("GET", NS_PATH)[0] == 200, timeout=RECOVERY_S, what=f"recovery after {fault}")
    eventually(
        lambda: through_app_cluster(testbed, "GET", NS_PATH)[0] == 200,
        timeout=RECOVERY_S,
        what=f"recovery through the app cluster after {fault}",
    )
    took = time.monotonic() - recovered
    # Recovered for good, not for one lucky request: a burst in a row succeeds.
    for _ in range(10):
        status, body = proc.call("GET", NS_PATH)
        assert status == 200, body
    created = proc.call("POST", NS_PATH, claim_body(f"{name}-after", NAMESPACE))
    assert created[0] == 201, created
    assert proc.call("DELETE", f"{NS_PATH}/{name}-after")[0] == 200
    # The create sent during the cut either reached the control plane or not; either way once.
    proc.call("DELETE", f"{NS_PATH}/{name}")
    print(f"[figure] network {fault}: slowest failing request {max(r[2] for r in results.values()):.1f}s, "
          f"recovered in {took:.1f}s")  # fmt: skip
