"""Issue 17, point 4: the cache's memory is bounded in bytes, and what it drops it answers for.

The history's events draw on one byte budget for the process (oldest dropped first), a watch
that falls too many bytes behind is cut off, an entry that has left the store keeps bytes, not
dicts, and a watch from a version the history no longer reaches is 410 Expired.
"""

from __future__ import annotations

import json
from typing import Any

from connector_samples import CLUSTER
from test_cache_modules import claim, served

from mcp_connector.connector.cache import fanout, forms
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.history import Budget
from mcp_connector.connector.cache.selection import Selection


def big_claim(name: str, rv: int, size: int) -> dict[str, Any]:
    obj = claim(name, rv)
    obj["spec"]["blob"] = "x" * size
    return obj


def test_the_history_keeps_events_within_a_byte_budget_shared_by_every_cache() -> None:
    budget = Budget(1_000_000)
    one, two = Cache(served(), CLUSTER, budget=budget), Cache(served(), CLUSTER, budget=budget)
    one.replace([], 1)
    two.replace([], 1)
    for rv in range(2, 12):
        one.apply("MODIFIED", big_claim("a", rv, 100_000))
    assert budget.used <= budget.limit and one.history.bytes == budget.used
    assert 2 <= len(one.history) < 10
    assert one.history.expired(2) and not one.history.expired(one.history.start) and one.history.covers(11)
    assert not one.history.expired(0)  # older than the last list: not this history's to answer
    two.apply("ADDED", big_claim("b", 12, 100_000))
    assert budget.used <= budget.limit and len(two.history) == 1
    one.replace([], 20)
    assert budget.used == two.history.bytes


def test_an_entry_that_left_the_store_keeps_bytes_not_dicts() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    cache.apply("ADDED", claim("a", 2))
    cache.apply("MODIFIED", claim("a", 3))
    cache.apply("DELETED", claim("a", 4))
    first, second, deleted = (e.entry for e in cache.history.since(1))
    assert first.packed and second.packed and deleted.packed
    assert first.raw["metadata"]["resourceVersion"] == "2" and first.obj["metadata"]["name"] == "a"
    watcher = fanout.Watcher(Selection(), forms.METADATA, bookmarks=False, bookmark=lambda rv, end: b"")
    for event in cache.history.since(1):
        watcher.offer(event)
    assert [json.loads(line)["object"]["kind"] for line in watcher.lines()] == ["PartialObjectMetadata"] * 3


def test_a_watch_that_falls_too_many_bytes_behind_is_cut_off() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    watcher = fanout.Watcher(
        Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"", limit_bytes=500_000
    )
    cache.watchers.add(watcher)
    for rv in range(2, 6):
        cache.apply("MODIFIED", big_claim("a", rv, 100_000))
    assert not watcher.closed and watcher.pending > 300_000
    assert len(watcher.take()) == 12 and watcher.pending == 0
    for rv in range(6, 12):
        cache.apply("MODIFIED", big_claim("a", rv, 100_000))
    assert watcher.closed and watcher.reason and not watcher.queue and watcher not in cache.watchers
