"""Fair share: per-user limits on open watches and on requests in flight.

One connector serves every user of an app cluster. kube-apiserver keeps one user from starving
the others with API Priority and Fairness; the connector keeps no queues, so it does the part
that matters here: each user may hold only so many watches and so many requests at once, and
all users together no more than the upstream connection pools hold (requests and watches get
separate pools, see server.py, so requests never wait behind watches). Past a limit the answer
is a 429 Status with ``Retry-After``, which client-go and kubectl honour.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from mcp_connector.connector.errors import ApiError, status_body
from mcp_connector.connector.metrics import THROTTLED


@dataclass(frozen=True)
class Limits:
    """How much of the connector one user, and all users together, may hold at a time."""

    requests: int = 400
    requests_per_user: int = 100
    watches: int = 1000
    watches_per_user: int = 100


class Gate:
    """Counts what each user holds of one kind (requests or watches) and refuses past the limits."""

    def __init__(self, kind: str, *, total: int, per_user: int, retry_after: int) -> None:
        self.kind = kind
        self.total = total
        self.per_user = per_user
        self.retry_after = retry_after
        self._held: dict[str, int] = {}
        self._count = 0

    def held(self, user: str | None = None) -> int:
        """How many one user (or everyone, with None) holds now."""
        return self._count if user is None else self._held.get(user, 0)

    def _refuse(self, user: str, scope: str) -> ApiError:
        THROTTLED.labels(self.kind, scope).inc()
        limit = self.per_user if scope == "user" else self.total
        whose = f'user "{user}"' if scope == "user" else "all users together"
        message = f"Too many requests, please try again later: {whose} may have at most {limit} {self.kind} open"
        return ApiError(
            status_body(429, message, details={"retryAfterSeconds": self.retry_after}),
            headers=(("Retry-After", str(self.retry_after)),),
        )

    @contextlib.contextmanager
    def admit(self, user: str) -> Iterator[None]:
        """Hold one slot for ``user`` for the duration of the block; 429 when none is free."""
        if self._held.get(user, 0) >= self.per_user:
            raise self._refuse(user, "user")
        if self._count >= self.total:
            raise self._refuse(user, "total")
        self._held[user] = self._held.get(user, 0) + 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            left = self._held[user] - 1
            if left:
                self._held[user] = left
            else:
                del self._held[user]


@dataclass
class Gates:
    """The connector's two gates: requests in flight and open watches."""

    limits: Limits = field(default_factory=Limits)
    requests: Gate = field(init=False)
    watches: Gate = field(init=False)

    def __post_init__(self) -> None:
        self.requests = Gate(
            "requests in flight", total=self.limits.requests, per_user=self.limits.requests_per_user, retry_after=1
        )
        self.watches = Gate(
            "watches", total=self.limits.watches, per_user=self.limits.watches_per_user, retry_after=5
        )

    def for_verb(self, verb: str) -> Gate:
        """The gate a request with this Kubernetes verb passes."""
        return self.watches if verb == "watch" else self.requests
