"""The leader election state machine against a fake clock and an in-memory Lease.

The Lease store refuses an update at a stale resourceVersion (409) as kube-apiserver does; a
replica's "network" can hang (partition) or die with it (SIGKILL). Time only moves when the
test moves it, so every bound below is checked exactly, not raced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import heapq
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from mcp_connector.connector.leader import election
from mcp_connector.connector.leader.election import JITTER, Elector, State, Timing
from mcp_connector.connector.leader.leading import LeaderTasks
from mcp_connector.connector.leader.lock import LeaseConflict, LeaseMissing, LockError, Observed
from mcp_connector.connector.leader.record import LeaderRecord, micro_time, parse_micro_time, record_of
from mcp_connector.connector.metrics import LEADER_STATUS

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
TIMING = Timing()


class FakeClock:
    """Virtual time shared by every replica; each replica's wall clock may be skewed."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def view(self, skew: float = 0.0) -> ClockView:
        return ClockView(self, skew)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, *, each: Callable[[], None] = lambda: None) -> None:
        """Move time forward, waking sleepers in order; ``each`` runs after every wake-up."""
        target = self.now + seconds
        await self.settle()
        each()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, wake)
            future.set_result(None)
            await self.settle()
            each()
        self.now = target
        await self.settle()
        each()


@dataclasses.dataclass
class ClockView:
    base: FakeClock
    skew: float

    def monotonic(self) -> float:
        return self.base.now

    def wall(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.base.now + self.skew)

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)


class Leases:
    """One Lease in memory, with resourceVersions and 409s as kube-apiserver gives them."""

    def __init__(self) -> None:
        self.record: LeaderRecord | None = None
        self.version = 0
        self.writes: list[str] = []
        #: One queue per open watch; every write is put on each.
        self.watches: list[asyncio.Queue[Observed]] = []

    def _observed(self) -> Observed:
        assert self.record is not None
        return Observed(self.record, str(self.version))

    def _written(self, record: LeaderRecord) -> Observed:
        self.record, self.version = record, self.version + 1
        self.writes.append(record.holder)
        for queue in self.watches:
            queue.put_nowait(self._observed())
        return self._observed()


class FakeLock:
    """One replica's way to the Lease; ``hang`` is a partition, ``fail`` an apiserver refusing it."""

    def __init__(self, leases: Leases, clock: FakeClock | None = None) -> None:
        self.leases = leases
        self.hang = False
        self.fail = False
        #: False: the watch delivers nothing (the candidate learns only by reading).
        self.watch = True
        self.clock = clock
        #: (virtual time, version) of every read that returned.
        self.reads: list[tuple[float, int]] = []

    def describe(self) -> str:
        return "kube-system/mcp-connector-test"

    async def _net(self) -> None:
        await asyncio.sleep(0)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise LockError("Lease kube-system/mcp-connector-test: HTTP 500")

    async def get(self) -> Observed:
        await self._net()
        if self.leases.record is None:
            raise LeaseMissing("missing")
        self.reads.append((self.clock.now if self.clock else 0.0, self.leases.version))
        return self.leases._observed()

    async def create(self, record: LeaderRecord) -> Observed:
        await self._net()
        if self.leases.record is not None:
            raise LeaseConflict("exists")
        return self.leases._written(record)

    async def update(self, record: LeaderRecord, *, resource_version: str) -> Observed:
        await self._net()
        if self.leases.record is None:
            raise LeaseMissing("missing")
        if resource_version != str(self.leases.version):
            raise LeaseConflict("stale")
        return self.leases._written(record)

    async def changes(self, resource_version: str) -> AsyncIterator[Observed]:
        await self._net()
        if not self.watch:
            await asyncio.Event().wait()  # a replica whose watch never delivers: polling alone
        queue: asyncio.Queue[Observed] = asyncio.Queue()
        self.leases.watches.append(queue)
        try:
            while True:
                seen = await queue.get()
                if self.hang:
                    await asyncio.Event().wait()
                self.reads.append((self.clock.now if self.clock else 0.0, int(seen.resource_version)))
                yield seen
        finally:
            self.leases.watches.remove(queue)


@dataclasses.dataclass
class Replica:
    name: str
    elector: Elector
    lock: FakeLock
    task: asyncio.Task[None]
    #: (virtual time, "started" | "stopped") for every change of leadership.
    changes: list[tuple[float, str]]

    def kill(self) -> None:
        """SIGKILL: its network is gone and it runs no more (no release)."""
        self.lock.hang = True
        self.task.cancel()


