"""Bearer tokens checked by the app cluster (TokenReview), for the connector's own endpoints.

Resource requests only ever come from the aggregator (front-proxy certificate). ``/metrics`` is
scraped directly, by Prometheus with its service account token, so it is authenticated the way
Kubernetes components authenticate their own endpoints (k8s.io/apiserver's delegating
authenticator): a TokenReview against the app cluster, with answers cached briefly. Tokens are
never logged or kept: the cache is keyed by their SHA-256.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.http.auth import User

TOKEN_REVIEW_PATH = upstream.api_path("apis", "authentication.k8s.io", "v1", "tokenreviews")

Reviewer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None for anything else."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def user_of(review: dict[str, Any]) -> User | None:
    """The user a returned TokenReview authenticated, None when it did not."""
    status = review.get("status") or {}
    user = status.get("user") or {}
    if not status.get("authenticated") or not user.get("username"):
        return None
    extra = tuple(sorted((str(k), tuple(str(x) for x in v)) for k, v in (user.get("extra") or {}).items()))
    groups = tuple(str(g) for g in user.get("groups") or ())
    return User(str(user["username"]), groups, str(user.get("uid") or ""), extra)


class TokenAuthenticator:
    """TokenReviews with a bounded cache (kube's delegating authenticator caches for 10 seconds)."""

    def __init__(
        self,
        review: Reviewer,
        *,
        ttl: float = 10.0,
        max_entries: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review = review
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, User | None]] = OrderedDict()

    async def authenticate(self, token: str) -> User | None:
        """The user ``token`` belongs to, or None when the app cluster does not accept it."""
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        user = user_of(await self._review(body))
        self._cache[key] = (now + self._ttl, user)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return user
