"""Which path answers a consistent LIST sooner: a freshness proof and the cache, or the control plane.

A consistent GET's proof is a few hundred bytes (serving.py), always cheaper than the object. A
consistent LIST's proof is the scope's metadata list, which for claims with large annotations
costs nearly as much as the list itself; proving and then answering from the cache can then
take longer than letting the control plane answer. Under concurrency the proof is shared and
wins (serving.py proves whenever another read of the scope is proving); for a lone read which
one wins depends on the scope's size and shape and on the control plane's load, so it is
measured, per scope and selection, as it goes: each path keeps a moving average of how long its
lone answers took, the faster one answers, and one read in ``EXPLORE_EVERY`` takes the other
path so a change in either is noticed.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

#: One read in this many takes the path that is not the faster one, to keep its time current.
EXPLORE_EVERY = 16
#: The weight of the newest sample in a path's moving average.
WEIGHT = 0.25
#: Scopes (namespace and selection) remembered, least recently used dropped first.
SCOPES_KEPT = 1024


class Path(enum.Enum):
    """The two ways to answer a consistent LIST."""

    CACHE = "cache"  # prove the cache current, then answer from it
    CONTROL_PLANE = "control plane"  # read the control plane and translate its answer


@dataclass(slots=True)
class _Costs:
    """Moving averages of one scope's answer times, by path, and the reads since the last exploration."""

    seconds: dict[Path, float] = field(default_factory=dict)
    reads: int = 0

    def faster(self) -> Path:
        cache, direct = self.seconds.get(Path.CACHE), self.seconds.get(Path.CONTROL_PLANE)
        if cache is None:
            return Path.CACHE
        if direct is None:
            return Path.CONTROL_PLANE
        return Path.CACHE if cache <= direct else Path.CONTROL_PLANE


class Paths:
    """One cache's measured answer times of consistent LISTs, by scope."""

    def __init__(self) -> None:
        self._scopes: OrderedDict[Hashable, _Costs] = OrderedDict()

    def choose(self, scope: Hashable) -> Path:
        """The path for the next consistent LIST of ``scope``: the faster, or now and then the other."""
        costs = self._scopes.get(scope)
        if costs is None:
            costs = self._scopes[scope] = _Costs()
            if len(self._scopes) > SCOPES_KEPT:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(scope)
        costs.reads += 1
        faster = costs.faster()
        if len(costs.seconds) == 2 and costs.reads % EXPLORE_EVERY == 0:
            return Path.CONTROL_PLANE if faster is Path.CACHE else Path.CACHE
        return faster

    def took(self, scope: Hashable, path: Path, seconds: float) -> None:
        """Record that ``path`` answered a consistent LIST of ``scope`` in ``seconds``."""
        costs = self._scopes.get(scope)
        if costs is None:
            return  # forgotten meanwhile: the next read starts over
        before = costs.seconds.get(path)
        costs.seconds[path] = seconds if before is None else before + WEIGHT * (seconds - before)

    def seconds(self, scope: Hashable) -> dict[Path, float]:
        """The moving averages of ``scope`` (for metrics and tests)."""
        costs = self._scopes.get(scope)
        return dict(costs.seconds) if costs is not None else {}
