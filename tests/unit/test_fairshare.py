"""Fair share: per-user and total limits, 429 Status with Retry-After, slots given back."""

from __future__ import annotations

import contextlib

import pytest

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http.fairshare import Gate, Gates, Limits


def test_one_user_past_the_limit_is_429_while_others_get_in() -> None:
    gate = Gate("watches", total=5, per_user=2, retry_after=5)
    with contextlib.ExitStack() as held:
        held.enter_context(gate.admit("alice"))
        held.enter_context(gate.admit("alice"))
        with pytest.raises(ApiError) as refused:
            held.enter_context(gate.admit("alice"))
        assert refused.value.code == 429
        assert refused.value.headers == (("Retry-After", "5"),)
        assert refused.value.body["reason"] == "TooManyRequests"
        assert refused.value.body["details"] == {"retryAfterSeconds": 5}
        assert 'user "alice" may have at most 2 watches' in refused.value.body["message"]
        held.enter_context(gate.admit("bob"))
        assert (gate.held("alice"), gate.held("bob"), gate.held()) == (2, 1, 3)
    assert gate.held() == 0 and gate.held("alice") == 0


def test_total_limit_holds_across_users() -> None:
    gate = Gate("requests in flight", total=2, per_user=2, retry_after=1)
    with gate.admit("a"), gate.admit("b"):
        with pytest.raises(ApiError) as refused, gate.admit("c"):
            pass
        assert "all users together may have at most 2" in refused.value.body["message"]


def test_slot_is_given_back_when_the_block_fails() -> None:
    gate = Gate("requests in flight", total=1, per_user=1, retry_after=1)
    with pytest.raises(RuntimeError), gate.admit("a"):
        raise RuntimeError("handler failed")
    with gate.admit("a"):
        assert gate.held("a") == 1


def test_watches_and_requests_have_separate_gates() -> None:
    gates = Gates(Limits(requests=1, requests_per_user=1, watches=1, watches_per_user=1))
    with gates.for_verb("watch").admit("a"), gates.for_verb("get").admit("a"):
        assert gates.watches.held("a") == gates.requests.held("a") == 1
