"""Issue 23: concurrent consistent reads of one scope share their freshness proof (cache/proofs.py).

A read that arrives while a proof is in flight waits for the next one (the one in flight may
predate it); every read waiting then shares that next proof, so 16 readers cost about two proofs
per round, not 16.
"""

from __future__ import annotations

import asyncio

import pytest

from mcp_connector.connector.cache.proofs import Proofs


async def settle() -> None:
    """Let every ready task run (each proof runs in a task of its own)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Reads:
    """A control plane whose reads are released by the test, numbered as made."""

    def __init__(self) -> None:
        self.made = 0
        self.release = asyncio.Event()

    async def read(self) -> int:
        self.made += 1
        number = self.made
        await self.release.wait()
        return number


async def test_reads_arriving_during_a_proof_share_the_next_one() -> None:
    proofs: Proofs[int] = Proofs()
    reads = Reads()
    first = asyncio.create_task(proofs.proof("scope", reads.read))
    await settle()
    assert proofs.in_flight("scope") and reads.made == 1
    later = [asyncio.create_task(proofs.proof("scope", reads.read)) for _ in range(15)]
    await settle()
    assert reads.made == 1  # the fifteen wait for the next proof, none started its own
    reads.release.set()
    results = await asyncio.gather(first, *later)
    assert results == [1] + [2] * 15  # every later read got a proof that started after it arrived
    assert proofs.reads == 2 and proofs.requests == 16
    assert not proofs.in_flight("scope")


async def test_scopes_do_not_share() -> None:
    proofs: Proofs[int] = Proofs()
    reads = Reads()
    reads.release.set()
    assert sorted(await asyncio.gather(proofs.proof("a", reads.read), proofs.proof("b", reads.read))) == [1, 2]


async def test_an_error_is_every_sharers_and_the_next_proof_still_runs() -> None:
    proofs: Proofs[int] = Proofs()
    gate = asyncio.Event()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 1:
            raise ConnectionError("control plane gone")
        return calls

    first = asyncio.create_task(proofs.proof("s", failing))
    await settle()
    second = asyncio.create_task(proofs.proof("s", failing))
    third = asyncio.create_task(proofs.proof("s", failing))
    gate.set()
    with pytest.raises(ConnectionError):
        await first
    assert await second == 2 and await third == 2


async def test_a_sharer_that_gives_up_leaves_the_proof_to_the_others() -> None:
    proofs: Proofs[int] = Proofs()
    reads = Reads()
    starter = asyncio.create_task(proofs.proof("s", reads.read))
    await settle()
    quitter = asyncio.create_task(proofs.proof("s", reads.read))
    stayer = asyncio.create_task(proofs.proof("s", reads.read))
    await settle()
    starter.cancel()
    quitter.cancel()
    reads.release.set()
    assert await stayer == 2
    assert starter.cancelled() and quitter.cancelled()


def test_a_scope_whose_proof_did_not_hold_skips_proving_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    proofs: Proofs[int] = Proofs()
    now = [100.0]
    monkeypatch.setattr("mcp_connector.connector.cache.proofs.time.monotonic", lambda: now[0])
    assert proofs.worth_proving("s")
    proofs.missed("s")
    assert not proofs.worth_proving("s") and proofs.worth_proving("other")
    now[0] += 1.0
    assert proofs.worth_proving("s")
