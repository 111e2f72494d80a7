"""Fair share: limits on open watches and requests in flight, per user, per tenant and in all.

One connector serves every user of an app cluster. kube-apiserver keeps one flow from starving
the others with API Priority and Fairness; the connector keeps no queues, so it does the part
that matters here as hard limits: each user may hold only so many watches and requests at once,
each tenant (a namespace: four ServiceAccounts of one namespace are one tenant) only so many,
and all of them together no more than the upstream connection pools hold (requests and watches
get separate pools, see server.py, so requests never wait behind watches). Past a limit the
answer is a 429 Status with ``Retry-After``, which client-go and kubectl honour.

The app cluster's own controllers are never refused, as APF's mandatory ``exempt`` FlowSchema
(group ``system:masters``) and its ``kube-controller-manager`` and
``kube-system-service-accounts`` FlowSchemas keep them served: without the garbage collector and
the namespace controller an app cluster cannot delete what it owns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from mcp_connector.connector.errors import ApiError, status_body
from mcp_connector.connector.http.auth import User
from mcp_connector.connector.metrics import THROTTLED

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
#: Groups whose requests are never refused: APF's ``exempt`` (system:masters, which also holds
#: kube-apiserver's loopback user) and ``kube-system-service-accounts`` (the controllers that
#: run with their own ServiceAccounts: generic-garbage-collector, namespace-controller, ...).
EXEMPT_GROUPS = frozenset({"system:masters", "system:serviceaccounts:kube-system"})
#: Users never refused: kube-controller-manager with one identity (APF's ``kube-controller-manager``).
EXEMPT_USERS = frozenset({"system:kube-controller-manager"})


@dataclass(frozen=True)
class Limits:
    """How much of the connector one user, one tenant and everyone together may hold at a time."""

    requests: int = 400
    requests_per_user: int = 100
    requests_per_namespace: int = 200
    watches: int = 1000
    watches_per_user: int = 100
    watches_per_namespace: int = 500


@dataclass(frozen=True)
class Flow:
    """Whose a request is, for the limits: its user, its tenant, or exempt from both."""

    user: str
    #: A ServiceAccount's own namespace wherever it sends requests (so a tenant's workloads
    #: count together), else the namespace the request is in; None for other users'
    #: cluster-wide requests, which only the per-user and total limits hold.
    tenant: str | None = None
    exempt: bool = False


def flow_of(user: User, namespace: str | None) -> Flow:
    """The flow of ``user``'s request in ``namespace`` (None: cluster-wide)."""
    if user.name in EXEMPT_USERS or EXEMPT_GROUPS.intersection(user.groups):
        return Flow(user.name, exempt=True)
    if user.name.startswith(SERVICE_ACCOUNT_PREFIX):
        home, sep, _ = user.name[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        if sep and home:
            return Flow(user.name, home)
    return Flow(user.name, namespace or None)


class Gate:
    """Counts what each user and tenant holds of one kind (requests or watches); refuses past the limits."""

    def __init__(
        self, kind: str, *, total: int, per_user: int, per_namespace: int | None = None, retry_after: int
    ) -> None:
        self.kind = kind
        self.total = total
        self.per_user = per_user
        self.per_namespace = total if per_namespace is None else per_namespace
        self.retry_after = retry_after
        self._users: dict[str, int] = {}
        self._tenants: dict[str, int] = {}
        self._count = 0
        #: Exempt requests now in flight (counted for no limit).
        self.exempt = 0

    def held(self, user: str | None = None) -> int:
        """How many one user (or everyone, with None) holds now, exempt requests aside."""
        return self._count if user is None else self._users.get(user, 0)

    def held_by_namespace(self, tenant: str) -> int:
        """How many one tenant holds now."""
        return self._tenants.get(tenant, 0)

    def _refuse(self, flow: Flow, scope: str) -> ApiError:
        THROTTLED.labels(self.kind, scope).inc()
        if scope == "user":
            whose, limit = f'user "{flow.user}"', self.per_user
        elif scope == "namespace":
            whose, limit = f'namespace "{flow.tenant}"', self.per_namespace
        else:
            whose, limit = "all users together", self.total
        message = f"Too many requests, please try again later: {whose} may have at most {limit} {self.kind} open"
        return ApiError(
            status_body(429, message, details={"retryAfterSeconds": self.retry_after}),
            headers=(("Retry-After", str(self.retry_after)),),
        )

    @contextlib.contextmanager
    def admit(self, flow: Flow | str) -> Iterator[None]:
        """Hold one slot for ``flow`` (a user name: a flow of its own) for the block; 429 when none is free."""
        if isinstance(flow, str):
            flow = Flow(flow)
        if flow.exempt:
            self.exempt += 1
            try:
                yield
            finally:
                self.exempt -= 1
            return
        if self._users.get(flow.user, 0) >= self.per_user:
            raise self._refuse(flow, "user")
        if flow.tenant is not None and self._tenants.get(flow.tenant, 0) >= self.per_namespace:
            raise self._refuse(flow, "namespace")
        if self._count >= self.total:
            raise self._refuse(flow, "total")
        _take(self._users, flow.user)
        if flow.tenant is not None:
            _take(self._tenants, flow.tenant)
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            _give(self._users, flow.user)
            if flow.tenant is not None:
                _give(self._tenants, flow.tenant)


def _take(held: dict[str, int], key: str) -> None:
    held[key] = held.get(key, 0) + 1


def _give(held: dict[str, int], key: str) -> None:
    left = held[key] - 1
    if left:
        held[key] = left
    else:
        del held[key]


@dataclass
class Gates:
    """The connector's two gates: requests in flight and open watches."""

    limits: Limits = field(default_factory=Limits)
    requests: Gate = field(init=False)
    watches: Gate = field(init=False)

    def __post_init__(self) -> None:
        self.requests = Gate(
            "requests in flight",
            total=self.limits.requests,
            per_user=self.limits.requests_per_user,
            per_namespace=self.limits.requests_per_namespace,
            retry_after=1,
        )
        self.watches = Gate(
            "watches",
            total=self.limits.watches,
            per_user=self.limits.watches_per_user,
            per_namespace=self.limits.watches_per_namespace,
            retry_after=5,
        )

    def for_verb(self, verb: str) -> Gate:
        """The gate a request with this Kubernetes verb passes."""
        return self.watches if verb == "watch" else self.requests
