"""The resource verbs: each app request becomes control-plane calls on the translated object.

Reads are scoped by label selector *and* re-checked object by object; writes go through
``contract.to_control_plane`` so the ownership labels, hashed name and claim namespace are set
by us whatever the body says. JSON and merge patches are applied here to the app-side view and
written back with the object's resourceVersion (retrying on conflict) rather than forwarded:
a forwarded patch would act on the control-plane object, where it could rewrite the ownership
labels or the name before we could refuse it. Server-side apply is forwarded (after
translating the applied body) because only the control plane can merge managed fields.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from mcp_connector import upstream
from mcp_connector.connector import bodies, patches
from mcp_connector.connector.auth import User
from mcp_connector.connector.catalog import ServedResource
from mcp_connector.connector.errors import (
    ApiError,
    bad_request,
    from_control_plane,
    not_found,
    scrub_text,
    status_body,
)
from mcp_connector.connector.metrics import UPSTREAM_SECONDS
from mcp_connector.connector.routing import ResourceRoute
from mcp_connector.connector.runtime import Runtime
from mcp_connector.connector.translate import Scope, body_to_app, table_is_empty, upstream_include_object
from mcp_connector.core import contract, references

log = logging.getLogger(__name__)

READ_PARAMS = ("resourceVersion", "resourceVersionMatch", "limit", "continue", "timeoutSeconds")
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_CONFLICT_RETRIES = 5


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
    accept: str = "application/json"
    content_type: str = "application/json"
    body: bytes = b""
    audit_id: str = ""
    user: User | None = None
    user_agent: str = ""
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


def upstream_accept(accept: str) -> str | None:
    """The Accept header to forward: Tables and metadata-only forms pass, protobuf does not."""
    entries = [e.strip() for e in accept.split(",") if e.strip() and "protobuf" not in e and "cbor" not in e]
    if not entries or entries == ["*/*"]:
        return None
    if all(e.split(";")[0] in ("application/json", "*/*") for e in entries):
        return ",".join(entries)
    raise ApiError.of(406, f"only application/json is served, not {accept!r}")


def _pick(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {n: query[n] for n in names if n in query}


def _collection_path(rt: Runtime, served: ServedResource) -> str:
    return f"/apis/{served.group}/{served.version.name}/namespaces/{rt.claim_namespace}/{served.api.plural}"


def _object_path(rt: Runtime, served: ServedResource, hashed: str, subresource: str | None = None) -> str:
    path = f"{_collection_path(rt, served)}/{hashed}"
    return f"{path}/{subresource}" if subresource else path


def _hashed(call: Call, ref: contract.AppRef) -> str:
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


async def _cp(
    rt: Runtime, call: Call, verb: str, method: str, path: str, *, ref: contract.AppRef | None, **kwargs: Any
) -> dict[str, Any]:
    return (await _cp_status(rt, call, verb, method, path, ref=ref, **kwargs))[1]


async def _cp_status(
    rt: Runtime, call: Call, verb: str, method: str, path: str, *, ref: contract.AppRef | None, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """One control-plane call made for ``call``: its headers go up, its warnings come back."""
    start = time.monotonic()
    try:
        reply = await upstream.exchange(rt.control_plane, method, path, headers=upstream_headers(rt, call), **kwargs)
    except upstream.ControlPlaneError as e:
        raise from_control_plane(
            e, ref=ref, claim_namespace=rt.claim_namespace, namespace=call.route.namespace
        ) from None
    finally:
        UPSTREAM_SECONDS.labels(verb).observe(time.monotonic() - start)
    call.warnings.extend(app_warnings(rt, reply.warnings, ref, call.route.namespace))
    return reply.status, reply.body


def app_warnings(
    rt: Runtime, warnings: tuple[str, ...], ref: contract.AppRef | None, namespace: str | None
) -> list[str]:
    """Control-plane ``Warning`` headers in app-side terms."""
    if ref is not None:
        return [contract.rewrite_message(w, ref, claim_namespace=rt.claim_namespace) for w in warnings]
    return [scrub_text(w, rt.claim_namespace, namespace) for w in warnings]


def write_params(call: Call, names: tuple[str, ...] = ()) -> dict[str, str]:
    """Write parameters to forward, with the field manager kube-apiserver would have derived."""
    params = _pick(call.query, (*WRITE_PARAMS, *names))
    if "fieldManager" not in params and call.user_agent:
        manager = field_manager_of(call.user_agent)
        if manager:
            params["fieldManager"] = manager
    return params


def parse_body(call: Call) -> dict[str, Any]:
    """Decode a JSON (or YAML) request body into an object within the body limits; 400/413 otherwise."""
    return bodies.decode_object(call.body, call.content_type)


def _check_kind(call: Call, body: Mapping[str, Any], *, required: bool = False) -> None:
    expected = call.served.api_version
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if (required or api_version) and api_version != expected:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )
    if (required or kind) and kind != call.served.api.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({call.served.api.kind})")


def _check_identity(call: Call, body: Mapping[str, Any], name: str | None) -> None:
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object")
    for key in ("labels", "annotations"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, dict):
            raise bad_request(f"metadata.{key} must be an object of strings")
    namespace = metadata.get("namespace")
    if namespace and namespace != call.route.namespace:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    if name is not None and metadata.get("name") and metadata.get("name") != name:
        raise bad_request(
            f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({name})"
        )


async def check_namespace(rt: Runtime, namespace: str) -> None:
    """Refuse writes that could create a claim in a missing or terminating app namespace.

    The API server does this for built-in kinds; without it, a claim created while its
    namespace is being deleted would be orphaned in the control plane.
    """
    try:
        # Quoted: the segment comes from the URL as the user sent it (control characters included).
        found = await upstream.request(rt.app_cluster, "GET", f"/api/v1/namespaces/{quote(namespace, safe='')}")
    except upstream.ControlPlaneRejected as e:
        if e.status == 404:
            raise ApiError.of(
                404, f'namespaces "{namespace}" not found', details={"name": namespace, "kind": "namespaces"}
            ) from None
        raise ApiError.of(503, "the app cluster did not answer a namespace lookup") from None
    except upstream.ControlPlaneError:
        raise ApiError.of(503, "the app cluster did not answer a namespace lookup") from None
    if (found.get("status") or {}).get("phase") == "Terminating":
        raise ApiError.of(
            403,
            f"unable to create new content in namespace {namespace} because it is being terminated",
            details={
                "name": namespace,
                "kind": "namespaces",
                "causes": [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated"}],
            },
        )


def _invalid_name(call: Call, name: str, reason: str) -> ApiError:
    kind = call.served.api.kind
    return ApiError(
        status_body(
            422,
            f'{kind}.{call.served.group} "{name}" is invalid: metadata.name: Invalid value: "{name}": {reason}',
            details={
                "name": name,
                "group": call.served.group,
                "kind": kind,
                "causes": [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f'Invalid value: "{name}": {reason}',
                        "field": "metadata.name",
                    }
                ],
            },
        )
    )


def _forbidden_references(call: Call, name: str, found: list[references.Violation]) -> ApiError:
    """The 422 kube-apiserver gives for forbidden fields, one cause per field."""
    kind = call.served.api.kind
    errors = [f"{v.field}: Forbidden: {v.detail}" for v in found]
    listed = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    return ApiError(
        status_body(
            422,
            f'{kind}.{call.served.group} "{name}" is invalid: {listed}',
            details={
                "name": name,
                "group": call.served.group,
                "kind": kind,
                "causes": [
                    {"reason": "FieldValueForbidden", "message": f"Forbidden: {v.detail}", "field": v.field}
                    for v in found
                ],
            },
        )
    )


def check_references(call: Call, name: str, body: Mapping[str, Any], stored: Mapping[str, Any] | None) -> None:
    """Refuse (422) references to control-plane objects the app user may not set (core.references).

    The status subresource is exempt: the control plane takes only ``status`` from it.
    """
    if call.route.subresource is not None:
        return
    found = references.violations(body, stored)
    if found:
        raise _forbidden_references(call, name, found)


def validate_name(call: Call, name: str) -> None:
    """App names must be DNS subdomains that also fit in a label value (the contract stores them there)."""
    if not name:
        raise _invalid_name(call, name, "name or generateName is required")
    if len(name) > contract.MAX_LABEL_VALUE or not _NAME.match(name):
        raise _invalid_name(
            call,
            name,
            "a lowercase RFC 1123 subdomain of at most 63 characters is required "
            "(the connector stores it as a label value)",
        )


def _stored_form(rt: Runtime, call: Call, body: Mapping[str, Any], ref: contract.AppRef) -> dict[str, Any]:
    """The control-plane object for an app body, after the checks the API server would make.

    Owner references travel in an annotation the control plane does not validate, so they
    are checked here as kube-apiserver checks them (422 naming each bad field).
    """
    metadata = body.get("metadata") or {}
    problems = contract.owner_reference_problems(metadata.get("ownerReferences"))
    if problems:
        raise invalid(call, ref.name, problems)
    return contract.to_control_plane(body, ref, claim_namespace=rt.claim_namespace, flavor=call.served.api.flavor)


def invalid(call: Call, name: str, problems: list[tuple[str, Any, str]]) -> ApiError:
    """A 422 ``Invalid`` Status worded as kube-apiserver words field errors."""
    kind = call.served.api.kind
    causes = [
        {"reason": "FieldValueInvalid", "message": f"Invalid value: {_go_value(v)}: {m}", "field": f}
        for f, v, m in problems
    ]
    details = [f"{c['field']}: {c['message']}" for c in causes]
    summary = details[0] if len(details) == 1 else f"[{', '.join(details)}]"
    return ApiError(
        status_body(
            422,
            f'{kind}.{call.served.group} "{name}" is invalid: {summary}',
            details={"name": name, "group": call.served.group, "kind": kind, "causes": causes},
        )
    )


def _go_value(value: Any) -> str:
    """A field value as Go's %#v quotes strings in field errors (other values as JSON)."""
    return orjson.dumps(value).decode()


