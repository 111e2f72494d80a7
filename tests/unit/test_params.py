"""Query parameters parsed per verb as kube-apiserver's parameter codec parses them."""

from __future__ import annotations

import pytest

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http import params

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
    assert params.go_bool(value) is expected
