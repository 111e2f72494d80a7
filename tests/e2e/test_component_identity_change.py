"""A change of identity (cluster ID, claim namespace) shows the old identity's disconnect and is refused until allowed.

The refused ``up`` changes nothing in the stack: the component registers its other children only
once the engine has answered the Disconnect's registration, after its ``before_update`` hook, so
the guard's plan (what the next ``up`` and a destroy check against) keeps the old identity.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from component_helpers import log
from component_stack import Setting
from pulumi import automation as auto
from test_component_disconnect_scope import GUARD, _labelled, _resources, connected  # noqa: F401

from mcp_connector.core import contract
from testbed.harness import Testbed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize(("arg", "state_key"), [("cluster_id", "clusterId"), ("claim_namespace", "claimNamespace")])
def test_an_identity_change_shows_the_old_disconnect_and_is_refused_until_allowed(
    testbed: Testbed,
    connected: Callable[..., tuple[Setting, auto.Stack, contract.AppRef]],  # noqa: F811
    arg: str,
    state_key: str,
) -> None:
    setting, stack, ref = connected(on_disconnect="Release")
    before = {r["urn"]: r.get("inputs") for r in _resources(stack)}
    old = f"cluster {ref.cluster_id}" if arg == "cluster_id" else f"namespace {testbed.claim_namespace}"
    setting.args[arg] = str(uuid.uuid4()) if arg == "cluster_id" else f"moved-{uuid.uuid4().hex[:8]}"

    preview = stack.preview(on_output=log)
    assert "changes its identity" in preview.stdout and old in preview.stdout
    assert "would release 1 claim(s)" in preview.stdout and f"KubernetesCluster {ref.namespace}/{ref.name}" in (
        preview.stdout
    )
    assert "refuses it unless allow_identity_change" in preview.stdout

    for attempt in (1, 2):  # refused again: the first refusal left the old identity in the state
        with pytest.raises(auto.CommandError) as refused:
            stack.up(on_output=log)
        assert "Refused: the old identity was not disconnected" in str(refused.value), attempt
        assert "no other child of the McpConnector was changed" in str(refused.value)
        assert _labelled(testbed, ref)
        after = {r["urn"]: r.get("inputs") for r in _resources(stack)}
        assert after == before, f"a refused identity change changes nothing in the stack (attempt {attempt})"

    setting.args["allow_identity_change"] = True
    up = stack.up(on_output=log)
    assert "disconnect of the old identity: Release: released 1 claim(s)" in up.stdout, up.stdout[-3000:]
    assert not _labelled(testbed, ref)
    guard = next(r for r in _resources(stack) if r["type"] == GUARD)
    assert guard["inputs"][state_key] == setting.args[arg]