def generate_name(prefix: str) -> str:
    """What the API server would make of ``generateName``: prefix plus 5 random characters."""
    prefix = prefix[: contract.MAX_LABEL_VALUE - 5]
    return prefix + "".join(secrets.choice(_GENERATE_CHARS) for _ in range(5))


def _to_app_or_404(call: Call, body: dict[str, Any], ref: contract.AppRef) -> dict[str, Any]:
    scope = Scope(ref.cluster_id, ref.namespace)
    if body.get("kind") == "Table":
        translated = body_to_app(body, scope, call.query.get("includeObject"))
        if translated is None or table_is_empty(translated):
            raise not_found(call.served.group, call.served.api.plural, ref.name)
        return translated
    if body.get("kind") == "Status":
        return body
    if not scope.admits_ref(body, ref):
        raise not_found(call.served.group, call.served.api.plural, ref.name)
    return contract.to_app(body)


async def _get_owned(
    rt: Runtime, call: Call, ref: contract.AppRef, *, subresource: str | None = None
) -> dict[str, Any]:
    path = _object_path(rt, call.served, _hashed(call, ref), subresource)
    body = await _cp(rt, call, "get", "GET", path, ref=ref)
    if not Scope(ref.cluster_id, ref.namespace).admits_ref(body, ref):
        raise not_found(call.served.group, call.served.api.plural, ref.name)
    return body


