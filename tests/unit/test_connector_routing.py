"""Request paths map to routes and verbs the way k8s.io/apiserver's RequestInfo does."""

from __future__ import annotations

import pytest

from mcp_connector.connector.http.routing import (
    DiscoveryRoute,
    NonResourceRoute,
    OpenApiRoute,
    ResourceRoute,
    authorized_name,
    is_watch,
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


@pytest.mark.parametrize(
    ("path", "route"),
    [
        (f"/apis/{G}/{V}/watch/{P}", ResourceRoute(G, V, P, watch_path=True)),
        (f"/apis/{G}/{V}/watch/namespaces/ns/{P}", ResourceRoute(G, V, P, "ns", watch_path=True)),
        (f"/apis/{G}/{V}/watch/namespaces/ns/{P}/x", ResourceRoute(G, V, P, "ns", "x", watch_path=True)),
        (f"/apis/{G}/{V}/watch/namespaces/ns/{P}/x/status", None),
        (f"/apis/{G}/{V}/watch/{P}/x", None),
    ],
)
def test_legacy_watch_paths(path: str, route: object) -> None:
    assert parse_path(path) == route


def test_legacy_watch_paths_only_watch() -> None:
    route = ResourceRoute(G, V, P, "ns", "x", watch_path=True)
    assert verb_of("GET", route, {}) == "watch"
    assert verb_of("DELETE", route, {}) is None


@pytest.mark.parametrize(
    ("value", "watches"),
    [("true", True), ("1", True), ("yes", True), ("", True), ("TRUE", True), ("0", False), ("False", False)],
)
def test_watch_flag_reads_like_kube_apiserver(value: str, watches: bool) -> None:
    assert is_watch({"watch": value}) is watches
    assert is_watch({}) is False


@pytest.mark.parametrize(
    ("verb", "query", "name"),
    [
        ("list", {"fieldSelector": "metadata.name=x"}, "x"),
        ("watch", {"fieldSelector": "metadata.name==x"}, "x"),
        ("watch", {"fieldSelector": "status.phase=Ready,metadata.name=x"}, "x"),
        ("watch", {"fieldSelector": "metadata.name=b,metadata.name=a"}, "a"),  # terms are sorted first
        ("watch", {"fieldSelector": "metadata.name!=x"}, ""),
        ("watch", {"fieldSelector": "metadata.namespace=x"}, ""),
        ("watch", {"fieldSelector": "metadata.name=x,broken"}, ""),  # does not parse: no name
        ("watch", {"fieldSelector": "metadata.name=a\\,b"}, "a,b"),
        ("watch", {"fieldSelector": "metadata.name=a%2Fb"}, ""),  # not a path segment name
        ("watch", {"fieldSelector": "metadata.name=.."}, ""),
        ("deletecollection", {"fieldSelector": "metadata.name=x"}, ""),
        ("list", {}, ""),
    ],
)
def test_authorized_name_follows_request_info(verb: str, query: dict[str, str], name: str) -> None:
    assert authorized_name(ResourceRoute(G, V, P, "ns"), verb, query) == name


def test_named_and_legacy_watch_routes_authorize_their_path_name() -> None:
    assert authorized_name(ResourceRoute(G, V, P, "ns", "y"), "get", {"fieldSelector": "metadata.name=x"}) == "y"
    legacy = ResourceRoute(G, V, P, "ns", watch_path=True)
    assert authorized_name(legacy, "watch", {"fieldSelector": "metadata.name=x"}) == ""
    assert authorized_name(ResourceRoute(G, V, P, "ns", "x", watch_path=True), "watch", {}) == "x"
