"""Query parameters parsed as kube-apiserver's parameter codec parses them, per verb.

kube-apiserver decodes a request's query into the options type of its verb (ListOptions for
list, watch and deletecollection, DeleteOptions for delete and deletecollection) with
apimachinery's conversions: the first value of a repeated parameter counts; integers are Go's
``strconv.ParseInt(s, 10, 64)`` (an optional sign and ASCII digits, nothing else: no spaces,
``1e3``, ``0x10``, ``nan`` or ``1_000``) and a failure is a 400; a boolean is false only for
``0`` or ``false`` in any case, and true for anything else (``yes``, ``""``). Parameters a verb
does not decode are ignored, as there. The parsed values get a type of their own (``Params``),
so the cache's watch deadline and page size never read a raw tenant string. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mcp_connector.connector.errors import ApiError, bad_request, status_body

_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_RANGE = range(-(2**63), 2**63)

#: The integer parameters each verb's options type holds (ListOptions, DeleteOptions).
_INTEGERS: Mapping[str, tuple[str, ...]] = {
    "list": ("timeoutSeconds", "limit"),
    "watch": ("timeoutSeconds", "limit"),
    "deletecollection": ("timeoutSeconds", "limit", "gracePeriodSeconds"),
    "delete": ("gracePeriodSeconds",),
}


def go_int64(text: str) -> int:
    """``text`` as strconv.ParseInt(text, 10, 64) reads it; ValueError worded as Go words it."""
    if not _INT64.fullmatch(text):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if value not in _INT64_RANGE:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def go_bool(text: str | None) -> bool:
    """A boolean parameter as apimachinery converts it: absent, ``0`` or ``false`` (any case) is false."""
    return text is not None and text != "0" and text.lower() != "false"


@dataclass(frozen=True)
class Params:
    """The parameters inner code acts on, parsed; everything else is only passed on."""

    #: A watch's timeoutSeconds: None when not given (kube-apiserver then picks its own).
    timeout_seconds: int | None = None
    #: A list's page size; 0 (or less) means all.
    limit: int = 0
    #: A delete's gracePeriodSeconds, None when not given.
    grace_period_seconds: int | None = None


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
_PROPAGATION = ("Foreground", "Background", "Orphan")

Problem = tuple[str, str, str]  # (field, reason, message)


def parse(
    query: Mapping[str, str],
    verb: str,
    *,
    repeated: Mapping[str, tuple[str, ...]] | None = None,
    has_body: bool = False,
    apply: bool = False,
) -> Params:
    """The parameters ``verb`` decodes, parsed and validated as kube-apiserver's handler does.

    A value that does not convert is a 400 ``BadRequest``; options that convert but break the
    options type's rules (ValidateListOptions, ValidateDeleteOptions, ValidateCreateOptions, ...)
    are a 422 naming the options kind and each field. ``repeated`` holds every value of the
    list-valued parameters (``dryRun``); ``has_body``: a delete's options then come from its body
    and the query is not read for them; ``apply``: a server-side apply patch.
    """
    delete_from_query = not (verb in ("delete", "deletecollection") and has_body)
    found: dict[str, int] = {}
    for name in _INTEGERS.get(verb, ()):
        text = query.get(name)
        if text is None or (name == "gracePeriodSeconds" and not delete_from_query):
            continue
        try:
            found[name] = go_int64(text)
        except ValueError as e:
            raise bad_request(str(e)) from None
    problems: list[Problem] = []
    if verb in ("list", "watch", "deletecollection"):
        problems += _list_problems(query, watch=verb == "watch")
        if problems:
            raise _invalid("ListOptions", problems)
    if verb in ("create", "update", "patch"):
        problems += _write_problems(query, repeated or {}, verb=verb, apply=apply)
    elif verb in ("delete", "deletecollection") and delete_from_query:
        problems += _delete_problems(query, repeated or {})
    if problems:
        raise _invalid(_OPTIONS[verb], problems)
    return Params(
        timeout_seconds=found.get("timeoutSeconds"),
        limit=found.get("limit", 0),
        grace_period_seconds=found.get("gracePeriodSeconds"),
    )


def _list_problems(query: Mapping[str, str], *, watch: bool) -> list[Problem]:
    """ValidateListOptions, with the WatchList feature on (its default since Kubernetes 1.34)."""
    match, version = query.get("resourceVersionMatch", ""), query.get("resourceVersion", "")
    initial = query.get("sendInitialEvents")
    found: list[Problem] = []
    if watch:
        if initial is not None and match != "NotOlderThan":
            found.append(
                _forbidden(
                    "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                )
            )
        if match:
            if initial is None:
                found.append(
                    _forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    )
                )
            if match != "NotOlderThan":
                found.append(_unsupported("resourceVersionMatch", match, ("NotOlderThan",)))
            if query.get("continue"):
                found.append(
                    _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
                )
        return found
    if match:
        if not version:
            found.append(
                _forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"
                )
            )
        if query.get("continue"):
            found.append(
                _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
            )
        if match not in ("Exact", "NotOlderThan"):
            found.append(_unsupported("resourceVersionMatch", match, ("Exact", "NotOlderThan", "")))
        if match == "Exact" and version == "0":
            found.append(
                _forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            )
    if initial is not None:
        found.append(_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    return found


def _dry_run_problems(query: Mapping[str, str], repeated: Mapping[str, tuple[str, ...]]) -> list[Problem]:
    values = repeated.get("dryRun") or ((query["dryRun"],) if "dryRun" in query else ())
    if all(v == "All" for v in values):
        return []
    shown = "[" + " ".join(values) + "]"
    return [("dryRun", "FieldValueNotSupported", f'Unsupported value: {shown}: supported values: "All"')]


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
            found.append(_forbidden("force", "may not be specified for non-apply patch"))
    if len(manager.encode()) > _FIELD_MANAGER_MAX:
        found.append(
            ("fieldManager", "FieldValueTooLong", f"Too long: may not be more than {_FIELD_MANAGER_MAX} bytes")
        )
    for i, char in enumerate(manager):
        if not char.isprintable():
            found.append(
                ("fieldManager", "FieldValueInvalid", f"Invalid value: {manager!r}: invalid character at position {i}")
            )
    found += _dry_run_problems(query, repeated)
    validation = query.get("fieldValidation", "")
    if validation not in _FIELD_VALIDATION:
        found.append(_unsupported("fieldValidation", validation, _FIELD_VALIDATION))
    return found


def _delete_problems(query: Mapping[str, str], repeated: Mapping[str, tuple[str, ...]]) -> list[Problem]:
    """ValidateDeleteOptions."""
    found: list[Problem] = []
    policy = query.get("propagationPolicy")
    if "orphanDependents" in query and policy is not None:
        found.append(
            (
                "propagationPolicy",
                "FieldValueInvalid",
                f'Invalid value: "{policy}": orphanDependents and deletionPropagation cannot be both set',
            )
        )
    if policy is not None and policy not in _PROPAGATION:
        found.append(_unsupported("propagationPolicy", policy, (*_PROPAGATION, "nil")))
    return found + _dry_run_problems(query, repeated)


def _forbidden(field: str, detail: str) -> Problem:
    return (field, "FieldValueForbidden", f"Forbidden: {detail}")


def _unsupported(field: str, value: str, supported: tuple[str, ...]) -> Problem:
    listed = ", ".join(f'"{v}"' for v in supported)
    return (field, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {listed}')


def _invalid(kind: str, problems: list[Problem]) -> ApiError:
    """The 422 kube-apiserver gives for options that break their rules, one cause per problem."""
    errors = [f"{f}: {m}" for f, _, m in problems]
    summary = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    causes = [{"reason": r, "message": m, "field": f} for f, r, m in problems]
    return ApiError(
        status_body(
            422,
            f'{kind}.meta.k8s.io "" is invalid: {summary}',
            details={"group": "meta.k8s.io", "kind": kind, "causes": causes},
        )
    )
