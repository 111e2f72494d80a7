"""A resourceVersion the control plane cannot parse is the client's error (400), for every verb."""

from __future__ import annotations

import pytest

from mcp_connector.connector.api.verbs.request import check_resource_version
from mcp_connector.connector.errors import ApiError


@pytest.mark.parametrize("value", ["", "0", "1", "18446744073709551615"])
def test_revisions_pass(value: str) -> None:
    check_resource_version({"resourceVersion": value})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("true", "invalid syntax"),
        ("-1", "invalid syntax"),
        ("+1", "invalid syntax"),
        (" 1", "invalid syntax"),
        ("1.0", "invalid syntax"),
        ("\u00b2", "invalid syntax"),
        ("18446744073709551616", "value out of range"),
        ("9" * 21, "value out of range"),
        ("9" * 5000, "value out of range"),
    ],
)
def test_anything_else_is_a_400_in_the_control_planes_words(value: str, reason: str) -> None:
    with pytest.raises(ApiError) as raised:
        check_resource_version({"resourceVersion": value})
    assert raised.value.code == 400
    assert raised.value.body["reason"] == "BadRequest"
    assert raised.value.body["message"] == (
        f'invalid resource version: resourceVersion: Invalid value: "{value}": '
        f'strconv.ParseUint: parsing "{value}": {reason}'
    )
