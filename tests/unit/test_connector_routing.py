"""Request paths map to routes and verbs the way k8s.io/apiserver's RequestInfo does."""

from __future__ import annotations

import pytest

from mcp_connector.connector.routing import (
    DiscoveryRoute,
    NonResourceRoute,
    OpenApiRoute,
    ResourceRoute,
    parse_path,
    verb_of,
)

G, V, P = "k8s.starter.org", "v1alpha1", "kubernetesclusters"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/apis", DiscoveryRoute()),
        ("/apis/", DiscoveryRoute()),
        (f"/apis/{G}", DiscoveryRoute(G)),
        (f"/apis/{G}/{V}", DiscoveryRoute(G, V)),
        (f"/apis/{G}/{V}/{P}", ResourceRoute(G, V, P)),
        (f"/apis/{G}/{V}/namespaces/ns/{P}", ResourceRoute(G, V, P, "ns")),
        (f"/apis/{G}/{V}/namespaces/ns/{P}/x", ResourceRoute(G, V, P, "ns", "x")),
        (f"/apis/{G}/{V}/namespaces/ns/{P}/x/status", ResourceRoute(G, V, P, "ns", "x", "status")),
        (f"/apis/{G}/{V}/namespaces/ns/{P}/x/status/extra", None),
        (f"/apis/{G}/{V}/{P}/x", None),
        (f"/apis/{G}/{V}/namespaces/../{P}", None),
        ("/openapi/v2", OpenApiRoute("v2")),
        ("/openapi/v3", OpenApiRoute("v3")),
        (f"/openapi/v3/apis/{G}/{V}", OpenApiRoute("v3", G, V)),
        ("/openapi/v4", None),
        ("/healthz", NonResourceRoute("/healthz")),
        ("/readyz", NonResourceRoute("/readyz")),
        ("/livez", NonResourceRoute("/livez")),
        ("/metrics", NonResourceRoute("/metrics")),
        ("/api/v1/secrets", None),
        ("/", None),
    ],
)
def test_paths(path: str, route: object) -> None:
    assert parse_path(path) == route


@pytest.mark.parametrize(
    ("method", "route", "query", "verb"),
    [
        ("GET", ResourceRoute(G, V, P, "ns", "x"), {}, "get"),
        ("GET", ResourceRoute(G, V, P, "ns"), {}, "list"),
        ("GET", ResourceRoute(G, V, P, "ns"), {"watch": "true"}, "watch"),
        ("GET", ResourceRoute(G, V, P, "ns"), {"watch": "1"}, "watch"),
        ("GET", ResourceRoute(G, V, P, "ns"), {"watch": "false"}, "list"),
        ("GET", ResourceRoute(G, V, P), {}, "list"),
        ("GET", ResourceRoute(G, V, P), {"watch": "true"}, "watch"),
        ("POST", ResourceRoute(G, V, P), {}, None),
        ("DELETE", ResourceRoute(G, V, P), {}, None),
        ("POST", ResourceRoute(G, V, P, "ns"), {}, "create"),
        ("DELETE", ResourceRoute(G, V, P, "ns"), {}, "deletecollection"),
        ("PUT", ResourceRoute(G, V, P, "ns"), {}, None),
        ("PUT", ResourceRoute(G, V, P, "ns", "x"), {}, "update"),
        ("PATCH", ResourceRoute(G, V, P, "ns", "x"), {}, "patch"),
        ("DELETE", ResourceRoute(G, V, P, "ns", "x"), {}, "delete"),
        ("POST", ResourceRoute(G, V, P, "ns", "x"), {}, None),
        ("DELETE", ResourceRoute(G, V, P, "ns", "x", "status"), {}, None),
        ("PATCH", ResourceRoute(G, V, P, "ns", "x", "status"), {}, "patch"),
    ],
)
def test_verbs(method: str, route: ResourceRoute, query: dict[str, str], verb: str | None) -> None:
    assert verb_of(method, route, query) == verb
