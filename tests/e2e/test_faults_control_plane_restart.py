"""Issue 9, the control plane's kube-apiserver restarted five times under watch.

Claims change in the control plane (created, changed, deleted straight there, as Crossplane and
other clusters' connectors do) while two clients watch them through the app cluster: a
client-go style informer (list, watch, resume from its resourceVersion, relist on 410) and
``kubectl get -w`` rerun whenever it exits. The control plane's kube-apiserver is stopped and
started again (same port, same etcd) five times. Every watch ends within a bound when it goes
(no hang), requests in the gap get a 503 Status, and every change reaches the informer exactly
once (as its own event, or folded into a relist) and each kubectl session exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from connector_fixtures import connected, wait_available
from fault_tools import GROUP, PLURAL, VERSION, ControlPlaneClaims, KubectlWatch, check_deliveries
from informer import Informer, https_connection

from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.cluster import apiserver_stopped
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-cp-restart"
CLUSTER_ID = "e2e-control-plane-restart"
NS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
APISERVICE = f"{VERSION}.{GROUP}"
RESTARTS = 5
#: A watch must end this soon after the control plane is told to stop (kube-apiserver keeps its
#: watches open through its graceful shutdown; the test bed kills it after 5 s).
WATCH_END_S = 30.0
#: A change must reach both watchers this soon once the control plane is back.
DELIVERY_S = 60.0


#: Rounds played again when the server ended kubectl's watch before the round's changes.
ROUND_ATTEMPTS = 3


def _outcome(kubectl: KubectlWatch, session: int, rv: int) -> str:
    """What kubectl session ``session`` did with version ``rv``: "seen", "ended" before it, or "" (not yet)."""
    if any(x.rv == rv for x in kubectl.session_lines(session)):
        return "seen"
    return "ended" if kubectl.sessions[session - 1].ended is not None else ""


def _same(truth: dict[str, int], held: dict[str, int]) -> dict[str, int] | None:
    return truth if truth == held else None


@pytest.fixture(scope="module")
def namespace(testbed: Testbed) -> Iterator[str]:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    yield NAMESPACE
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


def app_status(tb: Testbed) -> tuple[int, object]:
    conn = https_connection(tb.app_cluster, 30)
    try:
        conn.request("GET", NS_PATH, headers={"Accept": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


@pytest.mark.timeout(900)
def test_control_plane_restarts_under_watch(testbed: Testbed, namespace: str) -> None:
    claims = ControlPlaneClaims(testbed, CLUSTER_ID)
    claims.remove_all()
    kubectl = None
    with connected(testbed, cluster_id=CLUSTER_ID) as proc:
        wait_available(testbed, [APISERVICE])
        anchor = claims.create(namespace, "anchor")  # always there: every kubectl session must list it
        informer = Informer(lambda timeout: https_connection(testbed.app_cluster, timeout), NS_PATH, read_timeout=90)
        informer.start()
        kubectl = KubectlWatch(testbed, namespace).start()
        ended_after: list[float] = []
        gap_statuses: list[int] = []
        kubectl_checked = 0
        ended_before_writes = 0
        serial = 0
        previous = 0
        deleted: list[str] = []
        try:
            for restart in range(RESTARTS + 1):
                for _attempt in range(ROUND_ATTEMPTS):
                    # A kubectl session started after the previous one, that has listed and watches.

                    def watching(after: int = previous) -> int:
                        session = kubectl.current()
                        if session is None or session.number <= after or session.ended is not None:
                            return 0
                        return session.number if kubectl.watching(session.number) else 0

                    try:
                        session = eventually(
                            watching, timeout=DELIVERY_S, what=f"kubectl -w watching (round {restart})"
                        )
                    except AssertionError as e:
                        raise AssertionError(f"{e}; sessions: {kubectl.describe()}") from None
                    eventually(informer.synced, what="the informer's first list")
                    # Changes while the control plane is up: each must reach both watchers.
                    before = len(claims.writes)
                    if serial >= 2:
                        claims.delete(namespace, f"c{serial - 1}")  # its DELETED may come after Crossplane's work
                        deleted.append(f"c{serial - 1}")
                    for _ in range(2):
                        serial += 1
                        claims.create(namespace, f"c{serial}")
                    claims.modify(namespace, f"c{serial}", nodes=restart + 2)  # last: its resourceVersion is known
                    round_writes = claims.writes[before:]
                    last = round_writes[-1]
                    eventually(lambda last=last: any(d.rv == last.rv for d in informer.deliveries),  # type: ignore[misc]
                               timeout=DELIVERY_S, what=f"the informer to see {last} (round {restart})")  # fmt: skip
                    try:
                        outcome = eventually(
                            lambda s=session, last=last: _outcome(kubectl, s, last.rv),  # type: ignore[misc]
                            timeout=DELIVERY_S, what=f"kubectl -w to see {last} (round {restart})",
                        )  # fmt: skip
                    except AssertionError as e:
                        raise AssertionError(f"{e}; sessions: {kubectl.describe()}") from None
                    previous = session
                    if outcome == "seen":
                        break
                    # The server ended the watch before it showed any of the round's changes: a
                    # watch may end at any time (kube-apiserver's cacher ends its watches when a
                    # re-watch of its storage is answered 410, as after a restart). kubectl exits
                    # cleanly and lists again; the round is played again with its next session.
                    session_rv = {x.rv for x in kubectl.session_lines(session)}
                    assert not session_rv & {w.rv for w in round_writes}, (
                        f"kubectl session {session} ended after only part of round {restart}: {kubectl.describe()}"
                    )
                    assert kubectl.sessions[session - 1].returncode == 0, kubectl.describe()
                    ended_before_writes += 1
                else:
                    raise AssertionError(f"round {restart}: {ROUND_ATTEMPTS} kubectl sessions ended before the round's "
                                         f"changes: {kubectl.describe()}")  # fmt: skip
                lines = kubectl.session_lines(session)
                seen = Counter((x.key, x.rv) for x in lines)
                assert any(key == f"{namespace}/anchor" for key, _ in seen), (
                    f"session {session} never listed the anchor"
                )
                for write in round_writes:
                    assert seen[(write.key, write.rv)] == 1, (
                        f"kubectl session {session}: {write} seen {seen[(write.key, write.rv)]} times"
                    )
                assert all(n == 1 for n in seen.values()), f"kubectl session {session} repeated lines: {seen}"
                kubectl_checked += len(round_writes)
                if restart == RESTARTS:
                    break
                watches_before = informer.counters.watches + informer.counters.broken + informer.counters.refused
                stopping = time.monotonic()  # SIGTERM; the test bed sends SIGKILL 5 s later if needed
                with apiserver_stopped(CONTROL_PLANE):
                    eventually(lambda s=session: kubectl.sessions[s - 1].ended is not None, timeout=WATCH_END_S,  # type: ignore[misc]
                               what=f"kubectl -w to end after stop {restart + 1}")  # fmt: skip
                    eventually(
                        lambda w=watches_before: informer.counters.watches + informer.counters.broken
                        + informer.counters.refused > w,  # type: ignore[misc]
                        timeout=WATCH_END_S, what=f"the informer's watch to end after stop {restart + 1}",
                    )  # fmt: skip
                    ended = kubectl.sessions[session - 1].ended
                    assert ended is not None
                    ended_after.append(ended - stopping)
                    status, body = app_status(testbed)
                    gap_statuses.append(status)
                    assert status == 503 and isinstance(body, dict) and body.get("kind") == "Status", (status, body)
            for name in deleted:
                claims.gone(namespace, name)
            # Crossplane may still change claims (status, finalizers): compare with what the
            # control plane holds at each look, not at one moment.
            truth = eventually(lambda: _same(claims.current(namespace), informer.snapshot()), timeout=DELIVERY_S,
                               what="the informer to hold what the control plane holds")  # fmt: skip
            assert truth is not None
        finally:
            informer.stop()
            kubectl.stop()
            assert proc.proc is not None and proc.proc.poll() is None, "the connector died"
        report = check_deliveries(informer.deliveries, claims.writes)
        assert not report.problems, report.problems[:10]
        counters = informer.counters
        assert counters.hangs == 0, counters.errors[-10:]
        assert {f"{namespace}/{n}" for n in ("anchor", f"c{serial - 1}", f"c{serial}")} <= set(truth)
        del anchor
        claims.remove_all()
    print(
        f"[figure] control plane restarted x{RESTARTS} under watch: {len(claims.writes)} writes; informer "
        f"{report.by_watch} by watch + {report.by_relist} by relist, 0 lost, 0 twice ({counters.lists} lists, "
        f"{counters.gone} 410s, {counters.resumes} resumes, 0 hangs); kubectl -w {len(kubectl.sessions)} sessions, "
        f"{kubectl_checked} changes each seen once ({ended_before_writes} sessions ended before a round's changes); "
        f"watches ended {min(ended_after):.1f}-{max(ended_after):.1f}s "
        f"after SIGTERM; requests in the gap {sorted(set(gap_statuses))}"
    )
