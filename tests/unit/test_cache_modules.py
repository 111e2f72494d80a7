"""The cache's parts on their own: selection, store and history, fan-out, forms, the pump."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

import pytest
from connector_samples import CLUSTER, OTHER_CLUSTER, catalog, cp_claim

from mcp_connector.connector.cache import fanout, forms
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.selection import Selection, parse
from mcp_connector.connector.followers.catalog import ServedResource
from mcp_connector.connector.http import media


def no_table(api_version: str) -> None:
    return None


def served() -> ServedResource:
    found = catalog().resource("k8s.starter.org", "v1alpha1", "kubernetesclusters")
    assert found is not None
    return found


def claim(name: str, rv: int, namespace: str = "default", labels: dict[str, str] | None = None) -> dict[str, Any]:
    obj = cp_claim(name, namespace)
    obj["metadata"]["resourceVersion"] = str(rv)
    if labels is not None:
        obj["metadata"]["labels"] = {
            **{k: v for k, v in obj["metadata"]["labels"].items() if k.startswith("mcp-connector")},
            **labels,
        }
    return obj


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("team=a", {"team": "a"}, True),
        ("team==a", {"team": "b"}, False),
        ("team!=a", {}, True),
        ("team in (a,b)", {"team": "b"}, True),
        ("team notin (a,b)", {"team": "c"}, True),
        ("team notin (a,b)", {"team": "a"}, False),
        ("team", {"team": ""}, True),
        ("!team", {"team": "a"}, False),
        ("size>3", {"size": "4"}, True),
        ("size<3", {"size": "4"}, False),
        ("size>3", {"size": "x"}, False),
        ("size>3", {"size": "99999999999999999999"}, False),  # beyond int64: strconv.ParseInt fails
        ("team=a,tier=web", {"team": "a", "tier": "web"}, True),
        ("team=a,tier=web", {"team": "a"}, False),
        # One case per operator each way, through the parser the SubjectAccessReview uses too.
        ("team in (a,b)", {"team": "c"}, False),
        ("team in (a,b)", {}, False),
        ("team notin (a,b)", {}, True),
        ("team notin ()", {"team": ""}, False),
        ("team in ()", {"team": ""}, True),
        ("team", {}, False),
        ("!team", {}, True),
        ("size>3", {"size": "3"}, False),
        ("size>-1", {"size": "0"}, None),  # not a label value: the control plane answers
        ("size<3", {"size": "2"}, True),
        ("size<3", {}, False),
        ("size<10", {"size": "007"}, True),
    ],
)
def test_label_selectors_match_as_kube_apiserver_matches(
    selector: str, labels: dict[str, str], expected: bool | None
) -> None:
    selection = parse(None, None, selector, "")
    if expected is None:
        assert selection is None
        return
    assert selection is not None
    assert selection.matches("ns", "name", labels) is expected


@pytest.mark.parametrize(
    "selector",
    ["team=", "team=a,", "=a", "team in a", "team in (a", "a b", "x>y", "in (a)", "x>-1", "x<9223372036854775808"],
)
def test_selectors_that_do_not_parse_go_to_the_control_plane(selector: str) -> None:
    if selector == "team=":
        assert parse(None, None, selector, "") is not None  # an empty value is valid
        return
    assert parse(None, None, selector, "") is None


def test_field_selectors_on_other_fields_are_not_evaluated_by_the_cache() -> None:
    assert parse("ns", None, "", "spec.id=x") is None
    selection = parse(None, None, "", "metadata.name=a,metadata.namespace!=b")
    assert selection is not None
    assert (
        selection.matches("c", "a", {}) and not selection.matches("b", "a", {}) and not selection.matches("c", "d", {})
    )
    assert selection.exact_name == "a"


def test_cache_keeps_this_clusters_objects_in_control_plane_order_and_history() -> None:
    cache = Cache(served(), CLUSTER, capacity=3)
    cache.replace([claim("b", 5), claim("a", 6), cp_claim("x", "default", OTHER_CLUSTER)], 10)
    assert {e.name for e in cache.store} == {"a", "b"}
    ordered = cache.select(Selection())
    assert [e.cp_name for e in ordered] == sorted(e.cp_name for e in ordered)
    assert ordered[0].obj["metadata"]["name"] in ("a", "b") and "labels" in ordered[0].obj["metadata"]
    for rv in (11, 12, 13, 14):
        cache.apply("MODIFIED", claim("a", rv))
    assert cache.rv == 14
    assert not cache.history.covers(10) and cache.history.covers(11)
    assert [e.rv for e in cache.history.since(12)] == [13, 14]
    cache.apply("DELETED", claim("b", 15))
    assert cache.get("default", "b") is None and cache.rv == 15


def test_a_watcher_sees_objects_enter_and_leave_its_selection() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    selection = parse("default", None, "team=a", "")
    assert selection is not None
    watcher = fanout.Watcher(selection, forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"")
    cache.watchers.add(watcher)
    cache.apply("ADDED", claim("w", 2, labels={"team": "b"}))
    cache.apply("MODIFIED", claim("w", 3, labels={"team": "a"}))
    cache.apply("MODIFIED", claim("w", 4, labels={"team": "a", "x": "y"}))
    cache.apply("MODIFIED", claim("w", 5, labels={"team": "b"}))
    cache.apply("ADDED", claim("other-ns", 6, namespace="elsewhere", labels={"team": "a"}))
    events = [json.loads(line) for line in watcher.lines()]
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "3"),
        ("MODIFIED", "4"),
        ("DELETED", "5"),
    ]
    assert all(e["object"]["metadata"]["name"] == "w" for e in events)


def test_a_watcher_that_lags_is_cut_off_with_bounded_memory() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    watcher = fanout.Watcher(Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"", limit=5)
    cache.watchers.add(watcher)
    for rv in range(2, 20):
        cache.apply("MODIFIED", claim("busy", rv))
    assert watcher.closed and watcher.reason and not watcher.queue


def test_one_encoding_per_object_and_form_is_shared_by_every_watcher() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    watchers = [
        fanout.Watcher(Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"") for _ in range(3)
    ]
    cache.watchers.update(watchers)
    cache.apply("ADDED", claim("shared", 2))
    objects = [w.queue[1] for w in watchers]  # head, object, tail: the object is the cache's own bytes
    assert objects[0] is objects[1] is objects[2] is cache.get("default", "shared").encoded["object"]  # type: ignore[union-attr]


def test_lists_and_metadata_forms_look_like_kube_apiservers() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([claim("a", 3), claim("b", 4)], 9)
    entries = cache.select(Selection())
    listed = json.loads(
        forms.OBJECT.list_bytes(
            entries, kind="KubernetesClusterList", api_version="k8s.starter.org/v1alpha1", resource_version=9
        )
    )
    assert listed["kind"] == "KubernetesClusterList" and listed["metadata"]["resourceVersion"] == "9"
    assert [i["metadata"]["name"] for i in listed["items"]] == [e.name for e in entries]
    meta = json.loads(forms.METADATA.list_bytes(entries, kind="x", api_version="y", resource_version=9))
    assert meta["kind"] == "PartialObjectMetadataList" and meta["apiVersion"] == "meta.k8s.io/v1"
    assert "spec" not in meta["items"][0] and meta["items"][0]["kind"] == "PartialObjectMetadata"
    table = media.Output("Table", "v1")
    assert forms.negotiate(table, listing=True, table=no_table) is None
    assert forms.negotiate(media.OBJECT, listing=False, table=no_table) is forms.OBJECT
    pom, poml = media.Output("PartialObjectMetadata", "v1"), media.Output("PartialObjectMetadataList", "v1")
    assert forms.negotiate(poml, listing=True, table=no_table) is forms.METADATA
    assert forms.negotiate(pom, listing=False, table=no_table) is forms.METADATA
    assert forms.negotiate(pom, listing=True, table=no_table) is None
    assert forms.negotiate(media.Output("PartialObjectMetadata", "v1beta1"), listing=False, table=no_table) is None


async def test_the_pump_writes_initial_events_then_changes_and_a_bookmark_before_the_deadline() -> None:
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    watcher = fanout.Watcher(
        Selection(), forms.OBJECT, bookmarks=True, bookmark=lambda rv, end: f"BOOKMARK {rv}\n".encode()
    )
    task = asyncio.create_task(
        fanout.pump(write, watcher, [b"initial\n"], deadline=time.monotonic() + 2.5, current=lambda: 42)
    )
    await asyncio.sleep(0.05)
    watcher.queue.append(b"change\n")
    watcher.wake.set()
    await asyncio.wait_for(task, 5)
    assert b"".join(written) == b"initial\nchange\nBOOKMARK 42\n"


async def test_the_pump_keeps_one_timer_however_many_changes_it_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A timer per wait meant a thousand timers made and dropped per change fanned out to a thousand watches."""
    loop = asyncio.get_running_loop()
    timers = 0
    call_at = loop.call_at

    def counting(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal timers
        timers += 1
        return call_at(*args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    watcher = fanout.Watcher(Selection(), forms.OBJECT, bookmarks=True, bookmark=lambda rv, end: b"BOOKMARK\n")
    task = asyncio.create_task(fanout.pump(write, watcher, [], deadline=time.monotonic() + 60, current=lambda: 1))
    for i in range(50):
        watcher.queue.append(b"change %d\n" % i)
        watcher.wake.set()
        while len(written) <= i:
            await asyncio.sleep(0)
    assert timers <= 1
    watcher.close()
    await asyncio.wait_for(task, 5)
    assert written == [b"change %d\n" % i for i in range(50)]


def test_a_listed_store_is_left_out_of_the_garbage_collectors_scans() -> None:
    """A full collection walked every cached object: at 11,000 claims it stopped every watch for a second."""
    cache = Cache(served(), CLUSTER)
    cache.replace([cp_claim("a"), cp_claim("b")], 7)
    listed = [id(e.obj) for e in cache.store.ordered()]
    assert len(listed) == 2
    scanned = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
    assert not scanned.intersection(listed)
    assert gc.get_freeze_count() > 0


async def test_a_cache_read_waits_for_a_version_until_its_bound() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    cache.set_ready()
    waiting = asyncio.create_task(cache.wait_for(3, 2.0))
    await asyncio.sleep(0.01)
    cache.progress(3)
    assert await waiting
    assert not await cache.wait_for(10, 0.05)


async def test_a_cache_told_410_is_not_ready_until_it_has_relisted() -> None:
    """A re-watch answered 200 and then 410 Gone: watches waiting for the cache keep waiting for
    the relist instead of being served from the stale store (and ended by the relist)."""
    cache = Cache(served(), CLUSTER)
    cache.replace([claim("a", 1)], 1)
    cache.set_ready()
    open_watch = fanout.Watcher(Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"")
    cache.watchers.add(open_watch)
    cache.fail(None)  # the control plane went away
    assert open_watch.closed
    waiting = asyncio.create_task(cache.wait_ready(2.0))
    await asyncio.sleep(0.01)
    cache.set_ready()  # the re-watch is answered 200 OK...
    cache.expired()  # ...and its first event is 410 Gone, before the waiting watch ran
    assert not cache.ready
    await asyncio.sleep(0.01)
    assert not waiting.done()
    cache.replace([claim("a", 7)], 7)
    cache.set_ready()
    assert await waiting


def test_openapi_documents_are_built_once_per_catalog() -> None:
    from mcp_connector.connector.api import openapi

    first = catalog()
    doc = openapi.document(first, "v3", "k8s.starter.org", "v1alpha1")
    assert doc is not None
    assert openapi.document(first, "v3", "k8s.starter.org", "v1alpha1") is not None
    assert openapi.document(first, "v3", "k8s.starter.org", "v1alpha1")[0] is doc[0]  # type: ignore[index]
    again = openapi.document(catalog(), "v3", "k8s.starter.org", "v1alpha1")
    assert again is not None and again[0] is not doc[0] and again == doc
    assert openapi.document(first, "v3", "no.such.group", "v1") is None
