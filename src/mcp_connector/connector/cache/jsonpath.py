"""The JSONPath subset CRD printer columns use, evaluated as client-go's jsonpath evaluates it.

``additionalPrinterColumns`` are "simple JSON paths": fields (``.status.phase``), indexes
(``[0]``), wildcards (``[*]``) and equality filters (``[?(@.type=='Ready')]``). ``compile``
returns None for anything else (recursive descent, slices, unions), and the connector then
asks the control plane for the Table instead of guessing. Missing keys yield no result, as
with ``AllowMissingKeys(true)``. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Step = Callable[[list[Any]], list[Any]]
_FIELD = re.compile(r"\.([A-Za-z0-9_\-$/]+)")
_QUOTED_FIELD = re.compile(r"\[\s*'([^']*)'\s*\]")
_INDEX = re.compile(r"\[\s*(-?[0-9]+)\s*\]")
_WILDCARD = re.compile(r"\[\s*\*\s*\]|\.\*")
_FILTER = re.compile(
    r"\[\?\(\s*@((?:\.[A-Za-z0-9_\-$/]+)+)\s*(==|!=)\s*('([^']*)'|\"([^\"]*)\"|-?[0-9]+(?:\.[0-9]+)?)\s*\)\]"
)


def _field(name: str) -> Step:
    return lambda values: [v[name] for v in values if isinstance(v, dict) and name in v]


def _index(i: int) -> Step:
    def step(values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            if isinstance(v, list) and -len(v) <= i < len(v):
                out.append(v[i])
        return out

    return step


def _wildcard(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        elif isinstance(v, dict):
            out.extend(v[k] for k in sorted(v))
    return out


def _filter(path: list[str], op: str, literal: Any) -> Step:
    def holds(element: Any) -> bool:
        current = [element]
        for name in path:
            current = _field(name)(current)
        if not current:
            return False
        equal = current[0] == literal and type(current[0]) is not bool
        return equal if op == "==" else not equal

    def step(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if isinstance(v, list):
                out.extend(e for e in v if holds(e))
        return out

    return step


def compile_path(expression: str) -> Callable[[Any], list[Any]] | None:
    """A function giving every result of ``expression`` on an object, or None if not supported."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    if ".." in text:
        return None
    steps: list[Step] = []
    position = 0
    while position < len(text):
        rest = text[position:]
        if match := _WILDCARD.match(rest):
            steps.append(_wildcard)
        elif (match := _FIELD.match(rest)) or (match := _QUOTED_FIELD.match(rest)):
            steps.append(_field(match.group(1)))
        elif match := _INDEX.match(rest):
            steps.append(_index(int(match.group(1))))
        elif match := _FILTER.match(rest):
            path = match.group(1).split(".")[1:]
            raw = match.group(3)
            literal: Any
            if match.group(4) is not None:
                literal = match.group(4)
            elif match.group(5) is not None:
                literal = match.group(5)
            else:
                literal = float(raw) if "." in raw else int(raw)
            steps.append(_filter(path, match.group(2), literal))
        else:
            return None
        position += match.end()

    def evaluate(obj: Any) -> list[Any]:
        values = [obj]
        for step in steps:
            values = step(values)
        return values

    return evaluate
