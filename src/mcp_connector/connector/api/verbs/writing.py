"""CREATE, UPDATE and PATCH: the app body translated by ``contract.to_control_plane``.

The ownership labels, hashed name and claim namespace are set by us whatever the body says.
JSON and merge patches are applied here to the app-side view and written back with the
object's resourceVersion (retrying on conflict) rather than forwarded: a forwarded patch would
act on the control-plane object, where it could rewrite the ownership labels or the name before
we could refuse it. Server-side apply is forwarded (after translating the applied body) because
only the control plane can merge managed fields.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from mcp_connector.connector.api import patches
from mcp_connector.connector.api.verbs.admitting import admit, admit_apply
from mcp_connector.connector.api.verbs.calls import call_control_plane, call_control_plane_status
from mcp_connector.connector.api.verbs.ownership import existing_owned, get_owned, pin_uid
from mcp_connector.connector.api.verbs.request import (
    WRITE_PARAMS,
    Call,
    app_ref,
    collection_path,
    hashed_name,
    object_path,
    pick,
    write_params,
)
from mcp_connector.connector.api.verbs.validation import (
    check_fields,
    check_identity,
    check_kind,
    check_namespace,
    check_references,
    stored_form,
)
from mcp_connector.connector.errors import ApiError, bad_request
from mcp_connector.connector.http import bodies
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract, references

_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
#: A patch without a resourceVersion of its own is applied again to the latest object on every
#: conflict, as kube-apiserver's GuaranteedUpdate does until the request times out: others
#: writing the same claim at once (Crossplane, other clients) must not make it fail. Only after
#: this many seconds of conflicts does it give up with a 409.
_CONFLICT_BUDGET_SECONDS = 30.0


def parse_body(call: Call) -> dict[str, Any]:
    """Decode a JSON (or YAML) request body into an object within the body limits; 400/413 otherwise."""
    return bodies.decode_object(call.body, call.content_type)


def generate_name(prefix: str) -> str:
    """What the API server would make of ``generateName``: prefix plus 5 random characters."""
    prefix = prefix[: contract.MAX_LABEL_VALUE - 5]
    return prefix + "".join(secrets.choice(_GENERATE_CHARS) for _ in range(5))


async def create(rt: Runtime, call: Call) -> tuple[int, dict[str, Any]]:
    """POST a claim; ``generateName`` is resolved here because the hash needs the final name."""
    body = parse_body(call)
    check_kind(call, body, required=True)
    check_identity(call, body, None)
    await check_namespace(rt, call.route.namespace or "")
    metadata = body.setdefault("metadata", {})
    name, prefix = metadata.get("name"), metadata.get("generateName")
    if not isinstance(name, str | None) or not isinstance(prefix, str | None):
        raise bad_request("metadata.name and metadata.generateName must be strings")
    attempts = 3 if not name and prefix else 1
    for attempt in range(attempts):
        final = name or (generate_name(prefix) if prefix else "")
        metadata["name"] = final
        check_fields(call, body, final, creating=True)
        check_references(call, final, body, None)
        ref = app_ref(rt, call.route, final)
        body = await admit(rt, call, "CREATE", body, None) or body
        translated = stored_form(rt, call, body, ref, None)
        try:
            created = await call_control_plane(
                rt,
                call,
                "create",
                "POST",
                collection_path(rt, call.served),
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
    check_kind(call, body, required=True)
    check_identity(call, body, call.route.name)
    ref = app_ref(rt, call.route)
    owned = await get_owned(rt, call, ref)
    pin_uid(call, ref, body, owned)
    stored = contract.to_app(owned)
    if call.route.subresource is None:
        check_references(call, ref.name, body, stored)
        body = references.restore(body, stored)
    keep_stored_managed_fields(body, stored)
    body = await admit(rt, call, "UPDATE", body, stored) or body
    translated = stored_form(rt, call, body, ref, stored)
    path = object_path(rt, call.served, hashed_name(call, ref), call.route.subresource)
    updated = await call_control_plane(
        rt, call, "update", "PUT", path, ref=ref, params=write_params(call), json_body=translated
    )
    return contract.to_app(updated)


async def patch(rt: Runtime, call: Call) -> tuple[int, dict[str, Any]]:
    """PATCH a claim or its status (JSON, merge or server-side apply)."""
    kind = call.patch_type  # parsed at the edge (http.bodies.patch_type)
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
    give_up = time.monotonic() + _CONFLICT_BUDGET_SECONDS
    while time.monotonic() < give_up:
        current = contract.to_app(await get_owned(rt, call, ref))
        try:
            patched = (
                patches.json_patch(current, document) if kind == "json" else patches.merge_patch(current, document)
            )
        except patches.PatchError as e:
            raise ApiError.of(422, f"the JSON patch cannot be applied: {e}") from None
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        bodies.check_shape(patched)
        check_kind(call, patched, required=True)
        check_identity(call, patched, ref.name)
        metadata = patched["metadata"]
        pin_uid(call, ref, patched, current)
        if call.route.subresource is None:
            check_references(call, ref.name, patched, current)
            patched = references.restore(patched, current)
        pinned = _asks_for_version(document)
        if not pinned:
            metadata["resourceVersion"] = current["metadata"].get("resourceVersion")
        keep_stored_managed_fields(patched, current)
        patched = await admit(rt, call, "UPDATE", patched, current) or patched
        translated = stored_form(rt, call, patched, ref, current)
        path = object_path(rt, call.served, hashed_name(call, ref), call.route.subresource)
        try:
            updated = await call_control_plane(
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
    check_kind(call, body, required=True)
    check_identity(call, body, ref.name, name_required=False)
    if call.route.subresource is None:
        await check_namespace(rt, ref.namespace)
    existing = await existing_owned(rt, call, ref)
    check_identity(call, body, ref.name, name_required=existing is None)  # an apply that creates names it
    body.setdefault("metadata", {})["name"] = ref.name
    if existing is not None:
        pin_uid(call, ref, body, existing)
    old = contract.to_app(existing) if existing is not None else None
    check_references(call, ref.name, body, old)
    translated = stored_form(rt, call, body, ref, old)
    path = object_path(rt, call.served, hashed_name(call, ref), call.route.subresource)
    if (admitted := await admit_apply(rt, call, ref, path, translated, existing)) is not None:
        rt.claims_changed()
        return admitted[0], contract.to_app(admitted[1])
    code, applied = await call_control_plane_status(
        rt,
        call,
        "apply",
        "PATCH",
        path,
        ref=ref,
        params=pick(call.query, (*WRITE_PARAMS, "force")),
        json_body=translated,
        content_type="application/apply-patch+yaml",
    )
    rt.claims_changed()
    return code, contract.to_app(applied)
