"""A delete's options parsed as kube-apiserver parses them; each case's answer was read from a local CRD."""

from __future__ import annotations

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http import delete_options
from mcp_connector.connector.http.delete_options import DeleteOptions

JSON, YAML = "application/json", "application/yaml"

#: (body, content type, kube-apiserver's answer: 400, 415, 422 or the options it acts on).
CASES: list[tuple[bytes, str, int | DeleteOptions]] = [
    (b'{"preconditions":"abc"}', JSON, 400),
    (b'{"preconditions":{"uid":5}}', JSON, 400),
    (b'{"preconditions":{"resourceVersion":5}}', JSON, 400),
    (b'{"gracePeriodSeconds":"5"}', JSON, 400),
    (b'{"gracePeriodSeconds":1.5}', JSON, 400),
    (b'{"gracePeriodSeconds":1e3}', JSON, 400),
    (b'{"gracePeriodSeconds":99999999999999999999}', JSON, 400),
    (b'{"gracePeriodSeconds":5,"gracePeriodSeconds":"x"}', JSON, 400),
    (b'{"kind":"x"}', JSON, 400),
    (b'{"kind":"ListOptions"}', JSON, 400),
    (b'{"kind":"deleteoptions"}', JSON, 400),
    (b'{"kind":5}', JSON, 400),
    (b'{"kind":"DeleteOptions","apiVersion":5}', JSON, 400),
    (b'{"dryRun":"All"}', JSON, 400),
    (b'{"orphanDependents":"true"}', JSON, 400),
    (b'{"propagationPolicy":5}', JSON, 400),
    (b'{"ignoreStoreReadErrorWithClusterBreakingPotential":"x"}', JSON, 400),
    (b"[]", JSON, 400),
    (b"5", JSON, 400),
    (b" ", JSON, 400),
    (b'{"a":1} trailing', JSON, 400),
    (b"preconditions: abc", YAML, 400),
    (b'kind: "\\x91"', YAML, 400),
    (b"- a", YAML, 400),
    (b"{}", "text/plain", 415),
    (b"{}", "application/json;foo", 415),
    (b"{}", "application/vnd.kubernetes.protobuf", 415),
    (b"{}", "*/*", 415),
    (b'{"propagationPolicy":"x"}', JSON, 422),
    (b'{"dryRun":["x"]}', JSON, 422),
    (b'{"dryRun":[null]}', JSON, 422),
    (b'{"propagationPolicy":"Orphan","orphanDependents":true}', JSON, 422),
    (b'{"kind":"DeleteOptions","apiVersion":"zz/v9"}', JSON, DeleteOptions()),
    (b'{"apiVersion":""}', JSON, DeleteOptions()),
    (b'{"foo":1,"GracePeriodSeconds":"x"}', JSON, DeleteOptions()),
    (b"null", JSON, DeleteOptions()),
    (b'{"dryRun":null,"preconditions":null}', JSON, DeleteOptions()),
    (b'{"ignoreStoreReadErrorWithClusterBreakingPotential":true}', JSON, DeleteOptions()),
    (b'{"orphanDependents":null,"propagationPolicy":"Orphan"}', JSON, DeleteOptions(propagation_policy="Orphan")),
    (b"gracePeriodSeconds: 5.0", YAML, DeleteOptions(grace_period_seconds=5)),
    (b'{"gracePeriodSeconds":-5}', "APPLICATION/JSON; charset=utf-8", DeleteOptions(grace_period_seconds=-5)),
    (
        b'{"preconditions":{"uid":"u","resourceVersion":"7"},"dryRun":["All"]}',
        "",
        DeleteOptions(precondition_uid="u", precondition_resource_version="7", dry_run=("All",)),
    ),
]


@pytest.mark.parametrize(("body", "content_type", "expected"), CASES)
def test_a_body_is_parsed_as_kube_apiserver_parses_it(
    body: bytes, content_type: str, expected: int | DeleteOptions
) -> None:
    if isinstance(expected, DeleteOptions):
        assert delete_options.parse({}, {}, body, content_type) == expected
        return
    with pytest.raises(ApiError) as caught:
        delete_options.parse({}, {}, body, content_type)
    assert caught.value.code == expected, caught.value.body


def test_a_body_replaces_the_query_and_the_query_counts_without_one() -> None:
    query = {"gracePeriodSeconds": "x", "propagationPolicy": "bogus"}
    assert delete_options.parse(query, {}, b"{}", JSON) == DeleteOptions()
    with pytest.raises(ApiError) as caught:
        delete_options.parse(query, {}, b"", JSON)
    assert caught.value.code == 400
    parsed = delete_options.parse({"orphanDependents": "yes", "dryRun": "All"}, {"dryRun": ("All",)}, b"", JSON)
    assert parsed == DeleteOptions(orphan_dependents=True, dry_run=("All",))


def test_the_wire_form_holds_only_parsed_fields_and_the_pinned_uid() -> None:
    parsed = delete_options.parse({}, {}, b'{"extra":{"x":1},"propagationPolicy":"Background"}', JSON)
    assert parsed.pinned("uid-1").wire() == {
        "kind": "DeleteOptions",
        "apiVersion": "meta.k8s.io/v1",
        "propagationPolicy": "Background",
        "preconditions": {"uid": "uid-1"},
    }


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["kind", "apiVersion", "gracePeriodSeconds", "preconditions", "orphanDependents", "propagationPolicy",
     "dryRun", "ignoreStoreReadErrorWithClusterBreakingPotential", "other"]
)  # fmt: skip


@given(st.dictionaries(FIELDS, JSON_VALUES, max_size=6) | JSON_VALUES, st.sampled_from([JSON, YAML]))
def test_any_body_is_options_or_a_client_error(document: object, content_type: str) -> None:
    """The class the fuzzer found (a 500 from a DeleteOptions body): nothing a tenant sends escapes parsing."""
    try:
        body = orjson.dumps(document) if content_type == JSON else yaml.safe_dump(document).encode()
    except (TypeError, orjson.JSONEncodeError):
        return
    try:
        parsed = delete_options.parse({}, {}, body, content_type)
    except ApiError as e:
        assert 400 <= e.code < 500, e.body
        return
    assert isinstance(parsed.wire(), dict)
