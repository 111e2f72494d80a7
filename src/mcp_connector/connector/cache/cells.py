"""Table cells printed exactly as apiextensions-apiserver prints them, whatever the value holds.

A printer column's value comes from a tenant's object: it may be a map, a list, null, a huge
number or a string that is no date. kube-apiserver never fails a Table for that; it prints what
Go prints (``TableConvertor.ConvertToTable``): a ``string`` column goes through client-go's
jsonpath ``PrintResults`` (maps and lists as ``json.Marshal`` writes them, numbers as
``fmt.Print`` writes them, a JSON null as ``<no value>``), other columns through
``cellForJSONValue`` (the wrong type gives an empty cell), and a cell that cannot be made is
empty. Numbers are first what Go's JSON decoding made of them: an integer that fits int64 stays
one, anything else is a float64. Pure.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

import orjson

_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:\d{2})", re.ASCII)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_value(value: Any) -> Any:
    """A decoded JSON number as Go's unstructured decoding holds it (int64, else float64)."""
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    return value


def _digits(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of ``abs(value)`` and its decimal point position."""
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits)) or "0"
    assert isinstance(exponent, int)
    return text, len(text) + exponent


def _e_form(digits: str, point: int, separator: str, *, two_digit_exponent: bool) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = point - 1
    width = 2 if two_digit_exponent else 1
    return f"{mantissa}e{'-' if exponent < 0 else separator}{abs(exponent):0{width}d}"


def _f_form(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def go_print_float(value: float) -> str:
    """``fmt.Print`` of a float64 (``%v``: ``strconv``'s shortest ``'g'``, exponent from 1e+06)."""
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    digits, point = _digits(value)
    sign = "-" if value < 0 else ""
    if point - 1 < -4 or point - 1 >= 6:
        return sign + _e_form(digits, point, "+", two_digit_exponent=True)
    return sign + _f_form(digits, point)


def go_json_float(value: float) -> str:
    """``encoding/json``'s float64: plain below 1e21, else ``1e+21`` style (``e-7``, not ``e-07``)."""
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    digits, point = _digits(value)
    sign = "-" if value < 0 else ""
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        return sign + _e_form(digits, point, "+", two_digit_exponent=False)
    return sign + _f_form(digits, point)


def _go_string(text: str) -> str:
    out = []
    for char in text:
        escaped = _ESCAPES.get(char) or _HTML.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def go_json(value: Any) -> str:
    """``json.Marshal`` of a decoded JSON value: sorted keys, compact, HTML characters escaped."""
    value = go_value(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_json_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_string(str(k))}:{go_json(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def string_cell(value: Any) -> str:
    """A ``string`` column's cell: jsonpath ``PrintResults`` of the first result."""
    value = go_value(value)
    if value is None:
        return "<no value>"
    if isinstance(value, dict | list):
        return go_json(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_print_float(value)
    return str(value)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery's duration.HumanDuration, for ages."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m" if whole % 60 == 0 else f"{minutes}m{whole % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_rfc3339(text: str) -> datetime.datetime | None:
    """``time.Parse(time.RFC3339, text)``, or None where Go refuses it."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    zone = match.group(8)
    try:
        offset = datetime.timedelta(0)
        if zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                return None
            offset = datetime.timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
        micro = int((fraction + "000000")[:6])
        return datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=datetime.timezone(offset))
    except ValueError:
        return None


def date_cell(value: Any, now: datetime.datetime) -> str | None:
    """A ``date`` column's cell: the age of an RFC 3339 time (``<unknown>`` when empty)."""
    if not isinstance(value, str):
        return None
    if value in ("", "null"):
        return "<unknown>"
    stamp = parse_rfc3339(value)
    if stamp is None:
        return "<invalid>"
    return human_duration((now - stamp).total_seconds())


def _int64(value: float) -> int:
    """Go's ``int64(f)`` on amd64: truncation, and the minimum int64 when out of range."""
    if value != value or not -(2.0**63) <= value < 2.0**63:
        return _INT64[0]
    return int(value)


def typed_cell(kind: str, value: Any, now: datetime.datetime) -> Any:
    """``cellForJSONValue``: the cell of a non-string column (None for the wrong type)."""
    value = go_value(value)
    if value is None or (isinstance(value, bool) and kind in ("integer", "number")):
        return None
    if kind == "integer":
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return _int64(value)
    elif kind == "number":
        if isinstance(value, int | float):
            return orjson.Fragment(go_json_float(float(value)))
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "date":
        return date_cell(value, now)
    return None
