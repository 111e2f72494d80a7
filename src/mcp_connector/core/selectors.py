"""Field and label selectors, parsed once for everyone who reads them the way kube-apiserver does.

Three readers: authorization, the cache, and the contract, which translates an app-side field
selector for the control plane. The app cluster's kube-apiserver authorizes a list or watch with
the name a ``metadata.name=X`` field selector requires, and (since selector authorization) with
the selectors' requirements; the connector's own SubjectAccessReview must ask the same question,
or a request the app cluster allowed is refused here. The cache filters objects by the same
requirements, so all agree on what a selector says. Label keys and values are checked by
``core.names`` (apimachinery's rules: a key's prefix is a DNS subdomain of at most 253
characters, which a regular expression here let through). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mcp_connector.core import names

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_INT64 = range(-(2**63), 2**63)

#: The operators a SubjectAccessReview's selector requirements can carry (metav1.LabelSelectorRequirement).
SAR_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


def _int64(text: str | None) -> int | None:
    """``text`` as Go's strconv.ParseInt(text, 10, 64) reads it, None where that fails."""
    if text is None or not _INTEGER.match(text):
        return None
    value = int(text)
    return value if value in _INT64 else None


@dataclass(frozen=True)
class Requirement:
    """One selector requirement: operator In, NotIn, Exists, DoesNotExist, or (labels only) Gt, Lt.

    Operators are named as in a SubjectAccessReview; ``Gt``/``Lt`` parse (labels.Parse takes
    ``k>1``) but have no SubjectAccessReview form (see ``authorizable``).
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()
    #: ``values`` as a set, as labels.Requirement keeps them: a selector may hold a hundred thousand
    #: values (1 MiB of request line), and every watch's requirements meet every change.
    members: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", frozenset(self.values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` meet this requirement, as labels.Requirement.Matches decides."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.members
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.members
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        value, bound = _int64(labels.get(self.key)), _int64(self.values[0])
        if value is None or bound is None:
            return False
        return value > bound if self.operator == "Gt" else value < bound


def authorizable(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """The requirements a SubjectAccessReview can carry; the others are left out, as kube-apiserver
    leaves them out (requirements are ANDed, so the question asked is only ever broader)."""
    return tuple(r for r in requirements if r.operator in SAR_OPERATORS)


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
    """A label selector's requirements sorted by key, or None when it does not parse (labels.Parse).

    ``k=v``/``k==v``/``k in (..)`` require In, ``k!=v``/``k notin (..)`` NotIn, ``k`` Exists,
    ``!k`` DoesNotExist, ``k>1`` Gt and ``k<1`` Lt; values of a set are sorted. Keys and values
    must be valid label keys and values, and a Gt/Lt bound a 64-bit integer.
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
        if key is None or names.label_key(key):
            return None
        nxt = peek()
        if negated:
            requirement = Requirement(key, "DoesNotExist")
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
                if not expect_value or names.label_value(item):
                    return None
                values.add(item)
                expect_value = False
            if expect_value:  # "(a,)" holds "", and so does "()", as labels.Parse reads them
                values.add("")
            requirement = Requirement(key, "In" if nxt == "in" else "NotIn", tuple(sorted(values)))
        elif nxt in ("=", "==", "!="):
            take()
            value = "" if peek() in (None, ",") else take()
            if value is None or names.label_value(value):
                return None
            requirement = Requirement(key, "NotIn" if nxt == "!=" else "In", (value,))
        elif nxt in (">", "<"):
            take()
            number = take()
            # A label value that strconv.ParseInt reads as an int64, as labels.NewRequirement checks.
            if number is None or names.label_value(number) or _int64(number) is None:
                return None
            requirement = Requirement(key, "Gt" if nxt == ">" else "Lt", (number,))
        else:
            return None
        requirements.append(requirement)
        separator = take()
        if separator not in (None, ","):
            return None
        if separator == "," and peek() is None:
            return None
    return tuple(sorted(requirements, key=lambda r: r.key))
