"""One error tree for the connector, and the Kubernetes ``Status`` bodies the app user sees.

Every failure a handler raises is an ApiError (or a control-plane error mapped into one here),
so the HTTP layer has exactly one place that turns errors into responses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from mcp_connector.connector.logs import fields
from mcp_connector.core import contract
from mcp_connector.upstream import (
    ControlPlaneError,
    ControlPlaneRejected,
    ControlPlaneUnauthorized,
    ControlPlaneUnreachable,
)

log = logging.getLogger(__name__)

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, *, reason: str | None = None, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build a ``metav1.Status`` failure body."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


class ApiError(Exception):
    """A request failure with the ``Status`` body to answer with, and headers to send along.

    ``headers`` carries what the control plane said beside its Status (``Retry-After``,
    ``Warning``), as (name, value) pairs because ``Warning`` may repeat.
    """

    def __init__(self, body: Mapping[str, Any], *, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.body = dict(body)
        self.code = int(self.body.get("code") or 500)
        self.headers = headers
        super().__init__(str(self.body.get("message", "")))

    @classmethod
    def of(cls, code: int, message: str, **kwargs: Any) -> ApiError:
        """Shorthand for an error built from a code and message."""
        return cls(status_body(code, message, **kwargs))


def not_found(group: str, plural: str, name: str) -> ApiError:
    """The 404 the API server gives for a missing object (also for objects we must not reveal)."""
    resource = f"{plural}.{group}" if group else plural
    return ApiError.of(
        404,
        f'{resource} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def bad_request(message: str) -> ApiError:
    """A 400 for bodies and parameters we cannot use."""
    return ApiError.of(400, message)


#: Ownership-label requirements the connector adds to every control-plane list and watch.
_INTERNAL_TERM = re.compile(
    re.escape(contract.LABEL_DOMAIN)
    + r"/[A-Za-z0-9_.-]+\s*(?:==|!=|=|\s+in\s+|\s+notin\s+)\s*(?:\([^)]*\)|[^,\s\"')]*),?"
)
#: Hashed control-plane names (``claim-``/``nxr-`` + 16 hex) and names Crossplane derives from them.
_HASHED = re.compile(r"\b(?:claim|nxr)-[0-9a-f]{16}(?:-[a-z0-9]+)*\b")
_URL = re.compile(r"\bhttps?://[^\s\"'<>]+")
HIDDEN_NAME = "<control-plane name>"


def hide_internals(text: str, *, cluster_id: str | None, claim_namespace: str) -> str:
    """``text`` without what only the control plane's side knows: no URL, cluster ID, hashed name
    (but those the caller already mapped to app-side names), claim namespace path or ownership selector.
    """
    text = _URL.sub("<control-plane URL>", text)
    text = _INTERNAL_TERM.sub("", text)
    if cluster_id:
        text = text.replace(cluster_id, "<app cluster>")
    text = text.replace(f"{claim_namespace}/", "")
    return _HASHED.sub(HIDDEN_NAME, text)


def app_status(
    body: Mapping[str, Any],
    *,
    ref: contract.AppRef | None,
    claim_namespace: str,
    namespace: str | None,
    cluster_id: str | None,
) -> dict[str, Any]:
    """A control-plane ``Status`` as the app user may see it: app-side names, nothing internal.

    The named object's hashed name and the claim namespace become the app-side ones
    (``contract.rewrite_status``); what is left of the control plane's side is hidden
    (``hide_internals``) in the message, the causes and ``details.name``.
    """
    if ref is not None:
        out = contract.rewrite_status(body, ref, claim_namespace=claim_namespace)
        cluster_id = cluster_id or ref.cluster_id
    else:
        out = scrub_namespace(dict(body), claim_namespace, namespace)

    def hide(text: str) -> str:
        return hide_internals(text, cluster_id=cluster_id, claim_namespace=claim_namespace)

    if isinstance(out.get("message"), str):
        out["message"] = hide(out["message"])
    details = out.get("details")
    if isinstance(details, dict):
        details = out["details"] = dict(details)
        if isinstance(details.get("name"), str):
            details["name"] = hide(details["name"])
        if isinstance(details.get("causes"), list):
            details["causes"] = [
                {k: hide(v) if isinstance(v, str) and k in ("message", "field") else v for k, v in c.items()}
                if isinstance(c, dict)
                else c
                for c in details["causes"]
            ]
    return out


def from_control_plane(
    error: ControlPlaneError,
    *,
    ref: contract.AppRef | None,
    claim_namespace: str,
    namespace: str | None = None,
    cluster_id: str | None = None,
) -> ApiError:
    """Map a control-plane failure to what the app user sees, naming app-side objects only.

    Only a refusal of the connector's own identity (401, or an RBAC 403) is an outage of
    the connector (503, reported without any credential). Every other answer, 403s from
    quota, admission policies and webhooks included, is the control plane's verdict on the
    request: it reaches the user with its code, reason, message, ``Retry-After`` and
    ``Warning`` headers, with the claim's hashed name and the claim namespace replaced by
    the app-side ones (``namespace`` names the app namespace of a request without one object),
    and nothing else of the control plane's side shown (``app_status``). Outages say what
    happened, never where: the control plane's URL and the transport's detail go to the log.
    """
    if isinstance(error, ControlPlaneUnreachable):
        log.warning("control plane unreachable", extra=fields(error=describe(error)))
        return ApiError.of(503, "the control plane is unreachable; the connector retries, try again later")
    if isinstance(error, ControlPlaneUnauthorized) or (
        isinstance(error, ControlPlaneRejected) and error.refuses_credentials
    ):
        log.warning("control plane refused the connector", extra=fields(error=describe(error)))
        return ApiError.of(503, credentials_message(error))
    if isinstance(error, ControlPlaneRejected):
        body = dict(error.body or status_body(error.status, error.cause))
        body.setdefault("code", error.status)
        body.setdefault("kind", "Status")
        body.setdefault("apiVersion", "v1")
        headers: list[tuple[str, str]] = []
        if error.retry_after:
            headers.append(("Retry-After", error.retry_after))
        body = app_status(body, ref=ref, claim_namespace=claim_namespace, namespace=namespace, cluster_id=cluster_id)
        known = cluster_id or (ref.cluster_id if ref is not None else None)
        for warning in error.warnings:
            text = (
                contract.rewrite_message(warning, ref, claim_namespace=claim_namespace)
                if ref is not None
                else scrub_text(warning, claim_namespace, namespace)
            )
            headers.append(("Warning", hide_internals(text, cluster_id=known, claim_namespace=claim_namespace)))
        return ApiError(body, headers=tuple(headers))
    log.warning("control plane call failed", extra=fields(error=describe(error)))
    return ApiError.of(503, "the control plane did not answer as expected; try again later")


def credentials_message(error: ControlPlaneError, *, where: bool = False) -> str:
    """What the app user is told when the control plane refuses the connector itself.

    ``where`` adds the control plane's URL, for the connector's own log only.
    """
    status = getattr(error, "status", 401)
    plane = f"control plane {error.url}" if where else "the control plane"
    if status == 403:
        return (
            f"{plane} denied the connector's own identity (HTTP 403); check the connector's RBAC in the control plane"
        )
    return (
        f"{plane} refused the connector's credentials "
        f"(HTTP {status}); check the connector's control-plane token or kubeconfig"
    )


def scrub_text(text: str, claim_namespace: str, namespace: str | None) -> str:
    """Name the app namespace (or "the app namespace") where a message names the claim namespace."""
    return contract.hide_claim_namespace(text, claim_namespace=claim_namespace, namespace=namespace)


def scrub_namespace(body: dict[str, Any], claim_namespace: str, namespace: str | None = None) -> dict[str, Any]:
    """Hide the control-plane claim namespace in a Status that names no single object."""
    message = body.get("message")
    if isinstance(message, str):
        body["message"] = scrub_text(message, claim_namespace, namespace)
    return body


def describe(error: ControlPlaneError) -> str:
    """A log-friendly description of an upstream failure.

    A 403 is shown with the apiserver's own message (which user may not do which verb on which
    resource): that names the missing RBAC rule, in whichever cluster refused it. A 401 means
    the credentials themselves were refused.
    """
    if isinstance(error, ControlPlaneRejected) and error.status == 403:
        message = str((error.body or {}).get("message") or "forbidden")[:300]
        return f"{error.url} forbade the request (HTTP 403): {message}; grant the connector that permission"
    if isinstance(error, ControlPlaneUnauthorized) or (
        isinstance(error, ControlPlaneRejected) and error.refuses_credentials
    ):
        return credentials_message(error, where=True)
    return str(error)
