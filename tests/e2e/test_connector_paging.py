"""Paged lists and WatchList streams through the connector, called directly as the aggregator would.

client-go pages big lists with limit/continue and its WatchList informers open a watch with
sendInitialEvents=true and wait for the ``k8s.io/initial-events-end`` bookmark: both must
keep working with app-side names, and stay within one cluster and namespace.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from connector_fixtures import ConnectorProcess, start_connector

from testbed.harness import Testbed
from testbed.seed import KUBERNETES_CLUSTER

pytestmark = pytest.mark.e2e

NAMESPACE = "paging"
CLAIMS = f"/apis/k8s.starter.org/v1alpha1/namespaces/{NAMESPACE}/kubernetesclusters"
NAMES = [f"pg-{i}" for i in range(5)]


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    """A connector with a cluster ID of its own holding five claims, and a neighbour with one."""
    testbed.kubectl("app-cluster", "create", "namespace", NAMESPACE, check=False)
    proc = start_connector(testbed, cluster_id=f"paging-{uuid.uuid4().hex[:8]}")
    neighbour = start_connector(testbed, cluster_id=f"paging-other-{uuid.uuid4().hex[:8]}")
    body: dict[str, Any] = yaml.safe_load(KUBERNETES_CLUSTER.example_claim_file.read_text())
    try:
        for name in NAMES:
            status, answer = proc.call("POST", CLAIMS, {**body, "metadata": {"name": name}})
            assert status == 201, answer
        status, answer = neighbour.call("POST", CLAIMS, {**body, "metadata": {"name": "not-yours"}})
        assert status == 201, answer
        yield proc
    finally:
        for owner in (proc, neighbour):
            owner.call("DELETE", CLAIMS)  # deletecollection, scoped to the owner's cluster
            owner.stop()


def test_limit_and_continue_page_through_app_names(conn: ConnectorProcess) -> None:
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        status, page = conn.call("GET", f"{CLAIMS}?limit=2" + (f"&continue={token}" if token else ""))
        assert status == 200, page
        assert len(page["items"]) <= 2
        seen += [item["metadata"]["name"] for item in page["items"]]
        pages += 1
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert sorted(seen) == NAMES
    assert pages >= 3


def test_watchlist_sends_initial_events_then_the_end_bookmark(conn: ConnectorProcess) -> None:
    query = "watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=3"
    status, raw = conn.raw(
        "GET", f"{CLAIMS}?{query}", headers={"X-Remote-User": "e2e-admin", "X-Remote-Group": "system:masters"}
    )
    assert status == 200, raw[:500]
    events = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    kinds = [e["type"] for e in events]
    end = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "BOOKMARK"
        and e["object"]["metadata"].get("annotations", {}).get("k8s.io/initial-events-end") == "true"
    )
    initial = events[:end]
    assert [e["type"] for e in initial] == ["ADDED"] * len(NAMES), kinds
    assert sorted(e["object"]["metadata"]["name"] for e in initial) == NAMES
    assert {e["object"]["metadata"]["namespace"] for e in initial} == {NAMESPACE}
