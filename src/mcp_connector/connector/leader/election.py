"""The elector: acquire the Lease, renew it, lose it, release it (client-go's LeaderElector).

A small state machine, CANDIDATE -> LEADING -> CANDIDATE ... -> STOPPED:

* CANDIDATE: every ``retry_period`` (jittered) read the Lease; take it when it is free (no
  holder, or not renewed for a lease duration *as this replica observed it*), writing it at the
  resourceVersion read so that of two candidates only one succeeds. A candidate that saw a
  held lease reads again at the latest the moment that lease runs out (its own clock), so a
  takeover comes a lease duration after it last saw the record change, not a retry later.
  Meanwhile it watches the Lease, so it sees each renewal as it is written, not up to a
  jittered retry period later: a takeover then comes a lease duration after the dead leader's
  last renewal as this replica saw it, which is within a lease duration of the death.
* LEADING: renew every ``retry_period``. Leadership ends the moment the Lease shows another
  holder, or when no renewal succeeded for ``renew_deadline`` (a hung call is abandoned at the
  deadline, not awaited). The renew deadline is shorter than the lease duration, so a leader
  cut off from the app cluster stops its writers before any other replica may take over.
* STOPPED: on ``stop()`` a leader stops its writers, then releases the Lease (no holder,
  duration 1 s), so the next leader need not wait out the lease.

What runs while leading is given as two callbacks, called synchronously at the transitions:
``started`` starts the writers; ``stopped`` must stop them at once (cancel, not await).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from mcp_connector.connector.leader.clock import Clock, Expired, SystemClock, within
from mcp_connector.connector.leader.lock import LeaseConflict, LeaseMissing, Lock, LockError, Observed
from mcp_connector.connector.leader.record import LeaderRecord
from mcp_connector.connector.logs import fields
from mcp_connector.connector.metrics import LEADER_STATUS, LEADER_TRANSITIONS

log = logging.getLogger(__name__)

#: client-go's JitterFactor: a candidate waits retry_period to 2.2 x retry_period between tries.
JITTER = 1.2


@dataclass(frozen=True)
class Timing:
    """The three durations, in seconds (client-go's defaults)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        """What makes these durations unsafe, as client-go's NewLeaderElector checks them."""
        found = []
        if self.lease_duration <= self.renew_deadline:
            found.append("the lease duration must be longer than the renew deadline")
        if self.renew_deadline <= JITTER * self.retry_period:
            found.append(f"the renew deadline must be longer than {JITTER:g} x the retry period")
        if self.retry_period <= 0:
            found.append("the retry period must be positive")
        return found


class State(enum.Enum):
    """Where the elector is."""

    CANDIDATE = "candidate"
    LEADING = "leading"
    STOPPED = "stopped"


class _Outcome(enum.Enum):
    HELD = "held"  # we hold the Lease now
    TAKEN = "taken"  # another replica holds a valid Lease
    FAILED = "failed"  # the call failed or lost a race; try again


class Elector:
    """One replica's side of the election."""

    def __init__(
        self,
        lock: Lock,
        identity: str,
        *,
        timing: Timing = Timing(),
        clock: Clock | None = None,
        started: Callable[[], None] = lambda: None,
        stopped: Callable[[], None] = lambda: None,
        new_leader: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.lock = lock
        self.identity = identity
        self.timing = timing
        self._clock = clock or SystemClock()
        self._started = started
        self._stopped = stopped
        self._new_leader = new_leader
        self.state = State.CANDIDATE
        #: The holder last seen in the Lease ("" for none).
        self.leader = ""
        self._observed: Observed | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._stop = asyncio.Event()

    @property
    def leading(self) -> bool:
        """True while this replica may write."""
        return self.state is State.LEADING

    def stop(self) -> None:
        """Ask ``run`` to end: a leader stops its writers and releases the Lease."""
        self._stop.set()

    async def run(self) -> None:
        """Elect until ``stop()``; release the Lease on the way out if held."""
        LEADER_STATUS.labels(self.lock.describe()).set(0)
        log.info("leader election started", extra=fields(lease=self.lock.describe(), identity=self.identity))
        try:
            while not self._stop.is_set():
                if await self._acquire():
                    self._lead()
                    await self._renew()
                    self._follow("the renew deadline passed or another replica holds the lease")
        finally:
            was_leading = self.leading
            self._follow("stopping")
            self.state = State.STOPPED
            if was_leading or (self._observed is not None and self._observed.record.holder == self.identity):
                await self._release()

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` on the clock, or less if stop() is called."""
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await within(self._clock, seconds, stopping)
        except Expired:
            pass
        finally:
            stopping.cancel()

    async def _acquire(self) -> bool:
        """Try every jittered retry period until the Lease is ours (True) or stop() (False)."""
        watching = asyncio.ensure_future(self._follow_changes())
        try:
            return await self._try_until_held()
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    async def _follow_changes(self) -> None:
        """While a candidate: observe each change of the Lease as the watch brings it.

        Only the observation time moves (``_observe``); taking the Lease is still decided by a
        read and a write at the version read. A watch that fails is opened again a retry period
        later, from the version last observed.
        """
        while not self._stop.is_set():
            if self._observed is not None and self._observed.resource_version:
                try:
                    async for seen in self.lock.changes(self._observed.resource_version):
                        if not self.leading:
                            self._observe(seen)
                except LockError as e:
                    log.debug("leader lease watch ended", extra=fields(lease=self.lock.describe(), error=str(e)))
            await self._wait(self.timing.retry_period)

    async def _try_until_held(self) -> bool:
        while not self._stop.is_set():
            started = self._clock.monotonic()
            stopping = asyncio.ensure_future(self._stop.wait())
            attempt = asyncio.ensure_future(within(self._clock, self.timing.renew_deadline, self._try()))
            try:
                await asyncio.wait((attempt, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                attempt.cancel()
            outcome = _Outcome.FAILED
            if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
                outcome = attempt.result()
            else:
                await asyncio.gather(attempt, return_exceptions=True)
            if outcome is _Outcome.HELD:
                self._renewed_at = started
                return True
            period = self.timing.retry_period
            pause = period + random.uniform(0, JITTER * period)
            expires, now = self._expiry(), self._clock.monotonic()
            if expires is not None and expires > now:
                # Try again the moment the lease we saw runs out, not up to a jittered period later
                # (once it has run out, a failed try waits the whole period: no spinning).
                pause = min(pause, expires - now)
            await self._wait(pause)
        return False

    def _expiry(self) -> float | None:
        """When, on our monotonic clock, the lease another replica holds runs out if not renewed.

        Counted from when *this* replica saw the record change (client-go's observedTime), never
        from the holder's ``renewTime``: another host's wall clock is never compared with ours.
        """
        if self._observed is None or not self._observed.record.holder or self._observed.record.holder == self.identity:
            return None
        return self._observed_at + self._observed.record.lease_duration_seconds

    async def _renew(self) -> None:
        """Renew every retry period until stop(), another holder, or the renew deadline."""
        pause = self.timing.retry_period
        while True:
            await self._wait(pause)
            if self._stop.is_set():
                return
            remaining = self._renewed_at + self.timing.renew_deadline - self._clock.monotonic()
            if remaining <= 0:
                log.warning("leader lease not renewed within the renew deadline", extra=self._fields())
                return
            started = self._clock.monotonic()
            try:
                outcome = await within(self._clock, remaining, self._try())
            except Expired:
                log.warning("leader lease renewal hung past the renew deadline", extra=self._fields())
                return
            if outcome is _Outcome.TAKEN:
                return
            if outcome is _Outcome.HELD:
                self._renewed_at = started
                pause = self.timing.retry_period
            else:
                left = self._renewed_at + self.timing.renew_deadline - self._clock.monotonic()
                pause = min(self.timing.retry_period, max(0.0, left))

    def _lead(self) -> None:
        self.state = State.LEADING
        LEADER_STATUS.labels(self.lock.describe()).set(1)
        LEADER_TRANSITIONS.labels(self.lock.describe(), "acquired").inc()
        log.info("became leader", extra=self._fields())
        self._started()

    def _follow(self, why: str) -> None:
        if self.state is State.LEADING:
            self.state = State.CANDIDATE
            self._stopped()
            LEADER_STATUS.labels(self.lock.describe()).set(0)
            LEADER_TRANSITIONS.labels(self.lock.describe(), "lost").inc()
            log.warning("stopped leading", extra=self._fields(reason=why))

    def _fields(self, **extra: object) -> dict[str, dict[str, object]]:
        return fields(lease=self.lock.describe(), identity=self.identity, **extra)

    def _observe(self, observed: Observed) -> None:
        if self._observed is None or observed.record != self._observed.record:
            self._observed_at = self._clock.monotonic()
        self._observed = observed
        if observed.record.holder != self.leader:
            self.leader = observed.record.holder
            if self.leader:
                log.info("leader is", extra=fields(lease=self.lock.describe(), leader=self.leader))
            self._new_leader(self.leader)

    def _record(self, current: LeaderRecord | None) -> LeaderRecord:
        now = self._clock.wall()
        duration = max(1, round(self.timing.lease_duration))
        if current is not None and current.holder == self.identity:
            return LeaderRecord(self.identity, duration, current.acquire_time or now, now, current.transitions)
        transitions = current.transitions + 1 if current is not None else 0
        return LeaderRecord(self.identity, duration, now, now, transitions)

    async def _try(self) -> _Outcome:
        """One tryAcquireOrRenew: read, decide, write at the version read."""
        try:
            try:
                current = await self.lock.get()
            except LeaseMissing:
                self._observe(await self.lock.create(self._record(None)))
                return _Outcome.HELD
            self._observe(current)
            record = current.record
            if record.holder and record.holder != self.identity:
                if self.leading:
                    log.warning("another replica holds the leader lease", extra=fields(leader=record.holder))
                    return _Outcome.TAKEN
                expires = self._expiry()
                if expires is not None and self._clock.monotonic() < expires:
                    return _Outcome.TAKEN
            elif not record.holder and self.leading:
                return _Outcome.TAKEN  # released by someone who thought it theirs: start over
            self._observe(await self.lock.update(self._record(record), resource_version=current.resource_version))
            return _Outcome.HELD
        except LeaseConflict:
            return _Outcome.FAILED
        except LockError as e:
            log.warning("leader lease call failed", extra=fields(lease=self.lock.describe(), error=str(e)))
            return _Outcome.FAILED

    async def _release(self) -> None:
        """Give the Lease up: no holder, a 1 s duration (client-go's release)."""
        try:
            current = await within(self._clock, self.timing.retry_period, self.lock.get())
            if current.record.holder != self.identity:
                return
            now = self._clock.wall()
            released = LeaderRecord("", 1, now, now, current.record.transitions)
            await within(
                self._clock,
                self.timing.retry_period,
                self.lock.update(released, resource_version=current.resource_version),
            )
            log.info("released the leader lease", extra=self._fields())
        except (LockError, Expired) as e:
            log.warning(
                "leader lease not released", extra=fields(lease=self.lock.describe(), error=str(e) or "timed out")
            )
