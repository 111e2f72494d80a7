"""Query parameters parsed as kube-apiserver's parameter codec parses them, per verb.

kube-apiserver decodes a request's query into the options type of its verb (ListOptions for
list, watch and deletecollection, DeleteOptions for delete and deletecollection) with
apimachinery's conversions (``apimachinery``): the first value of a repeated parameter counts,
and an integer that does not convert is a 400. Parameters a verb does not decode are ignored, as
there; a delete's options are ``delete_options``'s, from its body or its query. The parsed values
get a type of their own (``Params``), so the cache's watch deadline and page size never read a
raw tenant string. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcp_connector.connector.errors import bad_request
from mcp_connector.connector.http import delete_options
from mcp_connector.connector.http.apimachinery import (
    Problem,
    dry_run_problems,
    forbidden,
    go_int64,
    invalid,
    unsupported,
)
from mcp_connector.connector.http.delete_options import DeleteOptions

#: The integer parameters each verb's ListOptions holds (a delete's are in delete_options).
_INTEGERS: Mapping[str, tuple[str, ...]] = {
    "list": ("timeoutSeconds", "limit"),
    "watch": ("timeoutSeconds", "limit"),
    "deletecollection": ("timeoutSeconds", "limit"),
}


@dataclass(frozen=True)
class Params:
    """The parameters inner code acts on, parsed; everything else is only passed on."""

    #: A watch's timeoutSeconds: None when not given (kube-apiserver then picks its own).
    timeout_seconds: int | None = None
    #: A list's page size; 0 (or less) means all.
    limit: int = 0
    #: A delete's or deletecollection's options, from its body or its query.
    delete: DeleteOptions | None = None


#: Each verb's options type, whose validation kube-apiserver's handler runs (422 naming it).
_OPTIONS = {
    "list": "ListOptions",
    "watch": "ListOptions",
    "create": "CreateOptions",
    "update": "UpdateOptions",
    "patch": "PatchOptions",
    "delete": "DeleteOptions",
    "deletecollection": "DeleteOptions",
}
_FIELD_MANAGER_MAX = 128
_FIELD_VALIDATION = ("", "Ignore", "Strict", "Warn")


def parse(
    query: Mapping[str, str],
    verb: str,
    *,
    repeated: Mapping[str, tuple[str, ...]] | None = None,
    body: bytes = b"",
    content_type: str = "application/json",
    apply: bool = False,
) -> Params:
    """The parameters ``verb`` decodes, parsed and validated as kube-apiserver's handler does.

    A value that does not convert is a 400 ``BadRequest``; options that convert but break the
    options type's rules (ValidateListOptions, ValidateDeleteOptions, ValidateCreateOptions, ...)
    are a 422 naming the options kind and each field. ``repeated`` holds every value of the
    list-valued parameters (``dryRun``); a delete's options come from ``body`` when it has any
    bytes (``delete_options``); ``apply``: a server-side apply patch.
    """
    found: dict[str, int] = {}
    for name in _INTEGERS.get(verb, ()):
        text = query.get(name)
        if text is None:
            continue
        try:
            found[name] = go_int64(text)
        except ValueError as e:
            raise bad_request(str(e)) from None
    problems: list[Problem] = []
    if verb in ("list", "watch", "deletecollection"):
        problems += _list_problems(query, watch=verb == "watch")
        if problems:
            raise invalid("ListOptions", problems)
    if verb in ("create", "update", "patch"):
        problems += _write_problems(query, repeated or {}, verb=verb, apply=apply)
    if problems:
        raise invalid(_OPTIONS[verb], problems)
    deleting = verb in ("delete", "deletecollection")
    return Params(
        timeout_seconds=found.get("timeoutSeconds"),
        limit=found.get("limit", 0),
        delete=delete_options.parse(query, repeated or {}, body, content_type) if deleting else None,
    )


def _list_problems(query: Mapping[str, str], *, watch: bool) -> list[Problem]:
    """ValidateListOptions, with the WatchList feature on (its default since Kubernetes 1.34)."""
    match, version = query.get("resourceVersionMatch", ""), query.get("resourceVersion", "")
    initial = query.get("sendInitialEvents")
    found: list[Problem] = []
    if watch:
        if initial is not None and match != "NotOlderThan":
            found.append(
                forbidden(
                    "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                )
            )
        if match:
            if initial is None:
                found.append(
                    forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    )
                )
            if match != "NotOlderThan":
                found.append(unsupported("resourceVersionMatch", match, ("NotOlderThan",)))
        # A watch does not continue a list: kube-apiserver 1.35 refuses a continue token on a watch
        # unless the watch is a WatchList without a resourceVersionMatch (refused for that instead).
        if query.get("continue") and (match or initial is None):
            found.append(
                forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
            )
        return found
    if match:
        if not version:
            found.append(
                forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"
                )
            )
        if query.get("continue"):
            found.append(
                forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
            )
        if match not in ("Exact", "NotOlderThan"):
            found.append(unsupported("resourceVersionMatch", match, ("Exact", "NotOlderThan", "")))
        if match == "Exact" and version == "0":
            found.append(
                forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            )
    if initial is not None:
        found.append(forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    return found


def _write_problems(
    query: Mapping[str, str], repeated: Mapping[str, tuple[str, ...]], *, verb: str, apply: bool
) -> list[Problem]:
    """ValidateCreateOptions, ValidateUpdateOptions and ValidatePatchOptions."""
    found: list[Problem] = []
    manager = query.get("fieldManager", "")
    if verb == "patch":
        if apply and not manager:
            found.append(("fieldManager", "FieldValueRequired", "Required value: is required for apply patch"))
        if not apply and "force" in query:
            found.append(forbidden("force", "may not be specified for non-apply patch"))
    if len(manager.encode()) > _FIELD_MANAGER_MAX:
        found.append(
            ("fieldManager", "FieldValueTooLong", f"Too long: may not be more than {_FIELD_MANAGER_MAX} bytes")
        )
    for i, char in enumerate(manager):
        if not char.isprintable():
            found.append(
                ("fieldManager", "FieldValueInvalid", f"Invalid value: {manager!r}: invalid character at position {i}")
            )
    found += dry_run_problems(repeated.get("dryRun") or ((query["dryRun"],) if "dryRun" in query else ()))
    validation = query.get("fieldValidation", "")
    if validation not in _FIELD_VALIDATION:
        found.append(unsupported("fieldValidation", validation, _FIELD_VALIDATION))
    return found
