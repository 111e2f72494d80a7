"""Issue 12: the connector's cache behaves like kube-apiserver's watch cache, seen from the app cluster.

One connector (its own cluster ID) serves the app cluster through its APIServices. Changes are
made straight in the control plane (as Crossplane or another connector would make them) and
read back through the aggregator: from the cache, in every watch, as Tables identical to the
control plane's, across a connector restart, and with 410 Expired for versions too old.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from connector_fixtures import ConnectorProcess, connected, start_connector, wait_available, write_connection_secret
from fault_tools import GROUP, PLURAL, VERSION, ControlPlaneClaims, check_deliveries, claim_body
from informer import Informer, https_connection

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-cache"
CLUSTER_ID = "e2e-cache-cluster"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
SECRETS_NS = "e2e-cache-secrets"
SECRETS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{SECRETS_NS}/{PLURAL}"
APISERVICE = f"{VERSION}.{GROUP}"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture(scope="module")
def served(testbed: Testbed) -> Iterator[ConnectorProcess]:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    with connected(testbed, cluster_id=CLUSTER_ID) as proc:
        wait_available(testbed, [APISERVICE])
        yield proc
        proc.call("DELETE", NS_PATH)
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture
def claims(testbed: Testbed, served: ConnectorProcess) -> Iterator[ControlPlaneClaims]:
    yield ControlPlaneClaims(testbed, CLUSTER_ID)
    served.call("DELETE", NS_PATH)


def app_call(tb: Testbed, method: str, path: str, *, accept: str = "application/json") -> tuple[int, Any]:
    conn = https_connection(tb.app_cluster, 30)
    try:
        conn.request(method, path, headers={"Accept": accept})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw)


def cp_call(tb: Testbed, path: str, *, accept: str = "application/json") -> Any:
    conn = https_connection(tb.control_plane, 30)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        response = conn.getresponse()
        assert response.status == 200, response.read()[:300]
        return json.loads(response.read())
    finally:
        conn.close()


def control_plane_watches(tb: Testbed) -> float:
    """Open WATCH requests for the claim resource in the control plane (its own metrics)."""
    conn = https_connection(tb.control_plane, 30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("apiserver_longrunning_requests{")
            and f'resource="{PLURAL}"' in line
            and 'verb="WATCH"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def read_events(response: Any, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        line = response.readline()
        if not line:
            break
        if line.strip():
            events.append(json.loads(line))
    return events


def event_at(response: Any, rv: int, timeout: float = 20.0) -> dict[str, Any]:
    """The first event at or after ``rv`` (Crossplane's own updates to the claim may come first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (event,) = read_events(response, 1, timeout=deadline - time.monotonic())
        if int(event["object"]["metadata"]["resourceVersion"]) >= rv:
            return event
    raise AssertionError(f"no event at or after {rv}")


def test_a_control_plane_write_reaches_a_cached_get_and_every_watch_over_one_upstream_watch(
    testbed: Testbed, claims: ControlPlaneClaims
) -> None:
    claims.create(NAMESPACE, "fan")
    baseline = control_plane_watches(testbed)
    _, listed = app_call(testbed, "GET", NS_PATH)
    rv = listed["metadata"]["resourceVersion"]
    watchers = [https_connection(testbed.app_cluster, 30) for _ in range(20)]
    try:
        responses = []
        for conn in watchers:
            conn.request("GET", f"{NS_PATH}?{urlencode({'watch': '1', 'resourceVersion': rv, 'timeoutSeconds': '60'})}")
            responses.append(conn.getresponse())
            assert responses[-1].status == 200
        during = control_plane_watches(testbed)
        write = claims.modify(NAMESPACE, "fan", nodes=3)
        for response in responses:
            event = event_at(response, write.rv)
            assert event["type"] == "MODIFIED", event
            assert event["object"]["metadata"]["name"] == "fan"
            assert int(event["object"]["metadata"]["resourceVersion"]) == write.rv
            assert event["object"]["spec"]["parameters"]["nodes"]["count"] == 3
    finally:
        for conn in watchers:
            conn.close()
    assert during - baseline <= 1, f"client watches opened upstream watches: {baseline} -> {during}"
    status, got = app_call(testbed, "GET", f"{NS_PATH}/fan")  # a consistent read
    assert status == 200 and int(got["metadata"]["resourceVersion"]) >= write.rv
    assert got["spec"]["parameters"]["nodes"]["count"] == 3
    status, cached = app_call(testbed, "GET", f"{NS_PATH}/fan?resourceVersion={write.rv}")
    assert status == 200 and int(cached["metadata"]["resourceVersion"]) >= write.rv


def test_a_read_at_a_future_version_times_out_as_kube_apiserver_does(
    testbed: Testbed, served: ConnectorProcess
) -> None:
    status, body = served.call("GET", f"{NS_PATH}?resourceVersion=999999999")
    assert status == 504, body
    assert body["reason"] == "Timeout" and body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    assert body["message"].startswith("Timeout: Too large resource version: 999999999, current: ")


def _mapped(rows: list[dict[str, Any]], names: dict[str, str]) -> list[list[Any]]:
    return [[names.get(c, c) if isinstance(c, str) else c for c in r["cells"]] for r in rows]


def test_cached_tables_are_the_control_planes(
    testbed: Testbed, served: ConnectorProcess, claims: ControlPlaneClaims
) -> None:
    for name in ("tab-a", "tab-b"):
        claims.create(NAMESPACE, name)
    selector = contract.scope_selector(CLUSTER_ID, NAMESPACE)
    cp_path = f"/apis/{GROUP}/{VERSION}/namespaces/{testbed.claim_namespace}/{PLURAL}?labelSelector={selector}"

    def compare() -> tuple[dict[str, Any], dict[str, Any]]:
        ours = served.call("GET", f"{NS_PATH}?resourceVersion=0", accept=TABLE)[1]
        theirs = cp_call(testbed, cp_path, accept=TABLE)
        names = {}
        for row in theirs["rows"]:
            ref = contract.app_ref_of(row["object"])
            assert ref is not None
            names[row["object"]["metadata"]["name"]] = ref.name
        assert ours["columnDefinitions"] == theirs["columnDefinitions"]
        assert _mapped(ours["rows"], {}) == _mapped(theirs["rows"], names)  # ages equal unless a second ticked
        return ours, theirs

    ours, _ = eventually(compare, timeout=60, what="the same Table from the cache and the control plane")
    assert ours["kind"] == "Table" and {"tab-a", "tab-b"} <= {r["cells"][0] for r in ours["rows"]}
    assert {r["object"]["kind"] for r in ours["rows"]} == {"PartialObjectMetadata"}
    assert [r["object"]["metadata"]["name"] for r in ours["rows"]] == [r["cells"][0] for r in ours["rows"]]
    status, one = served.call("GET", f"{NS_PATH}/tab-a?resourceVersion=0", accept=TABLE)
    assert status == 200 and [r["cells"][0] for r in one["rows"]] == ["tab-a"]


def test_a_watch_resumes_after_a_connector_restart_without_losing_or_repeating(
    testbed: Testbed, served: ConnectorProcess, claims: ControlPlaneClaims
) -> None:
    claims.create(NAMESPACE, "before-restart")
    informer = Informer(lambda timeout: https_connection(testbed.app_cluster, timeout), NS_PATH, read_timeout=60)
    informer.start()
    try:
        eventually(informer.synced, what="the informer's first list")
        claims.modify(NAMESPACE, "before-restart", nodes=2)
        eventually(lambda: informer.counters.watches >= 1 and len(informer.deliveries) >= 3, what="a watched change")
        assert served.proc is not None
        served.stop()
        claims.modify(NAMESPACE, "before-restart", nodes=4)  # while the connector is down
        claims.create(NAMESPACE, "during-restart")
        served.start()
        claims.modify(NAMESPACE, "during-restart", nodes=5)
        eventually(
            lambda: informer.snapshot() == claims.current(NAMESPACE), timeout=90, what="the informer to catch up"
        )
    finally:
        informer.stop()
    report = check_deliveries(informer.deliveries, claims.writes)
    assert not report.problems, report.problems
    counters = informer.counters
    assert counters.lists == 1 and counters.gone == 0, counters  # resumed, never relisted
    # Every write but the first (which the informer's list showed) arrived as its own event.
    assert counters.resumes >= 1 and report.by_watch == len(claims.writes) - 1, (counters, report)


def test_a_version_too_old_is_410_expired_and_a_relist_recovers(testbed: Testbed, claims: ControlPlaneClaims) -> None:
    claims.create(NAMESPACE, "old")
    conn = https_connection(testbed.app_cluster, 30)
    try:
        conn.request("GET", f"{NS_PATH}?watch=1&resourceVersion=1&timeoutSeconds=5")
        response = conn.getresponse()
        assert response.status in (200, 410)
        body = (
            read_events(response, 1)
            if response.status == 200
            else [{"type": "ERROR", "object": json.loads(response.read())}]
        )
    finally:
        conn.close()
    (event,) = body
    assert event["type"] == "ERROR" and event["object"]["code"] == 410, event
    assert event["object"]["reason"] == "Expired" and re.search(r"too old resource version", event["object"]["message"])
    # What client-go does next: list, then watch from the list's version.
    _, listed = app_call(testbed, "GET", NS_PATH)
    assert "old" in [i["metadata"]["name"] for i in listed["items"]]
    conn = https_connection(testbed.app_cluster, 30)
    try:
        rv = listed["metadata"]["resourceVersion"]
        conn.request("GET", f"{NS_PATH}?watch=1&resourceVersion={rv}&timeoutSeconds=30")
        response = conn.getresponse()
        assert response.status == 200
        write = claims.modify(NAMESPACE, "old", nodes=6)
        event = event_at(response, write.rv)
        assert event["type"] == "MODIFIED" and int(event["object"]["metadata"]["resourceVersion"]) == write.rv
    finally:
        conn.close()


def _syncs(proc: ConnectorProcess, kind: str) -> float:
    status, raw = proc.raw(
        "GET", "/metrics", headers={"X-Remote-User": "e2e-admin", "X-Remote-Group": "system:masters"}
    )
    assert status == 200, raw[:300]
    prefix = f'mcp_connector_connection_secret_syncs_total{{kind="{kind}"}} '
    return sum(float(line[len(prefix) :]) for line in raw.decode().splitlines() if line.startswith(prefix))


def test_connection_secrets_follow_their_claims_and_sources_without_full_resyncs(
    testbed: Testbed, served: ConnectorProcess
) -> None:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", SECRETS_NS, check=False)
    proc = start_connector(testbed, cluster_id="e2e-cache-secrets", extra_args=["--secret-resync-seconds", "3600"])
    proc.call("DELETE", SECRETS_PATH)  # a claim an interrupted run left (gone before we create ours)
    eventually(lambda: not proc.call("GET", SECRETS_PATH)[1]["items"], timeout=60, what="an earlier run's claim gone")
    ns = testbed.claim_namespace
    unrelated = [f"e2e-unrelated-{i}" for i in range(5)]
    try:
        body = claim_body("with-secret", SECRETS_NS)
        body["spec"]["writeConnectionSecretToRef"] = {"name": "conn"}
        # Paused, so Crossplane does not write the connection Secret itself (it would replace the
        # data this test writes as Crossplane would): the test alone writes the source.
        body["metadata"]["annotations"] = {"crossplane.io/paused": "true"}
        status, created = proc.call("POST", SECRETS_PATH, body)
        assert status == 201, created
        ref = contract.AppRef("e2e-cache-secrets", SECRETS_NS, "with-secret")
        stored = testbed.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", ns, contract.control_plane_name(ref))
        source = stored["spec"]["writeConnectionSecretToRef"]["name"]
        write_connection_secret(testbed, stored, source, {"password": "one"})
        copy = eventually(lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "conn", "-n", SECRETS_NS),
                          timeout=60, what="the copy made on the Secret's own event")  # fmt: skip
        assert copy["data"]["password"] == "b25l"
        full = _syncs(proc, "full")
        for name in unrelated:  # other clusters' writes in the shared claim namespace
            testbed.kubectl(CONTROL_PLANE, "create", "secret", "generic", name, "-n", ns, "--from-literal=a=b")
        write_connection_secret(testbed, stored, source, {"password": "two"})
        eventually(
            lambda: (
                testbed.kubectl_json(APP_CLUSTER, "get", "secret", "conn", "-n", SECRETS_NS)["data"]["password"]
                == "dHdv"
            ),
            timeout=60,
            what="the copy updated on the Secret's own event",
        )
        assert _syncs(proc, "full") == full, "Secrets written elsewhere in the claim namespace caused a full resync"
        assert _syncs(proc, "targeted") >= 2
        assert proc.call("DELETE", f"{SECRETS_PATH}/with-secret")[0] == 200
        eventually(
            lambda: (
                testbed.kubectl(APP_CLUSTER, "get", "secret", "conn", "-n", SECRETS_NS, check=False).returncode != 0
            ),
            timeout=60,
            what="the copy removed with its claim",
        )
    finally:
        proc.stop()
        testbed.kubectl(CONTROL_PLANE, "delete", "secret", "-n", ns, "--ignore-not-found", *unrelated)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", SECRETS_NS, "--wait=false", check=False)