async def get(rt: Runtime, call: Call) -> dict[str, Any]:
    """GET one claim (or its status), as an object or a Table."""
    ref = app_ref(rt, call.route)
    path = _object_path(rt, call.served, _hashed(call, ref), call.route.subresource)
    body = await _cp(
        rt,
        call,
        "get",
        "GET",
        path,
        ref=ref,
        params={**_pick(call.query, ("resourceVersion",)), **table_params(call)},
        accept=upstream_accept(call.accept),
    )
    return _to_app_or_404(call, body, ref)


def table_params(call: Call) -> dict[str, str]:
    """``includeObject`` for the control plane (only read there when a Table is asked for)."""
    return {"includeObject": upstream_include_object(call.query.get("includeObject"))}


def list_params(rt: Runtime, call: Call, names: tuple[str, ...]) -> dict[str, str]:
    """Selectors confining a list or watch to this cluster/namespace, plus the passed-through params."""
    try:
        field_labels, fields = contract.translate_field_selector(call.query.get("fieldSelector", ""))
    except contract.ContractError as e:
        raise bad_request(str(e)) from None
    params = _pick(call.query, names)
    params["labelSelector"] = contract.combine_selectors(
        contract.scope_selector(rt.cluster_id, call.route.namespace),
        call.query.get("labelSelector"),
        field_labels,
    )
    if fields:
        params["fieldSelector"] = fields
    return params


