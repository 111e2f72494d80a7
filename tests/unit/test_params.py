"""Query parameters parsed per verb as kube-apiserver's parameter codec parses them."""

from __future__ import annotations

import pytest

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http import apimachinery, params

REFUSED = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e3",
    "1.5",
    " 5",
    "5 ",
    "0x10",
    "1_000",
    "",
    "\uff19",
    "9223372036854775808",
    "True",
]
ACCEPTED = {"0": 0, "5": 5, "+5": 5, "-1": -1, "007": 7, "9223372036854775807": 2**63 - 1}


@pytest.mark.parametrize("value", REFUSED)
@pytest.mark.parametrize(
    ("verb", "name"), [("watch", "timeoutSeconds"), ("list", "limit"), ("delete", "gracePeriodSeconds")]
)
def test_an_integer_go_cannot_parse_is_400(verb: str, name: str, value: str) -> None:
    with pytest.raises(ApiError) as caught:
        params.parse({name: value}, verb)
    assert caught.value.code == 400
    assert caught.value.body["message"].startswith(f'strconv.ParseInt: parsing "{value}"')


@pytest.mark.parametrize(("value", "expected"), ACCEPTED.items())
def test_integers_go_parses(value: str, expected: int) -> None:
    assert params.parse({"timeoutSeconds": value}, "watch").timeout_seconds == expected
    assert params.parse({"limit": value}, "list").limit == expected


def test_a_verb_ignores_what_its_options_do_not_hold() -> None:
    assert params.parse({"timeoutSeconds": "nan", "limit": "x"}, "get") == params.Params()
    assert params.parse({"gracePeriodSeconds": "x"}, "create") == params.Params()
    with pytest.raises(ApiError):
        params.parse({"gracePeriodSeconds": "x"}, "deletecollection")


BOOLEANS = [("true", True), ("1", True), ("yes", True), ("", True), ("True", True),
            ("0", False), ("false", False), ("FALSE", False), (None, False)]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), BOOLEANS)
def test_booleans_as_apimachinery_converts_them(value: str | None, expected: bool) -> None:
    assert apimachinery.go_bool(value) is expected


def _fields(error: ApiError) -> list[str]:
    return [c["field"] for c in error.body["details"]["causes"]]


@pytest.mark.parametrize(
    ("verb", "query", "kind", "fields"),
    [
        ("list", {"resourceVersionMatch": "bogus", "resourceVersion": "1"}, "ListOptions", ["resourceVersionMatch"]),
        ("list", {"resourceVersionMatch": "Exact"}, "ListOptions", ["resourceVersionMatch"]),
        ("list", {"sendInitialEvents": "true"}, "ListOptions", ["sendInitialEvents"]),
        ("watch", {"resourceVersionMatch": "NotOlderThan"}, "ListOptions", ["resourceVersionMatch"]),
        ("watch", {"sendInitialEvents": "true"}, "ListOptions", ["resourceVersionMatch"]),
        # A watch with a continue token (served as a watch before): kube-apiserver 1.35's causes.
        ("watch", {"continue": "abc"}, "ListOptions", ["resourceVersionMatch"]),
        ("watch", {"continue": "abc", "sendInitialEvents": "true"}, "ListOptions", ["resourceVersionMatch"]),
        (
            "watch",
            {"continue": "abc", "resourceVersionMatch": "Exact"},
            "ListOptions",
            ["resourceVersionMatch", "resourceVersionMatch", "resourceVersionMatch"],
        ),
        ("create", {"dryRun": "all"}, "CreateOptions", ["dryRun"]),
        ("update", {"fieldValidation": "strict"}, "UpdateOptions", ["fieldValidation"]),
        ("create", {"fieldManager": "x" * 129}, "CreateOptions", ["fieldManager"]),
        ("create", {"fieldManager": "a\tb"}, "CreateOptions", ["fieldManager"]),
        ("patch", {"force": "true"}, "PatchOptions", ["force"]),
        ("delete", {"propagationPolicy": "orphan"}, "DeleteOptions", ["propagationPolicy"]),
        ("delete", {"propagationPolicy": "Orphan", "orphanDependents": "true"}, "DeleteOptions", ["propagationPolicy"]),
    ],
)
def test_options_that_break_their_rules_are_422_naming_the_kind_and_field(
    verb: str, query: dict[str, str], kind: str, fields: list[str]
) -> None:
    with pytest.raises(ApiError) as caught:
        params.parse(query, verb)
    assert caught.value.code == 422
    assert caught.value.body["details"]["kind"] == kind
    assert _fields(caught.value) == fields


def test_options_kube_apiserver_accepts() -> None:
    params.parse({"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}, "watch")
    params.parse({"watch": "1", "continue": ""}, "watch")
    params.parse({"resourceVersionMatch": "NotOlderThan", "resourceVersion": "0"}, "list")
    params.parse({"dryRun": "All", "fieldValidation": "Strict", "fieldManager": "kubectl"}, "create")
    params.parse({"force": "true", "fieldManager": "kubectl"}, "patch", apply=True)
    params.parse({"propagationPolicy": "Foreground"}, "delete")


def test_every_dry_run_value_counts_and_a_delete_body_replaces_the_query() -> None:
    with pytest.raises(ApiError):
        params.parse({"dryRun": "All"}, "create", repeated={"dryRun": ("All", "bogus")})
    with pytest.raises(ApiError):
        params.parse({}, "patch", apply=True)  # apply needs a field manager
    assert params.parse({"propagationPolicy": "bogus", "gracePeriodSeconds": "x"}, "delete", body=b"{}")
