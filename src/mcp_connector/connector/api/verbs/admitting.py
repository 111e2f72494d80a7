"""The verbs' one door to admission: the request as the app cluster's admission sees it.

Each write verb calls ``admit`` once (``admit_apply`` for server-side apply) with the app-side
object and, on updates and deletes, the stored one; what comes back is the object to write,
mutated as the webhooks asked. Nothing here decides anything: the admission room does.
"""

from __future__ import annotations

import copy
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.admission.attributes import Attributes, UserInfo
from mcp_connector.connector.admission.chain import warning_header
from mcp_connector.connector.api.verbs.calls import call_control_plane_status
from mcp_connector.connector.api.verbs.request import WRITE_PARAMS, Call, collection_path, pick, write_params
from mcp_connector.connector.api.verbs.validation import stored_form
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract

_OPTION_PARAMS = ("fieldManager", "fieldValidation")


def _attributes(
    call: Call, operation: str, obj: dict[str, Any] | None, old: dict[str, Any] | None, options: Any
) -> Attributes:
    user = call.user
    raw_options: dict[str, Any]
    if operation == "DELETE":  # a delete's options are whole, parsed from its body or its query
        raw_options = {k: v for k, v in (options or {}).items() if k not in ("kind", "apiVersion")}
        dry_run = "All" in raw_options.get("dryRun", ())
    else:
        raw_options = {k: v for k, v in call.query.items() if k in _OPTION_PARAMS}
        if isinstance(options, dict):
            raw_options.update({k: v for k, v in options.items() if k not in ("kind", "apiVersion")})
        dry_run = call.query.get("dryRun") == "All"
        if dry_run:
            raw_options["dryRun"] = ["All"]
    if obj is not None:
        obj.setdefault("metadata", {})["namespace"] = call.route.namespace or ""
    return Attributes(
        operation=operation,
        group=call.served.group,
        version=call.served.version.name,
        resource=call.served.api.plural,
        kind=call.served.api.kind,
        namespace=call.route.namespace or "",
        name=call.route.name or str(((obj or old or {}).get("metadata") or {}).get("name") or ""),
        object=obj,
        old_object=old,
        user=UserInfo(user.name, user.uid, user.groups, user.extra) if user else UserInfo(""),
        dry_run=dry_run,
        subresource=call.route.subresource or "",
        options=raw_options,
    )


async def admit(
    rt: Runtime,
    call: Call,
    operation: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None,
    options: Any = None,
) -> dict[str, Any] | None:
    """Run the app cluster's admission for one write; the object to write, or ApiError."""
    if rt.admission is None:
        return obj
    attrs = _attributes(call, operation, obj, old, options)
    versions = tuple(v.name for v in call.served.api.versions)
    result = await rt.admission.admit(attrs, versions, call.served.version.schema)
    call.warnings.extend(warning_header(w) for w in result.warnings)
    return result.object


async def admit_apply(
    rt: Runtime, call: Call, ref: contract.AppRef, path: upstream.ApiPath, translated: dict[str, Any], existing: Any
) -> tuple[int, dict[str, Any]] | None:
    """Admission for server-side apply, which sees the applied (merged) object.

    The control plane merges an apply, so the merged object comes from a dry run of it. When
    admission leaves it as it is, None: the apply is then sent as it is. When a webhook mutated
    it, the mutated object (with the dry run's managedFields) is written here instead, pinned to
    the resourceVersion the dry run merged onto.
    """
    if rt.admission is None or rt.admission.snapshot.empty:
        return None
    params = {**pick(call.query, (*WRITE_PARAMS, "force")), "dryRun": "All"}
    _, merged = await call_control_plane_status(
        rt,
        call,
        "apply",
        "PATCH",
        path,
        ref=ref,
        params=params,
        json_body=translated,
        content_type="application/apply-patch+yaml",
    )
    app_side = contract.to_app(merged)
    old = contract.to_app(existing) if existing is not None else None
    admitted = await admit(rt, call, "UPDATE" if old is not None else "CREATE", copy.deepcopy(app_side), old)
    if admitted == app_side or admitted is None:
        return None
    body = stored_form(rt, call, admitted, ref, old)
    if old is None:
        body["metadata"].pop("resourceVersion", None)
        return await call_control_plane_status(
            rt,
            call,
            "apply",
            "POST",
            collection_path(rt, call.served),
            ref=ref,
            params=write_params(call),
            json_body=body,
        )
    return await call_control_plane_status(
        rt, call, "apply", "PUT", path, ref=ref, params=write_params(call), json_body=body
    )
