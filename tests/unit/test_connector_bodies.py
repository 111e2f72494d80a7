"""Request bodies: YAML decoded as kube-apiserver decodes it, and hostile bodies refused as Status."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http import bodies

SMALL = bodies.Limits(max_bytes=10_000, max_depth=10, max_nodes=200)


def refused(data: bytes, content_type: str = "application/yaml", limits: bodies.Limits = SMALL) -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        bodies.decode(data, content_type, limits)
    assert caught.value.body["kind"] == "Status"
    return caught.value.body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML 1.1 words are booleans in go-yaml v2, quoted they are strings.
        ("[y, Y, yes, on, n, NO, off, true, False]", [True, True, True, True, False, False, False, True, False]),
        ('["yes", \'on\', !!str y]', ["yes", "on", "y"]),
        ("[~, null, '', ]", [None, None, ""]),
        # Go's ParseInt base 0: hex, octal (0o and leading 0), binary, underscores dropped.
        ("[0x10, 0o17, 010, 0b101, 1_000, -0x10, 9223372036854775807]", [16, 15, 8, 5, 1000, -16, 2**63 - 1]),
        ("[18446744073709551615]", [2**64 - 1]),
        # Floats need go-yaml's exponent sign; integral floats come back as ints after the JSON round trip.
        ("[1.5, 1.0, .5, 1e3, 1e+3, 1., 08, 1e400]", [1.5, 1, 0.5, "1e3", 1000, "1.", 8, "1e400"]),
        # Timestamps stay strings; base-60 is not a number.
        ("[2001-12-14, 2001-12-14t21:59:43.10-05:00, 12:30, 190:20:30]", ["2001-12-14", "2001-12-14t21:59:43.10-05:00", "12:30", "190:20:30"]),  # noqa: E501
        # Non-string keys become JSON keys.
        ("{1: a, true: b, n: c, 1.0: d}", {"1": "d", "true": "b", "false": "c"}),
        # Merge keys: later explicit keys win, earlier merged maps win, order matters as in go-yaml v2.
        ("{b: &b {p: 1, q: 2}, m: {<<: *b, q: 3}}", {"b": {"p": 1, "q": 2}, "m": {"p": 1, "q": 3}}),
        ("{m: {q: 3, <<: {q: 4}}}", {"m": {"q": 4}}),
        ("{m: {<<: [{z: 1}, {z: 2, w: 3}]}}", {"m": {"z": 1, "w": 3}}),
        ('{"<<": 1}', {"<<": 1}),
        # Anchors and aliases expand; each alias is its own copy.
        ("{a: &x [1, {k: v}], b: *x}", {"a": [1, {"k": "v"}], "b": [1, {"k": "v"}]}),
        ("!!binary aGVsbG8=", "hello"),
        ("[!!int '7', !!float 2, !custom thing, ! 12]", [7, 2, "thing", "12"]),
        # Only the first document counts (yaml.Unmarshal).
        ("first: 1\n---\nsecond: 2\n---\n: : bad", {"first": 1}),
        ("", None),
    ],
)
def test_yaml_resolves_like_go_yaml_v2(text: str, expected: Any) -> None:
    assert bodies.decode(text.encode(), "application/yaml") == expected


def test_aliases_are_copies_not_shared() -> None:
    decoded = bodies.decode_yaml(b"a: &x {k: [1]}\nb: *x\n")
    decoded["a"]["k"].append(2)
    assert decoded["b"] == {"k": [1]}


def test_yaml_that_json_cannot_carry_is_400() -> None:
    for text in (b"a: .inf", b"a: .nan", b"? [1, 2]\n: x", b"{~: 1}", b"a: !!int abc", b"a: !!bool 1", b"a: *nope"):
        body = refused(text)
        assert body["code"] == 400 and body["message"].startswith("error converting YAML to JSON"), (text, body)
    assert refused(b"{m: {<<: 1}}")["code"] == 400
    assert refused(b"a: [unclosed")["code"] == 400
    assert refused(b"\xff\xfe\x00")["code"] == 400


def bomb(levels: int, width: int = 9) -> bytes:
    """The classic "billion laughs": each level repeats the one before ``width`` times."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines).encode()


def test_alias_bomb_is_400_quickly() -> None:
    data = bomb(9)
    assert len(data) < 600
    start = time.monotonic()
    body = refused(data, limits=bodies.DEFAULT_LIMITS)
    assert body["code"] == 400 and "aliases count as expanded" in body["message"]
    assert time.monotonic() - start < 2.0


def test_recursive_alias_is_400() -> None:
    assert refused(b"&a [*a]")["code"] == 400
    assert refused(b"a: &a {b: *a}")["code"] == 400


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_depth_and_node_limits(content_type: str) -> None:
    deep = b"[" * 11 + b"]" * 11
    assert "nests deeper than 10" in refused(deep, content_type)["message"]
    assert bodies.decode(b"[" * 10 + b"]" * 10, content_type, SMALL) is not None
    wide = json.dumps(list(range(250))).encode()
    assert "more than 200 values" in refused(wide, content_type)["message"]
    keys = json.dumps({f"k{i}": i for i in range(120)}).encode()  # keys count as well as values
    assert "more than 200 values" in refused(keys, content_type)["message"]


def test_depth_limit_on_aliases() -> None:
    text = b"a: &x [[[[[[[1]]]]]]]\nb: [[[[*x]]]]"
    assert "nests deeper" in refused(text)["message"]


def test_json_beyond_orjson_depth_is_400_not_500() -> None:
    body = refused(b"[" * 5000 + b"]" * 5000, "application/json", bodies.DEFAULT_LIMITS)
    assert body["code"] == 400


def test_oversized_body_is_413() -> None:
    body = refused(b" " * 10_001, "application/json")
    assert body["code"] == 413 and body["reason"] == "RequestEntityTooLarge"


def test_object_required() -> None:
    with pytest.raises(ApiError) as caught:
        bodies.decode_object(b"[1]", "application/json")
    assert caught.value.code == 400


# libyaml (like go-yaml, its port) refuses escaped surrogate pairs, so text is written as UTF-8.
text = st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=30,
)


@given(json_values)
def test_json_is_yaml(value: Any) -> None:
    """JSON is a YAML subset: a JSON body decodes the same either way (as sigs.k8s.io/yaml promises)."""
    data = json.dumps(value, ensure_ascii=False).encode()
    assert bodies.decode(data, "application/yaml") == bodies.decode(data, "application/json") == value


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/merge-patch+json", "merge"),
        ("application/json-patch+json; charset=utf-8", "json"),
        ("application/apply-patch+yaml;x", "apply"),
        ("APPLICATION/MERGE-PATCH+JSON", None),
        ("application/merge-patch+json ; charset=utf-8", None),
        ("application/apply-patch+json", None),
        ("application/apply-patch+cbor", None),
        ("application/strategic-merge-patch+json", None),
        (";application/merge-patch+json", None),
        ("application/json", None),
        ("", None),
    ],
)
def test_a_patch_type_is_read_exactly_as_kube_apiserver_reads_it(content_type: str, kind: str | None) -> None:
    """Compared exactly after cutting at the first ``;``: the connector lower-cased and trimmed it."""
    if kind is not None:
        assert bodies.patch_type(content_type) == kind
        return
    with pytest.raises(ApiError) as refused:
        bodies.patch_type(content_type)
    assert refused.value.code == 415
