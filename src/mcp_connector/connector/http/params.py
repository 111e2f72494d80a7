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

from mcp_connector.connector.errors import bad_request

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


def parse(query: Mapping[str, str], verb: str) -> Params:
    """The parameters ``verb`` decodes, parsed; a 400 ``BadRequest`` where kube-apiserver gives one."""
    found: dict[str, int] = {}
    for name in _INTEGERS.get(verb, ()):
        text = query.get(name)
        if text is None:
            continue
        try:
            found[name] = go_int64(text)
        except ValueError as e:
            raise bad_request(str(e)) from None
    return Params(
        timeout_seconds=found.get("timeoutSeconds"),
        limit=found.get("limit", 0),
        grace_period_seconds=found.get("gracePeriodSeconds"),
    )
