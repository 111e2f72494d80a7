"""The leader-election record a Lease carries, and its JSON form (``spec`` of a v1 Lease).

Pure: the record is what the electors compare; ``resourceVersion`` travels beside it so an
update only lands on the Lease that was read (optimistic concurrency, as client-go's LeaseLock).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

#: MicroTime, as apimachinery prints it (RFC 3339 with microseconds, UTC).
_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


def micro_time(when: datetime.datetime) -> str:
    """A ``metav1.MicroTime`` string for ``when``."""
    return when.astimezone(datetime.UTC).strftime(_MICRO)


def parse_micro_time(text: object) -> datetime.datetime | None:
    """A MicroTime (or plain RFC 3339 time) as an aware datetime; None if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class LeaderRecord:
    """Who holds the lease, for how long, since when; ``holder`` empty means anyone may take it."""

    holder: str
    lease_duration_seconds: int
    acquire_time: datetime.datetime | None
    renew_time: datetime.datetime | None
    transitions: int

    def spec(self) -> dict[str, Any]:
        """The Lease ``spec`` holding this record."""
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = micro_time(self.renew_time)
        return spec


def record_of(lease: dict[str, Any]) -> LeaderRecord:
    """The record in a Lease as read from the API (missing fields read as empty)."""
    spec = lease.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaderRecord(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration_seconds=duration if isinstance(duration, int) else 0,
        acquire_time=parse_micro_time(spec.get("acquireTime")),
        renew_time=parse_micro_time(spec.get("renewTime")),
        transitions=transitions if isinstance(transitions, int) else 0,
    )