def start(name: str, leases: Leases, clock: FakeClock, *, skew: float = 0.0, timing: Timing = TIMING) -> Replica:
    changes: list[tuple[float, str]] = []
    lock = FakeLock(leases, clock)
    elector = Elector(
        lock,
        name,
        timing=timing,
        clock=clock.view(skew),
        started=lambda: changes.append((clock.now, "started")),
        stopped=lambda: changes.append((clock.now, "stopped")),
    )
    return Replica(name, elector, lock, asyncio.create_task(elector.run()), changes)


def leaders(*replicas: Replica) -> list[str]:
    return [r.name for r in replicas if r.elector.leading]


def at_most_one(*replicas: Replica) -> Callable[[], None]:
    def check() -> None:
        assert len(leaders(*replicas)) <= 1, leaders(*replicas)

    return check


async def stop_all(clock: FakeClock, *replicas: Replica) -> None:
    for r in replicas:
        r.elector.stop()
    await clock.advance(2 * TIMING.retry_period)
    for r in replicas:
        if not r.task.done():
            r.task.cancel()
    await asyncio.gather(*(r.task for r in replicas), return_exceptions=True)


async def test_a_lone_replica_creates_the_lease_and_renews_it() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(0)
    assert a.elector.leading and a.changes == [(0.0, "started")]
    assert leases.record is not None and leases.record.holder == "a"
    assert leases.record.transitions == 0 and leases.record.lease_duration_seconds == 15
    acquired = leases.record.acquire_time
    assert LEADER_STATUS.labels("kube-system/mcp-connector-test")._value.get() == 1
    await clock.advance(30)
    # Renewed every retry period; acquireTime kept, renewTime moving with the (wall) clock.
    assert leases.writes.count("a") == 1 + 15
    assert leases.record.acquire_time == acquired
    assert leases.record.renew_time == EPOCH + datetime.timedelta(seconds=30)
    await stop_all(clock, a)
    assert a.changes[-1][1] == "stopped" and a.elector.state is State.STOPPED
    assert LEADER_STATUS.labels("kube-system/mcp-connector-test")._value.get() == 0


async def test_two_replicas_one_leader_at_any_moment() -> None:
    clock, leases = FakeClock(), Leases()
    a, b = start("a", leases, clock), start("b", leases, clock)
    check = at_most_one(a, b)
    await clock.advance(120, each=check)
    assert len(leaders(a, b)) == 1
    winner = leaders(a, b)[0]
    assert set(leases.writes) == {winner}  # the other never wrote the Lease: it was never free
    await stop_all(clock, a, b)


async def test_a_killed_leader_is_replaced_within_one_lease_duration() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(1)
    b = start("b", leases, clock)
    await clock.advance(20, each=at_most_one(a, b))
    assert leaders(a, b) == ["a"]
    last_renewal = clock.now - (clock.now % TIMING.retry_period) - 1  # a renews at 0, 2, 4, ... (started at 0)
    a.kill()
    await clock.advance(
        TIMING.lease_duration + JITTER * TIMING.retry_period + TIMING.retry_period, each=at_most_one(a, b)
    )
    assert leaders(a, b) == ["b"]
    taken = b.changes[0][0]
    # b saw the last renewal at most one retry period (plus jitter) after it was written, and
    # waits a whole lease duration from then: never sooner, and soon after.
    assert taken >= last_renewal + TIMING.lease_duration
    assert taken <= last_renewal + TIMING.lease_duration + 2 * (1 + JITTER) * TIMING.retry_period
    assert leases.record is not None and leases.record.transitions == 1
    await stop_all(clock, a, b)


#: Where in the leader's 2 s renew cycle it is killed (seconds after a renewal is due).
DEATHS_IN_THE_RENEW_CYCLE = (0.0, 0.3, 0.9, 1.5, 1.99)


@dataclasses.dataclass
class Takeover:
    clock: FakeClock
    a: Replica
    b: Replica
    #: When the leader was killed, the Lease's version it last wrote, and when b took over.
    killed: float
    last_version: int
    taken: float


async def takeover_after_killing_the_leader(offset: float, *, watch: bool = True) -> Takeover:
    """a leads, b waits (watching the Lease or not); a is SIGKILLed ``offset`` into a renew cycle."""
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(1)
    b = start("b", leases, clock)
    b.lock.watch = watch
    await clock.advance(20 + offset, each=at_most_one(a, b))
    assert leaders(a, b) == ["a"]
    a.kill()
    killed, last = clock.now, leases.version
    await clock.advance(TIMING.lease_duration + (1 + JITTER) * TIMING.retry_period + 1, each=at_most_one(a, b))
    assert leaders(a, b) == ["b"]
    return Takeover(clock, a, b, killed, last, b.changes[0][0])


