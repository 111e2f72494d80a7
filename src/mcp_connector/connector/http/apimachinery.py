"""The pieces of apimachinery every option parser shares: Go's conversions and the 422 of field errors.

An integer is Go's ``strconv.ParseInt(s, 10, 64)`` (an optional sign and ASCII digits, nothing
else: no spaces, ``1e3``, ``0x10``, ``nan`` or ``1_000``); a boolean parameter is false only for
``0`` or ``false`` in any case. Options that convert but break their type's rules are one 422
naming the options kind and each field, as kube-apiserver's handlers answer. Pure.
"""

from __future__ import annotations

import json
import re

from mcp_connector.connector.errors import ApiError, status_body

_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_RANGE = range(-(2**63), 2**63)

Problem = tuple[str, str, str]  # (field, reason, message)


def go_int64(text: str) -> int:
    """``text`` as strconv.ParseInt(text, 10, 64) reads it; ValueError worded as Go words it."""
    if not _INT64.fullmatch(text):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if value not in _INT64_RANGE:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def in_int64(value: int) -> bool:
    """Whether an integer fits Go's int64."""
    return value in _INT64_RANGE


def go_bool(text: str | None) -> bool:
    """A boolean parameter as apimachinery converts it: absent, ``0`` or ``false`` (any case) is false."""
    return text is not None and text != "0" and text.lower() != "false"


def forbidden(field: str, detail: str) -> Problem:
    return (field, "FieldValueForbidden", f"Forbidden: {detail}")


def unsupported(field: str, value: str, supported: tuple[str, ...]) -> Problem:
    listed = ", ".join(f'"{v}"' for v in supported)
    return (field, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {listed}')


def dry_run_problems(values: tuple[str, ...]) -> list[Problem]:
    """The dryRun rule every write's options share: only ``All``."""
    if all(v == "All" for v in values):
        return []
    shown = json.dumps(list(values), separators=(",", ":"))
    return [("dryRun", "FieldValueNotSupported", f'Unsupported value: {shown}: supported values: "All"')]


def invalid(kind: str, problems: list[Problem]) -> ApiError:
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