async def list_(rt: Runtime, call: Call) -> dict[str, Any]:
    """LIST claims in one namespace or all, scoped to this cluster."""
    body = await _cp(
        rt,
        call,
        "list",
        "GET",
        _collection_path(rt, call.served),
        ref=None,
        params={**list_params(rt, call, READ_PARAMS), **table_params(call)},
        accept=upstream_accept(call.accept),
    )
    translated = body_to_app(body, Scope(rt.cluster_id, call.route.namespace), call.query.get("includeObject"))
    assert translated is not None  # lists are never dropped, only filtered
    return translated


async def create(rt: Runtime, call: Call) -> tuple[int, dict[str, Any]]:
    """POST a claim; ``generateName`` is resolved here because the hash needs the final name."""
    body = parse_body(call)
    _check_kind(call, body, required=True)
    _check_identity(call, body, None)
    await check_namespace(rt, call.route.namespace or "")
    metadata = body.setdefault("metadata", {})
    name, prefix = metadata.get("name"), metadata.get("generateName")
    attempts = 3 if not name and prefix else 1
    for attempt in range(attempts):
        final = name or (generate_name(prefix) if prefix else "")
        validate_name(call, final)
        metadata["name"] = final
        check_references(call, final, body, None)
        ref = app_ref(rt, call.route, final)
        translated = _stored_form(rt, call, body, ref)
        try:
            created = await _cp(
                rt,
                call,
                "create",
                "POST",
                _collection_path(rt, call.served),
                ref=ref,
                params=write_params(call),
                json_body=translated,
            )
        except ApiError as e:
            if e.code == 409 and attempt + 1 < attempts:
                continue
            raise
        rt.claims_changed()
        return 201, contract.to_app(created)
    raise AssertionError("unreachable")


async def update(rt: Runtime, call: Call) -> dict[str, Any]:
    """PUT a claim or its status, pinned to the object this app ref owns.

    The hashed name alone could name another namespace's claim (see contract.owned_by), and a
    PUT to it would overwrite and relabel that claim: the owned object is read first (404 when
    the name is not ours) and its uid goes into the body, so the control plane refuses (409)
    if the name changed hands in between.
    """
    body = parse_body(call)
    _check_kind(call, body, required=True)
    _check_identity(call, body, call.route.name)
    ref = app_ref(rt, call.route)
    owned = await _get_owned(rt, call, ref)
    _pin_uid(call, ref, body, owned)
    stored = contract.to_app(owned)
    if call.route.subresource is None:
        check_references(call, ref.name, body, stored)
        body = references.restore(body, stored)
    keep_stored_managed_fields(body, stored)
    translated = _stored_form(rt, call, body, ref)
    path = _object_path(rt, call.served, _hashed(call, ref), call.route.subresource)
    updated = await _cp(rt, call, "update", "PUT", path, ref=ref, params=write_params(call), json_body=translated)
    return contract.to_app(updated)


def _uid_conflict(call: Call, ref: contract.AppRef, given: Any, actual: str) -> ApiError:
    """The 409 kube-apiserver gives when a uid precondition does not hold."""
    resource = f"{call.served.api.plural}.{call.served.group}"
    return ApiError.of(
        409,
        f'Operation cannot be fulfilled on {resource} "{ref.name}": '
        f"Precondition failed: UID in precondition: {given}, UID in object meta: {actual}",
        details={"name": ref.name, "group": call.served.group, "kind": call.served.api.plural},
    )


def _pin_uid(call: Call, ref: contract.AppRef, body: dict[str, Any], owned: Mapping[str, Any]) -> None:
    """Make ``body`` carry the owned object's uid; a different uid from the caller is a 409."""
    metadata = body.setdefault("metadata", {})
    uid = str(owned["metadata"]["uid"])
    given = metadata.get("uid")
    if given and given != uid:
        raise _uid_conflict(call, ref, given, uid)
    metadata["uid"] = uid


