"""The HTTP face: one handler that authenticates, authorizes and routes every request.

Order matters and mirrors k8s.io/apiserver: health endpoints are always allowed; everything
else needs the front proxy's certificate (401), then discovery and OpenAPI are served to any
authenticated user (as ``system:discovery`` allows), and resource requests need a
SubjectAccessReview (403). Every failure leaves as a Kubernetes Status.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from mcp_connector import upstream
from mcp_connector.connector import metrics
from mcp_connector.connector.api import discovery_docs, openapi, watch
from mcp_connector.connector.api.verbs import deleting, reading, writing
from mcp_connector.connector.api.verbs.request import Call, check_resource_version
from mcp_connector.connector.cache import serving as cached
from mcp_connector.connector.errors import ApiError, from_control_plane, status_body
from mcp_connector.connector.followers.catalog import ServedResource
from mcp_connector.connector.http import bodies, media, params, tokens
from mcp_connector.connector.http.auth import Headers, Unauthenticated, User, authenticate
from mcp_connector.connector.http.authz import Attributes
from mcp_connector.connector.http.fairshare import flow_of
from mcp_connector.connector.http.health import Health
from mcp_connector.connector.http.routing import (
    METRICS_PATH,
    DiscoveryRoute,
    NonResourceRoute,
    OpenApiRoute,
    ResourceRoute,
    authorized_name,
    parse_path,
    selectors_authorized,
    verb_of,
)
from mcp_connector.connector.logs import fields
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core.selectors import Requirement, authorizable, field_requirements, label_requirements

log = logging.getLogger(__name__)

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
HEALTH: web.AppKey[Health] = web.AppKey("health", Health)


def json_response(body: Any, *, status: int = 200, content_type: str = "application/json") -> web.Response:
    """A JSON response serialized with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, headers={"Content-Type": content_type})


def _peer_certificate(request: web.Request) -> bytes | None:
    if request.transport is None:
        return None
    ssl_object = request.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


def _forbidden(attrs: Attributes, reason: str) -> ApiError:
    if attrs.path:
        message = f'forbidden: User "{attrs.user.name}" cannot {attrs.verb} path "{attrs.path}"'
        return ApiError.of(403, f"{message}: {reason}" if reason else message)
    resource = f"{attrs.resource}.{attrs.group}"
    target = f'{resource} "{attrs.name}"' if attrs.name else resource
    what = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    message = (
        f'{target} is forbidden: User "{attrs.user.name}" cannot {attrs.verb} resource "{what}" '
        f'in API group "{attrs.group}"'
    )
    message += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    if reason:
        message += f": {reason}"
    return ApiError(
        status_body(403, message, details={"name": attrs.name, "group": attrs.group, "kind": attrs.resource})
    )


async def _authorize(rt: Runtime, attrs: Attributes) -> None:
    """Ask the app cluster (SubjectAccessReview); 403 when it refuses, 503 when it does not answer."""
    try:
        decision = await rt.authorizer.authorize(attrs)
    except upstream.ControlPlaneError as e:
        log.warning("SubjectAccessReview failed", extra=fields(error=str(e)))
        raise ApiError.of(
            503, "authorization is unavailable: the app cluster did not answer a SubjectAccessReview"
        ) from None
    metrics.AUTHZ_DECISIONS.labels(str(decision.allowed).lower()).inc()
    if not decision.allowed:
        raise _forbidden(attrs, decision.reason)


def _selector_requirements(
    route: ResourceRoute, verb: str, query: dict[str, str]
) -> tuple[tuple[Requirement, ...], tuple[Requirement, ...]]:
    """The selector requirements kube-apiserver authorizes a list, watch or deletecollection with."""
    if not selectors_authorized(route, verb):
        return (), ()
    fields = field_requirements(query.get("fieldSelector", "")) or ()
    labels = authorizable(label_requirements(query.get("labelSelector", "")) or ())
    return fields, labels


def _error_response(error: ApiError) -> web.Response:
    response = json_response(error.body, status=error.code)
    for name, value in error.headers:
        response.headers.add(name, value)
    return response


async def _discovery(request: web.Request, rt: Runtime, route: DiscoveryRoute) -> web.Response:
    if not rt.catalog_loaded:
        raise ApiError.of(503, rt.catalog_error)
    catalog = rt.catalog
    if route.group is None:
        media = discovery_docs.aggregated_form(request.headers.get("Accept", ""))
        if media is not None:
            response = json_response(discovery_docs.aggregated_discovery(catalog, media), content_type=media)
        else:
            response = json_response(discovery_docs.api_group_list(catalog))
        response.headers["Vary"] = "Accept"
        return response
    if route.version is None:
        doc = discovery_docs.api_group(catalog, route.group)
    else:
        doc = discovery_docs.api_resource_list(catalog, route.group, route.version)
    if doc is None:
        raise ApiError.of(404, "the server could not find the requested resource")
    return json_response(doc)


