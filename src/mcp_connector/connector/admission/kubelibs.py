"""The Kubernetes CEL libraries policies commonly use, as functions for the CEL environment.

cel-go's Kubernetes environment adds lists (``isSorted``, ``sum``, ``min``, ``max``), regex
(``find``, ``findAll``), ``url`` and ``quantity`` to CEL's standard and extended-strings
libraries. The CEL runtime here cannot return opaque types from Python functions, so a
quantity or URL is a map tagged with one key (``@quantity``: the exact value as a fraction,
``@url``: the URL); two equal quantities compare equal, as ``Quantity.Equal`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from cel_expr_python import cel

T = cel.Type
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
QUANTITY_KEY = "@quantity"
URL_KEY = "@url"
_Q = T.Map(T.STRING, T.STRING)


def parse_quantity(text: str) -> Fraction:
    """A Kubernetes resource quantity's exact value; ValueError for what apimachinery refuses."""
    m = _QUANTITY.match(text.strip()) if len(text) < 128 else None
    if m is None:
        raise ValueError(f"invalid quantity: {text!r}")
    number, suffix = Fraction(Decimal(m.group(1))), m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * Fraction(10) ** _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def _q(value: Fraction) -> dict[str, str]:
    return {QUANTITY_KEY: f"{value.numerator}/{value.denominator}"}


def _qv(q: Any) -> Fraction:
    try:
        return Fraction(q[QUANTITY_KEY])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise ValueError("not a quantity") from None


def _is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except (ValueError, InvalidOperation):
        return False
    return True


def _as_integer(q: Any) -> int:
    value = _qv(q)
    if value.denominator != 1 or not -(2**63) <= value.numerator < 2**63:
        raise ValueError("cannot convert value to integer")
    return value.numerator


def _compare(a: Fraction, b: Fraction) -> int:
    return (a > b) - (a < b)


def _url(text: str) -> dict[str, str]:
    if not _is_url(text):
        raise ValueError(f"URL parse error during conversion from string: {text!r}")
    return {URL_KEY: text}


def _is_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return bool(parts.scheme and (parts.netloc or parts.path.startswith("/"))) or text.startswith("/")


def _part(name: str) -> Callable[[Any], str]:
    def get(u: Any) -> str:
        parts = urlsplit(str(u[URL_KEY]))
        if name == "host":
            return parts.netloc.rpartition("@")[2]
        if name == "hostname":
            return (parts.hostname or "").strip("[]")
        if name == "port":
            return str(parts.port) if parts.port is not None else ""
        if name == "path":
            return parts.path
        return parts.scheme

    return get


def _query(u: Any) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for item in urlsplit(u[URL_KEY]).query.split("&"):
        if item:
            key, _, value = item.partition("=")
            result.setdefault(key, []).append(value)
    return result


def _sorted(values: Sequence[Any]) -> bool:
    return all(values[i] <= values[i + 1] for i in range(len(values) - 1))


def _find_all(s: str, pattern: str, n: int = -1) -> list[str]:
    found = [m.group(0) for m in re.finditer(pattern, s)]
    return found if n < 0 else found[:n]


def _find(s: str, pattern: str) -> str:
    m = re.search(pattern, s)
    return str(m.group(0)) if m else ""


def _member(name: str, ret: Any, params: Sequence[Any], impl: Callable[..., Any]) -> cel.FunctionDecl:
    return cel.FunctionDecl(
        name, [cel.Overload(f"k8s_{name}_{len(params)}", ret, list(params), is_member=True, impl=impl)]
    )


def _global(name: str, ret: Any, params: Sequence[Any], impl: Callable[..., Any]) -> cel.FunctionDecl:
    return cel.FunctionDecl(name, [cel.Overload(f"k8s_{name}", ret, list(params), impl=impl)])


def functions() -> list[cel.FunctionDecl]:
    """Every function of the Kubernetes libraries held here."""
    lst = T.List(T.DYN)
    return [
        # lists
        _member("isSorted", T.BOOL, [lst], _sorted),
        _member("sum", T.DYN, [lst], lambda v: sum(v)),
        _member("min", T.DYN, [lst], lambda v: min(v)),
        _member("max", T.DYN, [lst], lambda v: max(v)),
        # regex
        _member("find", T.STRING, [T.STRING, T.STRING], _find),
        cel.FunctionDecl(
            "findAll",
            [
                cel.Overload("k8s_findAll_1", T.List(T.STRING), [T.STRING, T.STRING], is_member=True, impl=_find_all),
                cel.Overload(
                    "k8s_findAll_2", T.List(T.STRING), [T.STRING, T.STRING, T.INT], is_member=True, impl=_find_all
                ),
            ],
        ),
        # quantity
        _global("quantity", _Q, [T.STRING], lambda s: _q(parse_quantity(s))),
        _global("isQuantity", T.BOOL, [T.STRING], _is_quantity),
        _member("isInteger", T.BOOL, [_Q], lambda q: _qv(q).denominator == 1),
        _member("asInteger", T.INT, [_Q], _as_integer),
        _member("asApproximateFloat", T.DOUBLE, [_Q], lambda q: float(_qv(q))),
        _member("sign", T.INT, [_Q], lambda q: _compare(_qv(q), Fraction(0))),
        _member("add", _Q, [_Q, T.DYN], lambda q, o: _q(_qv(q) + (Fraction(o) if isinstance(o, int) else _qv(o)))),
        _member("sub", _Q, [_Q, T.DYN], lambda q, o: _q(_qv(q) - (Fraction(o) if isinstance(o, int) else _qv(o)))),
        _member("isGreaterThan", T.BOOL, [_Q, _Q], lambda a, b: _qv(a) > _qv(b)),
        _member("isLessThan", T.BOOL, [_Q, _Q], lambda a, b: _qv(a) < _qv(b)),
        _member("compareTo", T.INT, [_Q, _Q], lambda a, b: _compare(_qv(a), _qv(b))),
        # url
        _global("url", _Q, [T.STRING], _url),
        _global("isURL", T.BOOL, [T.STRING], _is_url),
        _member("getScheme", T.STRING, [_Q], _part("scheme")),
        _member("getHost", T.STRING, [_Q], _part("host")),
        _member("getHostname", T.STRING, [_Q], _part("hostname")),
        _member("getPort", T.STRING, [_Q], _part("port")),
        _member("getEscapedPath", T.STRING, [_Q], _part("path")),
        _member("getQuery", T.Map(T.STRING, T.List(T.STRING)), [_Q], _query),
    ]


def _escape_key(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def mutation_functions() -> list[cel.FunctionDecl]:
    """The JSONPatch library MutatingAdmissionPolicy expressions have (``jsonpatch.escapeKey``)."""
    return [_global("jsonpatch.escapeKey", T.STRING, [T.STRING], _escape_key)]
