"""Freshness proofs shared by the consistent reads of one scope, as kube-apiserver batches them.

A consistent read (no resourceVersion) may be answered from the cache only once the cache is
shown to hold the control plane's current state of what it reads: one control-plane read, the
proof (serving.py). kube-apiserver's cacher does the same against etcd (consistent reads from
cache: the current revision from storage, then a wait for the watch cache to reach it) and
batches the watch-progress requests of every read waiting meanwhile into one. Here: one proof
per scope (an object, a namespace, the cluster) is in flight at a time; reads that arrive while
it is in flight cannot use it (it may have read the control plane before they arrived, and
would miss a write they had seen complete), so they wait for the next one, which starts when
the first ends and serves all of them. At 16 clients reading the same scope, about two reads
share a proof, and the control plane sees a bounded rate of proofs however many clients read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from mcp_connector.connector.metrics import CACHE_PROOF_READS, CACHE_PROOF_REQUESTS

T = TypeVar("T")
#: How long a scope whose proof did not hold goes to the control plane without proving.
MISS_SECONDS = 1.0
_MISSES_KEPT = 1024


class _Scope(Generic[T]):
    """The proof in flight for one scope and the one that starts after it, if anyone waits."""

    __slots__ = ("next", "next_read", "running")

    def __init__(self) -> None:
        self.running: asyncio.Future[T] | None = None
        self.next: asyncio.Future[T] | None = None
        self.next_read: Callable[[], Awaitable[T]] | None = None


class Proofs(Generic[T]):
    """One cache's shared proofs, by scope key."""

    def __init__(self) -> None:
        self._scopes: dict[Hashable, _Scope[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._missed: dict[Hashable, float] = {}
        #: Control-plane reads made as proofs, and the consistent reads that waited for one.
        self.reads = 0
        self.requests = 0

    async def proof(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The result of a proof that started after this call: ``read`` run now, or shared.

        ``read`` is run at most once per proof, by whichever caller starts it; its error is
        every sharer's. A caller that gives up (cancelled) leaves the proof to the others.
        """
        self.requests += 1
        CACHE_PROOF_REQUESTS.inc()
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        if scope.running is None:
            future = self._start(key, scope, read, asyncio.get_running_loop().create_future())
        else:
            if scope.next is None:
                scope.next = asyncio.get_running_loop().create_future()
                scope.next_read = read
            future = scope.next
        return await asyncio.shield(future)

    def _start(
        self, key: Hashable, scope: _Scope[T], read: Callable[[], Awaitable[T]], future: asyncio.Future[T]
    ) -> asyncio.Future[T]:
        scope.running = future
        future.add_done_callback(_retrieved)
        task = asyncio.create_task(self._run(key, scope, read, future), name="cache freshness proof")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _run(
        self, key: Hashable, scope: _Scope[T], read: Callable[[], Awaitable[T]], future: asyncio.Future[T]
    ) -> None:
        self.reads += 1
        CACHE_PROOF_READS.inc()
        try:
            future.set_result(await read())
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:
            future.set_exception(e)
        finally:
            scope.running = None
            if scope.next is not None and scope.next_read is not None:
                following, following_read = scope.next, scope.next_read
                scope.next = scope.next_read = None
                self._start(key, scope, following_read, following)
            elif self._scopes.get(key) is scope:
                del self._scopes[key]

    def missed(self, key: Hashable) -> None:
        """A proof for ``key`` did not hold in time (the cache was behind the control plane)."""
        self._missed[key] = time.monotonic()
        if len(self._missed) > _MISSES_KEPT:
            self._missed.pop(next(iter(self._missed)))

    def worth_proving(self, key: Hashable) -> bool:
        """False within ``MISS_SECONDS`` of a proof for ``key`` that did not hold.

        Then a proof costs as much as the answer and more (the control plane is read twice, and
        the reader waits for the cache in between): the read goes to the control plane directly
        until the cache had time to catch up.
        """
        at = self._missed.get(key)
        return at is None or time.monotonic() - at >= MISS_SECONDS

    def in_flight(self, key: Hashable) -> bool:
        """True while a proof for ``key`` runs (a read arriving now would wait for the next)."""
        scope = self._scopes.get(key)
        return scope is not None and scope.running is not None


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark an error as seen: every sharer may have given up before it came."""
    if not future.cancelled():
        future.exception()
