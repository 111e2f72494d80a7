"""The checks kube-apiserver makes on a written body, worded as it words them.

Kind and apiVersion, name and namespace against the URL, name syntax (app names also live in a
label value), references the app user may not set (core.references), owner references, and the
app namespace's existence: writes refused here never reach the control plane.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from mcp_connector import upstream
from mcp_connector.connector.api.verbs.request import Call
from mcp_connector.connector.errors import ApiError, bad_request, status_body
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract, names, references


def check_kind(call: Call, body: Mapping[str, Any], *, required: bool = False) -> None:
    """400 when the body's apiVersion or kind is not the served one (when given, or ``required``)."""
    expected = call.served.api_version
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if (required or api_version) and api_version != expected:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )
    if (required or kind) and kind != call.served.api.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({call.served.api.kind})")


def check_identity(call: Call, body: Mapping[str, Any], name: str | None, *, name_required: bool = True) -> None:
    """400 when the body's metadata is malformed or names another namespace or name than the URL.

    ``name``: the name on the URL (None for a create). As kube-apiserver's ``checkName``, an
    object written to a named URL must carry its name (an update, a patch whose result lost it,
    an apply that creates): a body without one is a 400, never filled in from the URL.
    ``name_required`` False: an apply to an existing object, whose name the merge keeps.
    """
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
    if name is not None and name_required and not metadata.get("name"):
        raise bad_request(f"the name of the object ({name} based on URL) was undeterminable: name must be provided")
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
        found = await upstream.request(rt.app_cluster, "GET", upstream.api_path("api", "v1", "namespaces", namespace))
    except (upstream.ControlPlaneRejected, upstream.InvalidPathSegment) as e:
        if isinstance(e, upstream.InvalidPathSegment) or e.status == 404:
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


def check_fields(call: Call, body: Mapping[str, Any], name: str, *, creating: bool) -> None:
    """422 naming every field kube-apiserver (or the connector, for names it acts on) would refuse.

    The name, ``generateName`` and labels (ValidateObjectMeta on a create, its update rules
    otherwise), owner references (they travel in an annotation the control plane does not
    validate) and the names the connector later acts on (``reference_problems``), all collected
    into one answer as sample-apiserver's field errors.
    """
    metadata = body.get("metadata") or {}
    problems = [
        *name_problems(name),
        *metadata_problems(body, creating=creating),
        *contract.owner_reference_problems(metadata.get("ownerReferences")),
        *reference_problems(body),
    ]
    if problems:
        raise invalid(call, name, problems)


def name_problems(name: str) -> list[tuple[str, Any, str]]:
    """``metadata.name`` as kube-apiserver checks a custom resource's name, plus the label-value length."""
    if not name:
        return [("metadata.name", None, "name or generateName is required")]
    found = [("metadata.name", name, m) for m in names.name_is_dns_subdomain(name)]
    if not found and len(name) > contract.MAX_LABEL_VALUE:
        found.append(
            (
                "metadata.name",
                name,
                f"must be no more than {contract.MAX_LABEL_VALUE} characters "
                "(the connector stores the name as a label value)",
            )
        )
    return found


def metadata_problems(body: Mapping[str, Any], *, creating: bool = True) -> list[tuple[str, Any, str]]:
    """``generateName`` and labels as kube-apiserver checks them: every problem, with its field.

    ``generateName`` only on a create (ValidateObjectMeta): ValidateObjectMetaUpdate leaves it
    alone, and a stored object's generateName names nothing.
    """
    metadata = body.get("metadata") or {}
    found: list[tuple[str, Any, str]] = []
    prefix = metadata.get("generateName")
    if creating and isinstance(prefix, str) and prefix:
        found += [("metadata.generateName", prefix, m) for m in names.name_is_dns_subdomain(prefix, prefix=True)]
    labels = metadata.get("labels")
    for key, value in (labels or {}).items() if isinstance(labels, dict) else ():
        found += [("metadata.labels", key, m) for m in names.label_key(str(key))]
        if isinstance(value, str):
            found += [("metadata.labels", value, m) for m in names.label_value(value)]
    return found


def reference_problems(body: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """Names the connector later acts on, checked as the kind they name: a connection Secret's name.

    ``spec.writeConnectionSecretToRef.name`` becomes a Secret in the control plane and a copy in
    the app namespace, so it must be a Secret name (a DNS-1123 subdomain) for both to exist.
    """
    spec = body.get("spec")
    ref = spec.get("writeConnectionSecretToRef") if isinstance(spec, dict) else None
    if not isinstance(ref, dict) or ref.get("name") in (None, ""):
        return []
    value = ref["name"]
    try:
        names.parse_secret_name(value)
    except names.InvalidName as e:
        return [("spec.writeConnectionSecretToRef.name", value, m) for m in e.messages]
    return []


def check_references(call: Call, name: str, body: Mapping[str, Any], stored: Mapping[str, Any] | None) -> None:
    """Refuse (422) references to control-plane objects the app user may not set (core.references).

    The status subresource is exempt: the control plane takes only ``status`` from it.
    """
    if call.route.subresource is not None:
        return
    found = references.violations(body, stored)
    if found:
        raise _forbidden_references(call, name, found)


def _forbidden_references(call: Call, name: str, found: list[references.Violation]) -> ApiError:
    """The 422 kube-apiserver gives for forbidden fields, one cause per field."""
    causes = [{"reason": "FieldValueForbidden", "message": f"Forbidden: {v.detail}", "field": v.field} for v in found]
    return _unprocessable(call, name, causes)


def stored_form(
    rt: Runtime, call: Call, body: Mapping[str, Any], ref: contract.AppRef, old: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The control-plane object for an app body, after the checks the API server would make on it.

    Called with the object admission gave back: kube-apiserver validates after mutating
    admission, so a webhook's or policy's change is held to the same rules as the tenant's own
    (kind, name and namespace, the references the app user may not set, names and labels).
    ``old``: the stored app-side object on updates.
    """
    check_kind(call, body)
    check_identity(call, body, ref.name)
    check_references(call, ref.name, body, old)
    check_fields(call, body, ref.name, creating=old is None)
    return contract.to_control_plane(body, ref, claim_namespace=rt.claim_namespace, flavor=call.served.api.flavor)


def invalid(call: Call, name: str, problems: list[tuple[str, Any, str]]) -> ApiError:
    """A 422 ``Invalid`` Status worded as kube-apiserver words field errors (a None value: required)."""
    causes = [
        {"reason": "FieldValueRequired", "message": f"Required value: {m}", "field": f}
        if v is None
        else {"reason": "FieldValueInvalid", "message": f"Invalid value: {_go_value(v)}: {m}", "field": f}
        for f, v, m in problems
    ]
    return _unprocessable(call, name, causes)


def _unprocessable(call: Call, name: str, causes: list[dict[str, str]]) -> ApiError:
    """The 422 kube-apiserver gives for field errors: every cause in the message, one per field."""
    kind = call.served.api.kind
    errors = [f"{c['field']}: {c['message']}" for c in causes]
    summary = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
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
