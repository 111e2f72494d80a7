"""Delegated authorization: ask the app cluster (SubjectAccessReview) whether a user may act.

This is what k8s.io/apiserver's delegating authorizer does for aggregated servers: the app
cluster's RBAC decides, so the user's Roles on e.g. ``kubernetesclusters.k8s.starter.org``
apply to claims exactly as if the CRD were installed there. Decisions are cached briefly
(allowed and denied with their own lifetimes) in a bounded cache, so a ``kubectl get -w``
storm does not become a SubjectAccessReview storm.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_connector import upstream
from mcp_connector.connector.http.auth import User
from mcp_connector.core.selectors import Requirement

SAR_PATH = upstream.api_path("apis", "authorization.k8s.io", "v1", "subjectaccessreviews")


@dataclass(frozen=True)
class Attributes:
    """What a request does, in the terms RBAC speaks: a resource, or a non-resource ``path``.

    ``field_selector`` and ``label_selector`` are a list's or watch's selector requirements,
    which authorizers other than RBAC may grant on (selector authorization).
    """

    user: User
    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    field_selector: tuple[Requirement, ...] = ()
    label_selector: tuple[Requirement, ...] = ()
    #: Set for non-resource URLs (``/metrics``); the resource fields are then unused.
    path: str = ""


def _requirements(requirements: tuple[Requirement, ...]) -> dict[str, Any]:
    return {
        "requirements": [
            {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
            for r in requirements
        ]
    }


@dataclass(frozen=True)
class Decision:
    """The review's answer; ``reason`` is shown in the 403 message."""

    allowed: bool
    reason: str = ""


def review_body(attrs: Attributes) -> dict[str, Any]:
    """The SubjectAccessReview to send for ``attrs``."""
    spec: dict[str, Any] = {"user": attrs.user.name, "groups": list(attrs.user.groups)}
    if attrs.path:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    else:
        resource: dict[str, Any] = {
            "verb": attrs.verb,
            "group": attrs.group,
            "version": attrs.version,
            "resource": attrs.resource,
            "subresource": attrs.subresource,
            "namespace": attrs.namespace,
            "name": attrs.name,
        }
        if attrs.field_selector:
            resource["fieldSelector"] = _requirements(attrs.field_selector)
        if attrs.label_selector:
            resource["labelSelector"] = _requirements(attrs.label_selector)
        spec["resourceAttributes"] = resource
    if attrs.user.uid:
        spec["uid"] = attrs.user.uid
    if attrs.user.extra:
        spec["extra"] = attrs.user.extra_dict()
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def decision_of(review: dict[str, Any]) -> Decision:
    """Read the answer out of a returned SubjectAccessReview."""
    status = review.get("status") or {}
    return Decision(bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or ""))


Reviewer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Authorizer:
    """SubjectAccessReviews with a bounded, two-lifetime decision cache and one review in flight per question.

    Concurrent requests asking the same question (a burst of watches or gets from one client)
    share one SubjectAccessReview instead of sending one each (single flight). The review runs
    as its own task, so a caller that gives up (its client went away) does not cancel it for
    the others.
    """

    def __init__(
        self,
        review: Reviewer,
        *,
        allowed_ttl: float = 10.0,
        denied_ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review = review
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Decision]] = OrderedDict()
        self._in_flight: dict[bytes, asyncio.Task[Decision]] = {}

    async def authorize(self, attrs: Attributes) -> Decision:
        """Return the cached decision, or ask the app cluster (once for concurrent askers) and cache it.

        Decisions are kept under a digest of the review, not the attributes: those hold what the
        tenant sent (names, selectors of up to a request line) and the user's groups, so
        ``max_entries`` of them would bound the cache in entries only, not in bytes.
        """
        body = review_body(attrs)
        key = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            self._cache.move_to_end(key)
            return hit[1]
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(key, body))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    async def _ask(self, key: bytes, body: dict[str, Any]) -> Decision:
        decision = decision_of(await self._review(body))
        now = self._clock()
        ttl = self._allowed_ttl if decision.allowed else self._denied_ttl
        self._cache[key] = (now + ttl, decision)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return decision

    def __len__(self) -> int:
        return len(self._cache)
