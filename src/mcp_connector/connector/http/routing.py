"""Parse a request path into what it asks for, the way k8s.io/apiserver's RequestInfo does.

Pure, so the routing table and the verb each request maps to (which authorization checks)
are unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcp_connector.core.selectors import exact_field_match

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class DiscoveryRoute:
    """``/apis``, ``/apis/<group>`` or ``/apis/<group>/<version>``."""

    group: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class OpenApiRoute:
    """``/openapi/v2``, ``/openapi/v3`` or ``/openapi/v3/apis/<group>/<version>``."""

    spec: str  # "v2" | "v3"
    group: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ResourceRoute:
    """A claim resource path; ``namespace`` is None for the all-namespaces form.

    ``watch_path`` marks the deprecated ``/apis/<g>/<v>/watch/...`` form, which only watches.
    """

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False


@dataclass(frozen=True)
class NonResourceRoute:
    """Health and metrics endpoints, served without a user."""

    path: str


Route = DiscoveryRoute | OpenApiRoute | ResourceRoute | NonResourceRoute


def parse_path(path: str) -> Route | None:
    """Return the route for ``path`` or None when we serve nothing there (404)."""
    if path in HEALTH_PATHS or path == METRICS_PATH or path.startswith(("/healthz/", "/livez/", "/readyz/")):
        return NonResourceRoute(path)
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "openapi":
        if parts[1:] == ["v2"]:
            return OpenApiRoute("v2")
        if parts[1:] == ["v3"]:
            return OpenApiRoute("v3")
        if len(parts) == 5 and parts[1:3] == ["v3", "apis"]:
            return OpenApiRoute("v3", parts[3], parts[4])
        return None
    if parts[0] != "apis" or any(p in (".", "..") for p in parts):
        return None
    rest = parts[1:]
    if len(rest) <= 2:
        return DiscoveryRoute(*rest)
    group, version, rest = rest[0], rest[1], rest[2:]
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if rest and rest[0] == "namespaces" and len(rest) >= 3:
        namespace, plural, tail = rest[1], rest[2], rest[3:]
        if len(tail) > (1 if watch_path else 2):
            return None
        name = tail[0] if tail else None
        subresource = tail[1] if len(tail) > 1 else None
        return ResourceRoute(group, version, plural, namespace, name, subresource, watch_path)
    if len(rest) == 1:
        return ResourceRoute(group, version, rest[0], watch_path=watch_path)
    # Named objects of a namespaced resource without a namespace do not exist.
    return None


def query_flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as kube-apiserver reads it: set unless absent, ``0`` or ``false``."""
    value = query.get(name)
    return value is not None and value != "0" and value.lower() != "false"


def is_watch(query: Mapping[str, str]) -> bool:
    """True when a list request asks to watch (``watch=yes`` watches too, as in kube-apiserver)."""
    return query_flag(query, "watch")


def verb_of(method: str, route: ResourceRoute, query: Mapping[str, str]) -> str | None:
    """The Kubernetes verb a request maps to, or None for methods the path does not allow."""
    method = method.upper()
    if route.watch_path:
        return "watch" if method == "GET" else None
    if route.name is None:
        if method == "GET":
            return "watch" if is_watch(query) else "list"
        if route.namespace is None:
            return None
        return {"POST": "create", "DELETE": "deletecollection"}.get(method)
    allowed = {"GET": "get", "PUT": "update", "PATCH": "patch"}
    if route.subresource is None:
        allowed["DELETE"] = "delete"
    return allowed.get(method)


def authorized_name(route: ResourceRoute, verb: str, query: Mapping[str, str]) -> str:
    """The object name a request is authorized for, as RequestInfo sets it.

    A list or watch of a collection selecting ``metadata.name=X`` is authorized as a request
    for X, so a Role limited by ``resourceNames`` can ``kubectl get X -w``, ``wait`` and
    ``delete`` (which waits by watching). Names that cannot be path segments do not count.
    """
    if route.name is not None:
        return route.name
    if route.watch_path or verb not in ("list", "watch"):
        return ""
    name = exact_field_match(query.get("fieldSelector", ""), "metadata.name")
    if name is None or name in (".", "..") or "/" in name or "%" in name:
        return ""
    return name


def selectors_authorized(route: ResourceRoute, verb: str) -> bool:
    """True when a request's selectors go into its authorization (list, watch, deletecollection).

    The deprecated ``/watch/`` paths are left out, as RequestInfo leaves them out.
    """
    return not route.watch_path and verb in ("list", "watch", "deletecollection")
