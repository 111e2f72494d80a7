"""Fair share: per-user and total limits, 429 Status with Retry-After, slots given back."""

from __future__ import annotations

import contextlib

import pytest

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http.auth import User
from mcp_connector.connector.http.fairshare import Flow, Gate, Gates, Limits, flow_of


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


def _sa(namespace: str, name: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}", ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    )


def test_four_service_accounts_of_one_namespace_leave_the_pool_to_another() -> None:
    gate = Gate("requests in flight", total=8, per_user=4, per_namespace=4, retry_after=1)
    workers = [_sa("team-a", f"worker-{i}") for i in range(4)]
    with contextlib.ExitStack() as held:
        for worker in workers:
            held.enter_context(gate.admit(flow_of(worker, "team-a")))
        assert gate.held_by_namespace("team-a") == 4
        for worker in workers:
            with pytest.raises(ApiError) as refused, gate.admit(flow_of(worker, "team-a")):
                pass
            assert 'namespace "team-a" may have at most 4 requests in flight' in refused.value.body["message"]
        # Sending requests elsewhere makes no difference: a ServiceAccount counts at home.
        with pytest.raises(ApiError), gate.admit(flow_of(workers[0], "team-b")):
            pass
        # Another namespace's user and ServiceAccount still get in.
        held.enter_context(gate.admit(flow_of(User("bob"), "team-b")))
        held.enter_context(gate.admit(flow_of(_sa("team-b", "app"), "team-b")))
        assert gate.held_by_namespace("team-b") == 2
    assert gate.held() == 0 and gate.held_by_namespace("team-a") == 0


def test_the_clusters_own_controllers_are_never_refused() -> None:
    gate = Gate("watches", total=1, per_user=1, per_namespace=1, retry_after=5)
    controllers = [
        _sa("kube-system", "generic-garbage-collector"),
        _sa("kube-system", "namespace-controller"),
        User("system:kube-controller-manager", ("system:authenticated",)),
        User("admin", ("system:masters", "system:authenticated")),
    ]
    with gate.admit(flow_of(User("alice"), "a")):
        with pytest.raises(ApiError):
            gate.admit(flow_of(User("carol"), None)).__enter__()
        with contextlib.ExitStack() as held:
            for user in controllers * 3:
                held.enter_context(gate.admit(flow_of(user, None)))
            assert gate.exempt == 12 and gate.held() == 1
    assert gate.exempt == 0


@pytest.mark.parametrize(
    ("user", "namespace", "flow"),
    [
        (User("alice"), "a", Flow("alice", "a")),
        (User("alice"), None, Flow("alice", None)),
        (_sa("b", "x"), "a", Flow("system:serviceaccount:b:x", "b")),
        (User("system:serviceaccount:"), "a", Flow("system:serviceaccount:", "a")),
        (User("system:serviceaccounts:kube-system"), "a", Flow("system:serviceaccounts:kube-system", "a")),
        (User("x", ("system:serviceaccounts:kube-system",)), "a", Flow("x", exempt=True)),
    ],
)
def test_flow_of(user: User, namespace: str | None, flow: Flow) -> None:
    assert flow_of(user, namespace) == flow