def patch_kind(content_type: str) -> str:
    """Which patch a Content-Type asks for; 415 for the ones custom resources do not take."""
    kind = patches.PATCH_TYPES.get(content_type.split(";")[0].strip().lower())
    if kind in (None, "strategic", "apply-cbor"):
        raise ApiError.of(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(patches.SUPPORTED_PATCH_TYPES)}",
        )
    return kind


async def patch(rt: Runtime, call: Call) -> tuple[int, dict[str, Any]]:
    """PATCH a claim or its status (JSON, merge or server-side apply)."""
    kind = patch_kind(call.content_type)
    ref = app_ref(rt, call.route)
    if kind == "apply":
        return await _apply(rt, call, ref)
    document = bodies.decode(call.body, "application/json")
    if kind == "json" and isinstance(document, list) and len(document) > patches.MAX_JSON_PATCH_OPERATIONS:
        raise ApiError.of(
            413,
            f"The allowed maximum operations in a JSON patch is {patches.MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(document)}",
            reason="RequestEntityTooLarge",
        )
    for _ in range(_CONFLICT_RETRIES):
        current = contract.to_app(await _get_owned(rt, call, ref))
        try:
            patched = (
                patches.json_patch(current, document) if kind == "json" else patches.merge_patch(current, document)
            )
        except patches.PatchError as e:
            raise ApiError.of(422, f"the JSON patch cannot be applied: {e}") from None
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        bodies.check_shape(patched)
        _check_kind(call, patched, required=True)
        _check_identity(call, patched, ref.name)
        metadata = patched.setdefault("metadata", {})
        if not metadata.get("name"):
            metadata["name"] = ref.name
        _pin_uid(call, ref, patched, current)
        if call.route.subresource is None:
            check_references(call, ref.name, patched, current)
            patched = references.restore(patched, current)
        pinned = _asks_for_version(document)
        if not pinned:
            metadata["resourceVersion"] = current["metadata"].get("resourceVersion")
        keep_stored_managed_fields(patched, current)
        translated = _stored_form(rt, call, patched, ref)
        path = _object_path(rt, call.served, _hashed(call, ref), call.route.subresource)
        try:
            updated = await _cp(
                rt, call, "patch", "PUT", path, ref=ref, params=write_params(call), json_body=translated
            )
        except ApiError as e:
            if e.code == 409 and not pinned:
                continue
            raise
        return 200, contract.to_app(updated)
    raise ApiError.of(
        409,
        f'Operation cannot be fulfilled on {call.served.api.resource} "{ref.name}": '
        "the object kept changing; please retry",
    )


def keep_stored_managed_fields(body: dict[str, Any], current: Mapping[str, Any]) -> None:
    """Leave the control plane's managedFields as they are unless the request changed them.

    The app-side managedFields lack the connector's own fields; written back unchanged they
    would replace the stored ones and drop those. kube-apiserver keeps the stored set when a
    write does not set managedFields, so an unchanged set is simply not sent.
    """
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") == (current.get("metadata") or {}).get(
        "managedFields"
    ):
        metadata.pop("managedFields", None)


def _asks_for_version(document: Any) -> bool:
    """True when the patch itself sets metadata.resourceVersion (an explicit precondition)."""
    if isinstance(document, dict):
        return bool((document.get("metadata") or {}).get("resourceVersion"))
    return any(isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in document or [])


async def _apply(rt: Runtime, call: Call, ref: contract.AppRef) -> tuple[int, dict[str, Any]]:
    body = bodies.decode_object(call.body, "application/yaml")
    _check_kind(call, body, required=True)
    _check_identity(call, body, ref.name)
    body.setdefault("metadata", {})["name"] = ref.name
    if call.route.subresource is None:
        await check_namespace(rt, ref.namespace)
    existing = await _existing_owned(rt, call, ref)
    if existing is not None:
        _pin_uid(call, ref, body, existing)
    check_references(call, ref.name, body, contract.to_app(existing) if existing is not None else None)
    translated = _stored_form(rt, call, body, ref)
    path = _object_path(rt, call.served, _hashed(call, ref), call.route.subresource)
    code, applied = await _cp_status(
        rt,
        call,
        "apply",
        "PATCH",
        path,
        ref=ref,
        params=_pick(call.query, (*WRITE_PARAMS, "force")),
        json_body=translated,
        content_type="application/apply-patch+yaml",
    )
    rt.claims_changed()
    return code, contract.to_app(applied)


