"""Bearer tokens for /metrics (TokenReview, cached by hash) and non-resource SubjectAccessReviews."""

from __future__ import annotations

from typing import Any

from mcp_connector.connector.http.auth import User
from mcp_connector.connector.http.authz import Attributes, review_body
from mcp_connector.connector.http.tokens import TokenAuthenticator, bearer_token


def test_bearer_token_header() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic dXNlcjpwYXNz") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token("") is None


async def test_token_review_answers_are_cached_by_hash_and_expire() -> None:
    sent: list[dict[str, Any]] = []
    now = [0.0]

    async def review(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        if body["spec"]["token"] == "good":
            user = {"username": "system:serviceaccount:monitoring:prometheus", "uid": "u1", "groups": ["g"]}
            return {"status": {"authenticated": True, "user": {**user, "extra": {"k": ["v"]}}}}
        return {"status": {"authenticated": False, "error": "invalid bearer token"}}

    tokens = TokenAuthenticator(review, ttl=10, max_entries=2, clock=lambda: now[0])
    expected = User("system:serviceaccount:monitoring:prometheus", ("g",), "u1", (("k", ("v",)),))
    assert await tokens.authenticate("good") == expected
    assert await tokens.authenticate("good") == expected
    assert await tokens.authenticate("bad") is None
    assert await tokens.authenticate("bad") is None
    assert len(sent) == 2
    assert sent[0] == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "good"},
    }
    assert all(b"good" not in key and b"bad" not in key for key in tokens._cache)
    now[0] = 11.0
    assert await tokens.authenticate("good") == expected
    assert len(sent) == 3


def test_non_resource_review() -> None:
    body = review_body(Attributes(User("prometheus", ("g",)), "get", path="/metrics"))
    assert body["spec"] == {
        "user": "prometheus",
        "groups": ["g"],
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
    }
