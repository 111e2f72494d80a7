"""Which cached objects one read or watch selects: namespace, name, label and field selectors.

kube-apiserver's watch cache filters each object by its labels and its ``metadata.name`` and
``metadata.namespace`` fields; the connector's cache does the same with the app-side name and
namespace and the *control-plane* labels (the app labels plus the ownership labels), so a
selector matches exactly what the control plane would have matched under the scope selector
the proxied path sends. A selector this module cannot read exactly (a syntax error, a field the
cache does not index) makes ``parse`` return None: the request then goes to the control plane,
which answers in its own words. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mcp_connector.connector.selectors import field_requirements

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")
_INTEGER = re.compile(r"^-?[0-9]+$")

#: A test of one label set, as labels.Requirement.Matches does.
LabelTest = Callable[[Mapping[str, str]], bool]


def _requirement(key: str, op: str, values: tuple[str, ...]) -> LabelTest:
    if op == "in":
        return lambda labels: key in labels and labels[key] in values
    if op == "notin":
        return lambda labels: key not in labels or labels[key] not in values
    if op == "exists":
        return lambda labels: key in labels
    if op == "!":
        return lambda labels: key not in labels
    bound = int(values[0])

    def compare(labels: Mapping[str, str]) -> bool:
        value = labels.get(key)
        if value is None or not _INTEGER.match(value) or not -(2**63) <= int(value) < 2**63:
            return False  # strconv.ParseInt(value, 10, 64) fails
        return int(value) > bound if op == "gt" else int(value) < bound

    return compare


def parse_labels(selector: str) -> tuple[LabelTest, ...] | None:
    """The tests of a label selector (all must hold), or None when it does not parse.

    Follows labels.Parse: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``,
    ``!k``, ``k>1``, ``k<1``; keys and values must be valid label keys and values.
    """
    tokens: list[str] = _TOKEN.findall(selector)
    if "".join(tokens).replace(" ", "") != "".join(selector.split()):
        return None
    tests: list[LabelTest] = []
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
            tests.append(_requirement(key, "!", ()))
        elif nxt in (None, ","):
            tests.append(_requirement(key, "exists", ()))
        elif nxt in ("in", "notin"):
            take()
            if take() != "(":
                return None
            values: list[str] = []
            expect_value = True
            while (item := take()) != ")":
                if item is None:
                    return None
                if item == ",":
                    if expect_value:
                        values.append("")
                    expect_value = True
                    continue
                if not expect_value or not _LABEL_VALUE.match(item):
                    return None
                values.append(item)
                expect_value = False
            if expect_value and values:
                values.append("")
            if not values:
                return None
            tests.append(_requirement(key, nxt, tuple(values)))
        elif nxt in ("=", "==", "!="):
            take()
            value = "" if peek() in (None, ",") else take()
            if value is None or not _LABEL_VALUE.match(value):
                return None
            tests.append(_requirement(key, "notin" if nxt == "!=" else "in", (value,)))
        elif nxt in (">", "<"):
            take()
            number = take()
            # A label value that strconv.ParseInt reads as an int64, as labels.NewRequirement checks.
            if number is None or not _LABEL_VALUE.match(number) or not _INTEGER.match(number) or int(number) >= 2**63:
                return None
            tests.append(_requirement(key, "gt" if nxt == ">" else "lt", (number,)))
        else:
            return None
        separator = take()
        if separator not in (None, ","):
            return None
        if separator == "," and peek() is None:
            return None
    return tuple(tests)


@dataclass(frozen=True)
class Selection:
    """What one request selects. ``namespace``/``name`` None select all; tests must all hold.

    ``names``/``namespaces`` hold the field selector's requirements on ``metadata.name`` and
    ``metadata.namespace`` as (value, wanted) pairs: equal when wanted, different otherwise.
    """

    namespace: str | None = None
    name: str | None = None
    labels: tuple[LabelTest, ...] = ()
    names: tuple[tuple[str, bool], ...] = ()
    namespaces: tuple[tuple[str, bool], ...] = ()

    @property
    def exact_name(self) -> str | None:
        """The one name selected, if the path or the field selector names one."""
        if self.name is not None:
            return self.name
        return next((value for value, wanted in self.names if wanted), None)

    def matches(self, namespace: str, name: str, labels: Mapping[str, str]) -> bool:
        """True when an object with this app-side namespace and name and these labels is selected."""
        if self.namespace is not None and namespace != self.namespace:
            return False
        if self.name is not None and name != self.name:
            return False
        if any((name == value) != wanted for value, wanted in self.names):
            return False
        if any((namespace == value) != wanted for value, wanted in self.namespaces):
            return False
        return all(test(labels) for test in self.labels)


def parse(namespace: str | None, name: str | None, label_selector: str, field_selector: str) -> Selection | None:
    """The selection of a request, or None when the cache cannot evaluate it exactly."""
    labels = parse_labels(label_selector) if label_selector.strip() else ()
    if labels is None:
        return None
    requirements = field_requirements(field_selector) if field_selector else ()
    if requirements is None:
        return None
    names: list[tuple[str, bool]] = []
    namespaces: list[tuple[str, bool]] = []
    for requirement in requirements:
        target = {"metadata.name": names, "metadata.namespace": namespaces}.get(requirement.key)
        if target is None:
            return None
        target.append((requirement.values[0], requirement.operator == "In"))
    return Selection(namespace, name, labels, tuple(names), tuple(namespaces))