async def _openapi(request: web.Request, rt: Runtime, route: OpenApiRoute) -> web.Response:
    found = openapi.document(rt.catalog, route.spec, route.group or "", route.version or "")
    if found is None:
        raise ApiError.of(404, "the server could not find the requested resource")
    doc, digest = found
    tag = f'"{digest}"'
    if request.headers.get("If-None-Match") == tag:
        return web.Response(status=304, headers={"ETag": tag})
    return web.Response(body=doc, headers={"Content-Type": "application/json", "ETag": tag})


async def _resource(request: web.Request, rt: Runtime, route: ResourceRoute, user: User) -> web.StreamResponse:
    served = rt.catalog.resource(route.group, route.version, route.plural)
    if served is None and not rt.catalog_loaded:
        raise ApiError.of(503, rt.catalog_error)
    if served is None:
        raise ApiError.of(404, "the server could not find the requested resource")
    if route.subresource is not None and (route.subresource != "status" or not served.version.status_subresource):
        raise ApiError.of(404, "the server could not find the requested resource")
    query = {k: request.query.getone(k) for k in request.query}
    verb = verb_of(request.method, route, query)
    if verb is None:
        raise ApiError.of(405, f"the server does not allow this method on the requested resource: {request.method}")
    request["verb"] = verb
    # Fair share before authorization, as kube-apiserver's flow control: a user past their limit
    # costs no SubjectAccessReview either.
    with rt.gates.for_verb(verb).admit(flow_of(user, route.namespace)):
        return await _authorized(request, rt, route, served, verb, query, user)


async def _authorized(
    request: web.Request,
    rt: Runtime,
    route: ResourceRoute,
    served: ServedResource,
    verb: str,
    query: dict[str, str],
    user: User,
) -> web.StreamResponse:
    """Authorize (SubjectAccessReview), read the body and dispatch to the verb's handler."""
    attrs = Attributes(
        user,
        verb,
        route.group,
        route.version,
        route.plural,
        route.subresource or "",
        route.namespace or "",
        authorized_name(route, verb, query),
        *_selector_requirements(route, verb, query),
    )
    await _authorize(rt, attrs)
    # Parsed after authorization, as kube-apiserver's handlers decode their options; a patch's
    # type first of all, then the Accept header (both before the body is read and the options
    # are decoded).
    content_type = request.headers.get("Content-Type", "application/json")
    patch_type = bodies.patch_type(request.headers.get("Content-Type", "")) if verb == "patch" else ""
    output = media.negotiate(request.headers.get("Accept", ""), watch=verb == "watch")
    body = await bodies.read(request)
    parsed = params.parse(
        query,
        verb,
        repeated={"dryRun": tuple(request.query.getall("dryRun", ()))},
        body=body,
        content_type=content_type,
        apply=patch_type == "apply",
    )
    if verb in ("get", "list", "watch"):  # the verbs whose options carry a resourceVersion
        check_resource_version(query)
    call = Call(
        route,
        served,
        verb,
        query,
        output=output,
        content_type=content_type,
        body=body,
        audit_id=request["audit_id"],
        user=user,
        user_agent=request.headers.get("User-Agent", ""),
        params=parsed,
        patch_type=patch_type,
    )
    direct = functools.partial(_from_control_plane, request, rt, call)
    answered = await cached.serve(request, rt, call, direct)
    return answered if answered is not None else await direct()


async def _from_control_plane(request: web.Request, rt: Runtime, call: Call) -> web.StreamResponse:
    """The request answered by the control plane through its verb's handler."""
    if call.verb == "watch":
        return await watch.serve(request, rt, call)
    handlers: dict[str, Callable[[Runtime, Call], Awaitable[Any]]] = {
        "get": reading.get,
        "list": reading.list_,
        "update": writing.update,
        "patch": writing.patch,
        "delete": deleting.delete,
        "deletecollection": deleting.delete_collection,
    }
    if call.verb == "create":
        code, result = await writing.create(rt, call)
    else:
        answer = await handlers[call.verb](rt, call)
        code, result = answer if isinstance(answer, tuple) else (200, answer)
    response = json_response(result, status=code)
    for warning in dict.fromkeys(call.warnings):  # once each, as kube-apiserver's warning recorder does
        response.headers.add("Warning", warning)
    return response


async def _own_endpoint_user(request: web.Request, rt: Runtime) -> User:
    """Who calls an endpoint of the connector's own: the front proxy's user, or a bearer token's.

    The token is checked by the app cluster (TokenReview): this is how a Prometheus scrapes
    ``/metrics`` with its service account, as it scrapes Kubernetes components.
    """
    peer = _peer_certificate(request)
    if peer:
        return authenticate(peer, Headers(request.headers.getall, request.headers.items), rt.front_proxy)
    token = tokens.bearer_token(request.headers.get("Authorization", ""))
    if token is None or rt.tokens is None:
        raise Unauthenticated("no client certificate or bearer token")
    try:
        user = await rt.tokens.authenticate(token)
    except upstream.ControlPlaneError as e:
        log.warning("TokenReview failed", extra=fields(error=str(e)))
        raise ApiError.of(503, "authentication is unavailable: the app cluster did not answer a TokenReview") from None
    if user is None:
        raise Unauthenticated("the app cluster did not accept the bearer token")
    return user


