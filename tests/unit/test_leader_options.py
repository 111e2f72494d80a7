"""Leader-election and shutdown flags: client-go's defaults, its safety checks, names checked at the edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from mcp_connector.connector import config, options
from mcp_connector.connector.api.watch import until
from mcp_connector.connector.http.health import Health
from mcp_connector.connector.leader.election import Timing
from mcp_connector.connector.runtime import Runtime

BASE = ["--control-plane-kubeconfig", "/dev/null", "--claim-namespace", "c", "--cert-dir", "/tmp"]


def _problems(*argv: str) -> str:
    return "\n".join(options.validate(options.parse([*BASE, *argv], env={})))


def test_defaults_are_client_gos_and_the_lease_sits_beside_the_service() -> None:
    opts = options.parse(BASE, env={"HOSTNAME": "ignored"})
    election = config.leader_election(opts)
    assert election is not None
    assert (election.namespace, election.name, election.timing) == ("kube-system", "mcp-connector", Timing(15, 10, 2))
    other = config.leader_election(opts)
    assert other is not None and other.identity != election.identity  # host name + a random suffix: one per process
    named = config.leader_election(options.parse([*BASE, "--leader-elect-identity", "pod-a"], env={}))
    assert named is not None and named.identity == "pod-a"
    moved = options.parse([*BASE, "--service-namespace", "mcp"], env={})
    assert (e := config.leader_election(moved)) is not None and e.namespace == "mcp"
    assert config.leader_election(options.parse([*BASE, "--leader-elect", "false"], env={})) is None
    from_env = options.parse(BASE, env={"MCP_CONNECTOR_LEADER_ELECT_IDENTITY": "pod-b"})
    assert (e := config.leader_election(from_env)) is not None and e.identity == "pod-b"


def test_unsafe_durations_and_bad_names_are_refused_by_flag() -> None:
    text = _problems(
        "--leader-elect-lease-duration-seconds",
        "10",
        "--leader-elect-renew-deadline-seconds",
        "10",
        "--leader-elect-lease-name",
        "Not_A_Name",
        "--leader-elect",
        "maybe",
        "--shutdown-delay-seconds",
        "-1",
    )
    assert "--leader-elect-lease-duration-seconds: must be longer than the renew deadline" in text
    assert "--leader-elect-lease-name: 'Not_A_Name' is not a valid name" in text
    assert "--leader-elect: 'maybe' is not true or false" in text
    assert "--shutdown-delay-seconds" in text
    text = _problems("--leader-elect-retry-period-seconds", "9")
    assert "--leader-elect-renew-deadline-seconds: must be longer than 1.2 x the retry period" in text
    assert "--leader-elect-retry-period-seconds: 'x' is not a number" in _problems(
        "--leader-elect-retry-period-seconds", "x"
    )


async def test_readyz_fails_once_stopping_while_livez_holds() -> None:
    rt = Runtime(None, None, None, "", "c", "ns", None, catalog_loaded=True)  # type: ignore[arg-type]
    health = Health(rt)
    assert await health.check("/readyz") == (True, "ok")
    rt.stopping = True
    assert await health.check("/readyz") == (False, "not ready: shutting down")
    assert await health.check("/livez") == (True, "ok")


async def test_a_passed_through_watch_ends_cleanly_when_draining() -> None:
    stop = asyncio.Event()
    delivered: list[int] = []

    async def events() -> AsyncIterator[dict[str, Any]]:
        for n in range(3):
            yield {"n": n}
        await asyncio.Event().wait()  # a quiet watch: nothing more comes

    async def consume() -> None:
        async for event in until(events(), stop):
            delivered.append(event["n"])

    task = asyncio.create_task(consume())
    for _ in range(20):
        await asyncio.sleep(0)
    assert delivered == [0, 1, 2] and not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert delivered == [0, 1, 2]