def _pinned_to(call: Call, ref: contract.AppRef, options: Any, owned: Mapping[str, Any]) -> dict[str, Any]:
    """DeleteOptions with a uid precondition: the control plane refuses if the name changed hands.

    A caller's own uid precondition is honoured: when it is not the owned object's uid the
    answer is the 409 kube-apiserver gives, never a delete of whatever holds the name.
    """
    pinned = dict(options or {"kind": "DeleteOptions", "apiVersion": "v1"})
    preconditions = dict(pinned.get("preconditions") or {})
    uid = str(owned["metadata"]["uid"])
    given = preconditions.get("uid")
    if given and given != uid:
        raise _uid_conflict(call, ref, given, uid)
    pinned["preconditions"] = {**preconditions, "uid": uid}
    return pinned


async def _existing_owned(rt: Runtime, call: Call, ref: contract.AppRef) -> dict[str, Any] | None:
    """The control-plane object ``ref`` owns, None when there is none; 409 when another app object
    holds ``ref``'s hashed name (see contract.owned_by).

    A server-side apply is forwarded as is, and with ``force`` it would take over whatever
    object sits under the hashed name, so the owner is checked first and its uid pinned.
    """
    path = _object_path(rt, call.served, _hashed(call, ref))
    try:
        existing = await _cp(rt, call, "get", "GET", path, ref=ref)
    except ApiError as e:
        if e.code == 404:
            return None
        raise
    if not contract.owned_by(existing, ref):
        raise ApiError.of(
            409,
            f'{call.served.api.resource} "{ref.name}" cannot be stored: its control-plane name is taken by '
            "another claim; choose another name",
            reason="AlreadyExists",
        )
    return existing


def _delete_options(call: Call) -> Any:
    if not call.body.strip():
        return None
    options = bodies.decode(call.body, call.content_type)
    if not isinstance(options, dict):
        raise bad_request("the DeleteOptions body must be a JSON object")
    return options


async def _delete_one(rt: Runtime, call: Call, ref: contract.AppRef, options: Any) -> tuple[int, dict[str, Any]]:
    path = _object_path(rt, call.served, _hashed(call, ref))
    params = _pick(call.query, DELETE_PARAMS)
    code, body = await _cp_status(rt, call, "delete", "DELETE", path, ref=ref, params=params, json_body=options)
    if body.get("kind") == "Status":
        return code, contract.rewrite_status(body, ref, claim_namespace=rt.claim_namespace)
    return code, contract.to_app(body) if contract.app_ref_of(body) == ref else body


async def delete(rt: Runtime, call: Call) -> tuple[int, dict[str, Any]]:
    """DELETE one claim, after checking it is this cluster's and namespace's."""
    options = _delete_options(call)
    ref = app_ref(rt, call.route)
    owned = await _get_owned(rt, call, ref)
    result = await _delete_one(rt, call, ref, _pinned_to(call, ref, options, owned))
    rt.claims_changed()
    return result


async def delete_collection(rt: Runtime, call: Call) -> dict[str, Any]:
    """DELETE every claim a (scoped) list finds, one by one."""
    options = _delete_options(call)
    listed = await _cp(
        rt,
        call,
        "deletecollection",
        "GET",
        _collection_path(rt, call.served),
        ref=None,
        params=list_params(rt, call, ("resourceVersion", "resourceVersionMatch")),
    )
    scope = Scope(rt.cluster_id, call.route.namespace)
    deleted = []
    for item in listed.get("items") or []:
        ref = contract.app_ref_of(item)
        if ref is None or not scope.admits(item):
            continue
        try:
            _, result = await _delete_one(rt, call, ref, _pinned_to(call, ref, options, item))
        except ApiError as e:
            if e.code == 404:
                continue
            raise
        deleted.append(result if result.get("kind") != "Status" else contract.to_app(item))
    rt.claims_changed()
    return {
        "kind": call.served.api.list_kind,
        "apiVersion": call.served.api_version,
        "metadata": {"resourceVersion": str((listed.get("metadata") or {}).get("resourceVersion") or "")},
        "items": deleted,
    }


_DIGITS = re.compile(r"[0-9]+")


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
