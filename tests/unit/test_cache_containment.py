"""Issue 17, point 5: what the cache cannot render or read fails at most its own cell or request.

Cells are printed as apiextensions-apiserver prints them (Go's jsonpath, ``fmt`` and
``encoding/json``); the expected strings below are what Go writes for these values. An object,
an event or a watch the cache cannot handle is left out or ended on its own: the other
watchers and the reflector go on.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import orjson
import pytest
from connector_samples import CLUSTER
from test_cache_modules import claim, served

from mcp_connector.connector.cache import cells, fanout, forms, reflector, tables
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.selection import Selection
from mcp_connector.connector.cache.store import Entry

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ({"b": 1, "a": [1, "x<y&z>"]}, '{"a":[1,"x\\u003cy\\u0026z\\u003e"],"b":1}'),
        ([], "[]"),
        ({}, "{}"),
        ([{"k": None}, True, 1.5, 1e21, 1e-7], '[{"k":null},true,1.5,1e+21,1e-7]'),
        ({"t": "tab\there\n", "u": "\u00fc\u2028"}, '{"t":"tab\\there\\n","u":"\u00fc\\u2028"}'),
        (None, "<no value>"),
        (True, "true"),
        ("plain \u00fc\U0001f600", "plain \u00fc\U0001f600"),
        (1234567, "1234567"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.5, "1.2345675e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (2**63, "9.223372036854776e+18"),  # beyond int64: Go decoded it as a float64
        (1e20, "1e+20"),
    ],
)
def test_a_string_cell_prints_any_value_as_go_prints_it(value: Any, printed: str) -> None:
    assert cells.string_cell(value) == printed


@pytest.mark.parametrize(
    ("kind", "value", "cell"),
    [
        ("integer", 7, 7),
        ("integer", 1.9, 1),
        ("integer", -1.9, -1),
        ("integer", 1e20, -(2**63)),  # Go's int64(float64) on amd64
        ("integer", "7", None),
        ("integer", True, None),
        ("integer", {"a": 1}, None),
        ("number", 5, "5"),
        ("number", 1e6, "1000000"),
        ("number", 1e21, "1e+21"),
        ("number", 0.5, "0.5"),
        ("number", "0.5", None),
        ("boolean", False, False),
        ("boolean", "true", None),
        ("date", "", "<unknown>"),
        ("date", "2020-01-01", "<invalid>"),
        ("date", "2025-12-31T23:59:00Z", "60s"),
        ("date", "2025-12-31T23:59:00.5+00:00", "59s"),
        ("date", 5, None),
        ("unknown-type", "x", None),
    ],
)
def test_a_typed_cell_is_cell_for_json_value(kind: str, value: Any, cell: Any) -> None:
    got = cells.typed_cell(kind, value, NOW)
    if isinstance(got, orjson.Fragment):
        got = orjson.dumps([got])[1:-1].decode()
    assert got == cell


def test_a_cell_that_cannot_be_made_is_empty_and_the_table_still_renders() -> None:
    columns = [
        {"name": "Tags", "type": "string", "jsonPath": ".spec.tags"},
        {"name": "Count", "type": "integer", "jsonPath": ".spec.tags"},
        {"name": "Id", "type": "string", "jsonPath": ".spec.id"},
    ]
    form = tables.table_form(tuple(columns), None, "meta.k8s.io/v1")  # type: ignore[arg-type]
    assert form is not None
    raw = claim("tagged", 3)
    raw["spec"]["tags"] = {"team": "a", "cost": [1, 2]}
    entry = Entry.of(raw, CLUSTER)
    table = json.loads(form.list_bytes([entry], kind="", api_version="", resource_version=3))
    assert table["rows"][0]["cells"][1:3] == ['{"cost":[1,2],"team":"a"}', None]

    def broken(obj: Any) -> list[Any]:
        raise RuntimeError("a path that fails")

    form.columns.paths[2] = ("string", broken)
    table = json.loads(form.list_bytes([entry], kind="", api_version="", resource_version=3))
    assert table["rows"][0]["cells"][0] == "tagged" and table["rows"][0]["cells"][3] is None


class _Broken(forms.Form):
    def event_bytes(self, entry: Entry, *, headers: bool) -> bytes:
        raise RuntimeError("cannot render")


def test_a_watch_whose_event_cannot_be_written_ends_alone() -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 1)
    broken = fanout.Watcher(Selection(), _Broken("broken"), bookmarks=False, bookmark=lambda rv, end: b"")
    fine = fanout.Watcher(Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"")
    cache.watchers.update({broken, fine})
    cache.apply("ADDED", claim("a", 2))
    cache.apply("MODIFIED", claim("a", 3))
    assert broken.closed and broken.reason and broken not in cache.watchers
    assert [json.loads(line)["type"] for line in fine.lines()] == ["ADDED", "MODIFIED"] and not fine.closed


@pytest.mark.parametrize(
    "odd",
    [
        {"kind": "KubernetesCluster"},  # no metadata
        {"metadata": ["not", "a", "map"]},
        {"metadata": {"name": "x", "resourceVersion": "not-a-number"}},
    ],
)
def test_an_object_the_cache_cannot_read_is_left_out_and_the_rest_goes_on(odd: dict[str, Any]) -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([claim("a", 2), odd], 2)
    watcher = fanout.Watcher(Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"")
    cache.watchers.add(watcher)
    cache.apply("MODIFIED", odd)
    cache.apply("MODIFIED", claim("a", 3))
    assert [e.name for e in cache.store] == ["a"] and cache.rv == 3 and len(watcher.lines()) == 1


def test_an_entry_whose_new_state_cannot_be_read_is_dropped_not_served_stale() -> None:
    cache = Cache(served(), CLUSTER)
    good = claim("a", 2)
    cache.replace([good], 2)
    stale = json.loads(json.dumps(good))
    stale["metadata"]["resourceVersion"] = "garbage"
    cache.apply("MODIFIED", stale)
    assert cache.get("default", "a") is None


@pytest.mark.parametrize(
    "event",
    [
        {"type": "SURPRISE", "object": {"metadata": {}}},
        {"type": "ADDED", "object": "not a map"},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "x"}}},
        {"type": "BOOKMARK", "object": {"metadata": "x"}},
    ],
)
def test_the_reflector_skips_events_it_cannot_use(event: dict[str, Any]) -> None:
    cache = Cache(served(), CLUSTER)
    cache.replace([], 4)
    reflector._apply(cache, event)
    assert cache.rv == 4


def test_an_error_event_with_an_odd_code_is_a_rejected_watch() -> None:
    cache = Cache(served(), CLUSTER)
    with pytest.raises(reflector.upstream.ControlPlaneRejected) as raised:
        reflector._apply(cache, {"type": "ERROR", "object": {"code": "teapot"}})
    assert raised.value.status == 500


def test_a_watch_line_that_is_not_json_is_a_broken_stream() -> None:
    with pytest.raises(reflector.upstream.ControlPlaneUnreachable):
        reflector.upstream.watch_event("https://cp", b'{"type": "ADDED", "obj')
    assert reflector.upstream.watch_event("https://cp", b"[1]") is None


def test_printer_columns_the_cache_cannot_read_send_tables_to_the_control_plane() -> None:
    odd = ({"name": "X", "type": "integer", "jsonPath": ".spec.x", "priority": "high"},)
    assert tables.table_form(odd, None, "meta.k8s.io/v1") is None  # type: ignore[arg-type]
