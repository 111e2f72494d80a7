"""One resource request, parsed, and what every control-plane call made for it carries.

Pure: the ``Call`` the verbs take (nothing of the web framework in it), the headers and query
parameters passed upstream, the control-plane paths and names of the objects it is about, and
the resourceVersion check every verb makes before anything is sent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from mcp_connector import upstream
from mcp_connector.connector.api.translate import upstream_include_object
from mcp_connector.connector.errors import bad_request, not_found
from mcp_connector.connector.followers.catalog import ServedResource
from mcp_connector.connector.http.auth import User
from mcp_connector.connector.http.media import OBJECT, Output
from mcp_connector.connector.http.params import Params
from mcp_connector.connector.http.routing import ResourceRoute
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract

READ_PARAMS = ("resourceVersion", "resourceVersionMatch", "limit", "continue", "timeoutSeconds")
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Call:
    """One resource request, parsed: what the handlers need and nothing from the web framework.

    ``audit_id``, ``user`` and ``user_agent`` travel to the control plane with every call made
    for this request, so both clusters' audit logs can follow it; ``warnings`` collects the
    control plane's ``Warning`` headers (in app-side terms) for the response.
    """

    route: ResourceRoute
    served: ServedResource
    verb: str
    query: Mapping[str, str]
    #: What the response is, negotiated from the Accept header at the edge (http.media).
    output: Output = OBJECT
    content_type: str = "application/json"
    body: bytes = b""
    audit_id: str = ""
    user: User | None = None
    user_agent: str = ""
    #: The parameters inner code acts on, parsed at the edge (http.params).
    params: Params = field(default_factory=Params)
    #: A PATCH's type from its Content-Type, parsed at the edge (http.bodies.patch_type).
    patch_type: str = ""
    warnings: list[str] = field(default_factory=list, compare=False)


#: Longest User-Agent sent upstream; the app client's own agent is cut to fit.
_MAX_USER_AGENT = 512


def _printable(text: str) -> str:
    """``text`` safe for a header value: printable ASCII only."""
    return "".join(c for c in text if " " <= c <= "~")


def upstream_headers(rt: Runtime, call: Call) -> dict[str, str]:
    """``Audit-ID`` and a ``User-Agent`` naming the app cluster and user, for every control-plane call.

    kube-apiserver takes an incoming ``Audit-ID`` as the audit ID of the request and records the
    User-Agent in its audit events, so the control plane's audit log shows which app cluster and
    user (and which client) a request was made for, under the app cluster's audit ID.
    """
    headers = {}
    if call.audit_id:
        headers["Audit-ID"] = _printable(call.audit_id)[:128]
    if call.user is not None:
        agent = f"{upstream.USER_AGENT} (cluster={rt.cluster_id}; user={call.user.name})"
        if call.user_agent:
            agent += f" {call.user_agent}"
        headers["User-Agent"] = _printable(agent)[:_MAX_USER_AGENT]
    return headers


def field_manager_of(user_agent: str) -> str:
    """The field manager kube-apiserver names after a client that gave none: its User-Agent up to "/".

    The connector's own User-Agent would otherwise name every manager "mcp-connector".
    """
    prefix = user_agent.split("/")[0]
    return "".join(c for c in prefix if unicodedata.category(c)[0] not in ("C", "Z") or c == " ")[:128]


def pick(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The query parameters of ``names`` the request has, to pass on as they are."""
    return {n: query[n] for n in names if n in query}


def write_params(call: Call, names: tuple[str, ...] = ()) -> dict[str, str]:
    """Write parameters to forward, with the field manager kube-apiserver would have derived."""
    params = pick(call.query, (*WRITE_PARAMS, *names))
    if "fieldManager" not in params and call.user_agent:
        manager = field_manager_of(call.user_agent)
        if manager:
            params["fieldManager"] = manager
    return params


def table_params(call: Call) -> dict[str, str]:
    """``includeObject`` for the control plane (only read there when a Table is asked for)."""
    return {"includeObject": upstream_include_object(call.query.get("includeObject"))}


def list_params(rt: Runtime, call: Call, names: tuple[str, ...]) -> dict[str, str]:
    """Selectors confining a list or watch to this cluster/namespace (and the name of a watch of one
    object), plus the passed-through params."""
    try:
        field_labels, fields = contract.translate_field_selector(call.query.get("fieldSelector", ""))
    except contract.ContractError as e:
        raise bad_request(str(e)) from None
    params = pick(call.query, names)
    params["labelSelector"] = contract.combine_selectors(
        contract.scope_selector(rt.cluster_id, call.route.namespace, call.route.name),
        call.query.get("labelSelector"),
        field_labels,
    )
    if fields:
        params["fieldSelector"] = fields
    return params


def collection_path(rt: Runtime, served: ServedResource) -> upstream.ApiPath:
    """Where the served kind's objects of every app namespace live: the claim namespace."""
    return upstream.api_path(
        "apis", served.group, served.version.name, "namespaces", rt.claim_namespace, served.api.plural
    )


def object_path(rt: Runtime, served: ServedResource, hashed: str, subresource: str | None = None) -> upstream.ApiPath:
    """The control-plane path of one object (or its subresource) under its hashed name."""
    path = collection_path(rt, served).child(hashed)
    return path.child(subresource) if subresource else path


def hashed_name(call: Call, ref: contract.AppRef) -> str:
    """The control-plane name of ``ref`` for the kind being served (``claim-`` or ``nxr-``)."""
    return contract.control_plane_name(ref, flavor=call.served.api.flavor)


def app_ref(rt: Runtime, route: ResourceRoute, name: str | None = None) -> contract.AppRef:
    """The app object a request names; invalid names cannot exist, so they are simply not found."""
    name = name or route.name or ""
    namespace = route.namespace or ""
    try:
        contract.ownership_labels(contract.AppRef(rt.cluster_id, namespace, name))
    except contract.ContractError:
        raise not_found(route.group, route.plural, name) from None
    return contract.AppRef(rt.cluster_id, namespace, name)


def check_resource_version(query: Mapping[str, str]) -> None:
    """400 for a resourceVersion the control plane cannot parse.

    The control plane's resourceVersions are etcd revisions (uint64). For a list it refuses any
    other value with a 400, but for a get or a watch it answers 500: a client error must not
    reach the app user as a server failure, so every verb gets the list's 400 here.
    """
    value = query.get("resourceVersion", "")
    if not value:
        return
    if not _DIGITS.fullmatch(value):
        reason = "invalid syntax"
    elif len(value) > 20 or int(value) >= 2**64:
        reason = "value out of range"
    else:
        return
    raise bad_request(
        f'invalid resource version: resourceVersion: Invalid value: "{value}": '
        f'strconv.ParseUint: parsing "{value}": {reason}'
    )