async def test_a_candidate_takes_over_the_moment_the_lease_it_saw_runs_out() -> None:
    """Not a retry period later: the takeover is exactly one lease duration after the candidate
    first read the dead leader's last renewal (its own clock), whenever in the cycle the leader died."""
    for offset in DEATHS_IN_THE_RENEW_CYCLE:
        t = await takeover_after_killing_the_leader(offset)
        seen = min(at for at, version in t.b.lock.reads if version == t.last_version)
        assert t.taken == pytest.approx(seen + TIMING.lease_duration), (offset, seen, t.taken)
        # So from the death: at most the candidate's read period late, at most a renew period early.
        assert TIMING.lease_duration - TIMING.retry_period <= t.taken - t.killed
        assert t.taken - t.killed <= TIMING.lease_duration + (1 + JITTER) * TIMING.retry_period
        await stop_all(t.clock, t.a, t.b)


async def test_a_watching_candidate_takes_over_within_one_lease_duration_of_the_death(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watch shows each renewal as it is written, so the lease runs out (on the candidate's
    clock) a lease duration after the dead leader's last renewal: never later than a lease
    duration after the death, never sooner than that less one renew period. Without the watch
    (reads only) the read lag can push it past a lease duration: shown with the longest jitter."""
    monkeypatch.setattr(election.random, "uniform", lambda low, high: high)
    late = []
    for watch in (True, False):
        for offset in DEATHS_IN_THE_RENEW_CYCLE:
            t = await takeover_after_killing_the_leader(offset, watch=watch)
            after = t.taken - t.killed
            assert after >= TIMING.lease_duration - TIMING.retry_period, (watch, offset, after)
            if watch:
                assert after <= TIMING.lease_duration, (offset, after)
            else:
                late.append(after > TIMING.lease_duration)
            await stop_all(t.clock, t.a, t.b)
    assert any(late), "polling alone sometimes takes over later than a lease duration after the death"


async def test_a_candidate_that_cannot_reach_the_lease_after_it_ran_out_does_not_spin() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(1)
    b = start("b", leases, clock)
    await clock.advance(10)
    a.kill()
    await clock.advance(TIMING.lease_duration - 1)
    b.lock.fail = True  # the apiserver refuses b's reads from before the lease runs out
    before = len(leases.writes)
    tries: list[float] = []
    real_get = b.lock.get

    async def counted() -> Observed:
        tries.append(clock.now)
        return await real_get()

    b.lock.get = counted  # type: ignore[method-assign]
    await clock.advance(30)
    assert len(tries) <= 30 / TIMING.retry_period + 1, tries
    assert len(leases.writes) == before and not b.elector.leading
    b.lock.fail = False
    await clock.advance((1 + JITTER) * TIMING.retry_period)
    assert b.elector.leading
    await stop_all(clock, a, b)


async def test_a_partitioned_leader_stops_writing_before_anyone_takes_over() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(1)
    b = start("b", leases, clock)
    await clock.advance(9, each=at_most_one(a, b))
    assert leaders(a, b) == ["a"]
    a.lock.hang = True  # every call from a now hangs, as behind a dead link
    cut = clock.now
    await clock.advance(30, each=at_most_one(a, b))
    stopped = next(t for t, what in a.changes if what == "stopped")
    started = b.changes[0][0]
    assert stopped <= cut + TIMING.renew_deadline  # by its own clock, within the renew deadline
    assert started - stopped >= TIMING.lease_duration - TIMING.renew_deadline  # the margin held
    a.lock.hang = False
    await clock.advance(30, each=at_most_one(a, b))
    assert leaders(a, b) == ["b"]  # back on the network, a finds b holding the Lease and stays a candidate
    await stop_all(clock, a, b)


async def test_a_refused_renewal_ends_leadership_at_the_renew_deadline() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(3)
    a.lock.fail = True
    failed_at = clock.now
    await clock.advance(TIMING.renew_deadline + 1)
    assert not a.elector.leading
    stopped = a.changes[-1][0]
    assert failed_at - TIMING.retry_period < stopped - TIMING.renew_deadline <= failed_at
    await stop_all(clock, a)


async def test_a_leader_that_sees_another_holder_stops_at_once() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(1)
    assert leases.record is not None
    leases.record = dataclasses.replace(leases.record, holder="intruder")
    leases.version += 1
    await clock.advance(TIMING.retry_period)
    assert not a.elector.leading
    assert a.changes[-1] == (2.0, "stopped")
    await stop_all(clock, a)


async def test_stop_releases_the_lease_and_the_next_replica_takes_it_at_once() -> None:
    clock, leases = FakeClock(), Leases()
    a = start("a", leases, clock)
    await clock.advance(1)
    b = start("b", leases, clock)
    await clock.advance(10)
    a.elector.stop()
    await clock.advance(0)
    assert leases.record is not None and leases.record.holder == "" and leases.record.lease_duration_seconds == 1
    stopped = clock.now
    await clock.advance(5, each=at_most_one(a, b))
    assert b.elector.leading
    assert b.changes[0][0] - stopped <= (1 + JITTER) * TIMING.retry_period
    assert leases.record.transitions == 1
    await stop_all(clock, b)


async def test_wall_clock_skew_neither_hastens_nor_delays_a_takeover() -> None:
    """Expiry is measured on each replica's own monotonic clock from when it saw a change."""
    for skew in (3600.0, -3600.0):
        clock, leases = FakeClock(), Leases()
        a = start("a", leases, clock)
        await clock.advance(1)
        b = start("b", leases, clock, skew=skew)
        await clock.advance(60, each=at_most_one(a, b))
        assert leaders(a, b) == ["a"]
        a.kill()
        killed = clock.now
        await clock.advance(30, each=at_most_one(a, b))
        assert leaders(a, b) == ["b"]
        assert b.changes[0][0] - killed >= TIMING.lease_duration - TIMING.retry_period
        await stop_all(clock, a, b)


async def test_two_candidates_racing_for_a_free_lease_one_wins() -> None:
    clock, leases = FakeClock(), Leases()
    now = EPOCH
    leases.record, leases.version = LeaderRecord("", 1, now, now, 4), 7
    replicas = [start(name, leases, clock) for name in "abcd"]
    await clock.advance(30, each=at_most_one(*replicas))
    assert len(leaders(*replicas)) == 1
    assert leases.record.transitions == 5
    await stop_all(clock, *replicas)


async def test_leader_tasks_run_only_while_leading() -> None:
    clock, leases = FakeClock(), Leases()
    tasks = LeaderTasks()
    ticks: list[float] = []
    starts: list[float] = []

    async def writer() -> None:
        while True:
            ticks.append(clock.now)
            await clock.sleep(1)

    tasks.add("writer", writer)
    tasks.on_start(lambda: starts.append(clock.now))
    lock = FakeLock(leases)
    elector = Elector(lock, "a", clock=clock.view(), started=tasks.start, stopped=tasks.stop)
    run = asyncio.create_task(elector.run())
    await clock.advance(5)
    assert tasks.running and starts == [0.0]
    lock.hang = True
    await clock.advance(20)
    assert not tasks.running
    stopped_at = max(ticks)
    assert stopped_at <= 4 + TIMING.renew_deadline  # last renewal at 4: the writers are gone by 14
    await clock.advance(30)
    assert max(ticks) == stopped_at  # no writer step after leadership ended
    await tasks.drain()
    elector.stop()
    await clock.advance(2 * TIMING.retry_period)
    await run


def test_timing_checks_as_client_go() -> None:
    assert Timing().problems() == []
    assert Timing(lease_duration=10, renew_deadline=10).problems() == [
        "the lease duration must be longer than the renew deadline"
    ]
    assert Timing(renew_deadline=2.4, retry_period=2).problems() == [
        "the renew deadline must be longer than 1.2 x the retry period"
    ]


def test_record_round_trips_through_the_lease_json() -> None:
    when = datetime.datetime(2026, 12, 6, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    record = LeaderRecord("pod-a", 15, when, when, 3)
    assert record.spec()["renewTime"] == "2026-12-06T03:04:05.123456Z" == micro_time(when)
    assert record_of({"spec": record.spec()}) == record
    assert record_of({}) == LeaderRecord("", 0, None, None, 0)
    assert parse_micro_time("2026-12-06T03:04:05Z") == when.replace(microsecond=0)
    assert parse_micro_time("yesterday") is None


@pytest.fixture(autouse=True)
def _quiet_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the jitter but make it reproducible."""
    import random

    rng = random.Random(19)
    monkeypatch.setattr("mcp_connector.connector.leader.election.random", rng)
