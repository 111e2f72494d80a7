"""Field and label selectors read the way kube-apiserver reads them for authorization.

The app cluster's kube-apiserver authorizes a list or watch with the name a
``metadata.name=X`` field selector requires, and (since selector authorization) with the
selectors' requirements; the connector's own SubjectAccessReview must ask the same question,
or a request the app cluster allowed is refused here. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")
_DIGITS = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Requirement:
    """One selector requirement in SubjectAccessReview terms (operator In, NotIn, Exists, DoesNotExist)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


def _split_terms(selector: str) -> list[str]:
    """Split a field selector at unescaped commas (a backslash escapes the next character)."""
    terms, start, escaped = [], 0, False
    for i, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _unescape(value: str) -> str | None:
    out, escaped = [], False
    for char in value:
        if escaped:
            if char not in "\\,=":
                return None
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


def field_requirements(selector: str) -> tuple[Requirement, ...] | None:
    """A field selector's requirements in sorted term order, or None when it does not parse.

    ``a=b`` and ``a==b`` require In, ``a!=b`` NotIn; terms are not trimmed, as in fields.ParseSelector.
    """
    requirements = []
    for term in sorted(t for t in _split_terms(selector) if t):
        found = next(((i, op) for i in range(len(term)) for op in ("!=", "==", "=") if term.startswith(op, i)), None)
        if found is None:
            return None
        index, op = found
        value = _unescape(term[index + len(op) :])
        if value is None:
            return None
        requirements.append(Requirement(term[:index], "NotIn" if op == "!=" else "In", (value,)))
    return tuple(requirements)


def exact_field_match(selector: str, field: str) -> str | None:
    """The value ``selector`` requires ``field`` to equal (the first such term), as RequiresExactMatch finds it."""
    for requirement in field_requirements(selector) or ():
        if requirement.key == field and requirement.operator == "In":
            return requirement.values[0]
    return None


def label_requirements(selector: str) -> tuple[Requirement, ...] | None:
    """A label selector's requirements sorted by key, or None when it does not parse.

    ``k=v``/``k==v``/``k in (..)`` require In, ``k!=v``/``k notin (..)`` NotIn, ``k`` Exists and
    ``!k`` DoesNotExist; values of a set are sorted. ``k>1``/``k<1`` parse but have no
    SubjectAccessReview form and are left out, as kube-apiserver leaves them out.
    """
    tokens: list[str] = _TOKEN.findall(selector)
    if "".join(tokens).replace(" ", "") != "".join(selector.split()):
        return None
    requirements: list[Requirement] = []
    position = 0

    def take() -> str | None:
        nonlocal position
        if position >= len(tokens):
            return None
        position += 1
        return tokens[position - 1]

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    while position < len(tokens):
        token = take()
        negated = token == "!"
        key = take() if negated else token
        if key is None or not _LABEL_KEY.match(key):
            return None
        nxt = peek()
        if negated:
            requirement: Requirement | None = Requirement(key, "DoesNotExist")
        elif nxt in (None, ","):
            requirement = Requirement(key, "Exists")
        elif nxt in ("in", "notin"):
            take()
            if take() != "(":
                return None
            values: set[str] = set()
            expect_value = True
            while (item := take()) != ")":
                if item is None:
                    return None
                if item == ",":
                    if expect_value:
                        values.add("")
                    expect_value = True
                    continue
                if not expect_value or not _LABEL_VALUE.match(item):
                    return None
                values.add(item)
                expect_value = False
            if expect_value:  # "(a,)" holds "", and so does "()", as labels.Parse reads them
                values.add("")
            requirement = Requirement(key, "In" if nxt == "in" else "NotIn", tuple(sorted(values)))
        elif nxt in ("=", "==", "!="):
            take()
            value = "" if peek() in (None, ",") else take()
            if value is None or not _LABEL_VALUE.match(value):
                return None
            requirement = Requirement(key, "NotIn" if nxt == "!=" else "In", (value,))
        elif nxt in (">", "<"):
            take()
            number = take()
            # A label value that strconv.ParseInt reads as an int64, as labels.NewRequirement checks.
            if number is None or not _DIGITS.match(number) or len(number) > 63 or int(number) >= 2**63:
                return None
            requirement = None
        else:
            return None
        if requirement is not None:
            requirements.append(requirement)
        separator = take()
        if separator not in (None, ","):
            return None
        if separator == "," and peek() is None:
            return None
    return tuple(sorted(requirements, key=lambda r: r.key))