async def _authorize_own_endpoint(request: web.Request, rt: Runtime, path: str) -> None:
    """Delegated authorization of a non-resource URL, as Kubernetes components do for ``/metrics``."""
    user = await _own_endpoint_user(request, rt)
    attrs = Attributes(user, "get" if request.method in ("GET", "HEAD") else request.method.lower(), path=path)
    await _authorize(rt, attrs)


async def _non_resource(request: web.Request, route: NonResourceRoute) -> web.Response:
    if route.path == "/metrics":
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
    health = request.app[HEALTH]
    ok, detail = await health.check(route.path)
    return web.Response(text=detail, status=200 if ok else 500, content_type="text/plain")


async def handle(request: web.Request) -> web.StreamResponse:
    """Serve one request; the only place errors turn into responses."""
    rt = request.app[RUNTIME]
    start = time.monotonic()
    request["verb"] = "unknown"
    # The aggregator's Audit-ID names this request in the app cluster's audit log; it is sent on
    # to the control plane and echoed back, as kube-apiserver echoes it.
    request["audit_id"] = request.headers.get("Audit-ID") or str(uuid.uuid4())
    code = 500
    try:
        route = parse_path(request.path)
        if isinstance(route, NonResourceRoute):
            request["verb"] = route.path.strip("/").split("/")[0]
            if route.path == METRICS_PATH:  # health endpoints stay open, as kube-apiserver's do
                await _authorize_own_endpoint(request, rt, route.path)
            response: web.StreamResponse = await _non_resource(request, route)
        else:
            user = authenticate(
                _peer_certificate(request), Headers(request.headers.getall, request.headers.items), rt.front_proxy
            )
            if route is None:
                raise ApiError.of(404, "the server could not find the requested resource")
            if isinstance(route, ResourceRoute):
                response = await _resource(request, rt, route, user)
            elif request.method not in ("GET", "HEAD"):
                raise ApiError.of(
                    405, f"the server does not allow this method on the requested resource: {request.method}"
                )
            elif isinstance(route, DiscoveryRoute):
                request["verb"] = "discovery"
                response = await _discovery(request, rt, route)
            else:
                request["verb"] = "openapi"
                response = await _openapi(request, rt, route)
    except Unauthenticated as e:
        log.info("unauthenticated request", extra=fields(path=request.path, reason=str(e)))
        response = json_response(status_body(401, "Unauthorized"), status=401)
    except ApiError as e:
        response = _error_response(e)
    except upstream.ControlPlaneError as e:
        response = _error_response(
            from_control_plane(e, ref=None, claim_namespace=rt.claim_namespace, cluster_id=rt.cluster_id)
        )
    except upstream.InvalidPathSegment:
        # A value from the request that cannot be one path segment names nothing in either cluster.
        response = _error_response(ApiError.of(404, "the server could not find the requested resource"))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request failed", extra=fields(path=request.path, method=request.method))
        response = json_response(status_body(500, "internal error in the connector"), status=500)
    if not response.prepared:
        response.headers["Audit-ID"] = request["audit_id"]
    code = response.status
    verb = request["verb"]
    metrics.REQUESTS.labels(verb, str(code)).inc()
    metrics.REQUEST_SECONDS.labels(verb).observe(time.monotonic() - start)
    if code >= 500 or verb not in (
        "get",
        "list",
        "watch",
        "discovery",
        "openapi",
        "healthz",
        "livez",
        "readyz",
        "metrics",
    ):
        log.info(
            "request",
            extra=fields(
                method=request.method,
                path=request.path,
                verb=verb,
                code=code,
                audit_id=request["audit_id"],
                seconds=round(time.monotonic() - start, 4),
            ),
        )
    return response


#: kube-apiserver's words for the refusals aiohttp makes before ``handle`` runs.
_FRAMEWORK_MESSAGES = {
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
}


@web.middleware
async def framework_refusals(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals as a Status, like every other error.

    Some requests never reach ``handle``: a CONNECT's authority-form target matches no route,
    and aiohttp would answer with a plain-text 404.
    """
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = _FRAMEWORK_MESSAGES.get(e.status, e.reason)
        return json_response(status_body(e.status, message), status=e.status)


def build(rt: Runtime, health: Health) -> web.Application:
    """The aiohttp application: one catch-all route into ``handle``."""
    # bodies.read limits bodies (with a Status, where aiohttp's limit is plain text)
    app = web.Application(middlewares=[framework_refusals])
    app[RUNTIME] = rt
    app[HEALTH] = health
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
