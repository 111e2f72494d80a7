"""Kubernetes' CEL object construction (``Object.spec{...}``, ``JSONPatch{...}``) as tagged maps.

MutatingAdmissionPolicy expressions build values of types cel-go declares from the resource's
schema (``Object``, ``Object.spec``, ...) and of ``JSONPatch``. cel-expr-python resolves
``Name{...}`` only against protobuf messages in its descriptor pool and offers no way to declare
such types, so ``Object{metadata: Object.metadata{labels: {"a": "b"}}}`` fails to compile there
("undeclared reference to 'Object'"). Instead, the source is rewritten before compiling: each
construction becomes a map literal with quoted field names and one extra entry naming its type
(``TYPE_KEY``), which ``strip`` checks and removes from the result, as kube-apiserver's
``CheckTypeNamesMatchFieldPathNames`` checks the type names against the field path.

Fields are not checked against the schema when compiling (kube-apiserver's checker does);
``structured_merge`` refuses a field the schema does not declare when the patch is merged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: The key a constructed value carries its type name under (a NUL cannot start a field name).
TYPE_KEY = "\x00type"

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
    | (?P<string>(?:[rR][bB]?|[bB][rR]?)?
        (?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<escaped>`[^`]*`)
    | (?P<number>[0-9][0-9A-Za-z_.]*)
    | (?P<punct>&&|\|\||==|!=|<=|>=|.)
    """,
    re.VERBOSE | re.DOTALL,
)
#: Tokens after which a ``.`` selects a member (so ``.Name{`` does not start a leading-dot name).
_VALUE_END = ("ident", "escaped", "string", "number")


class ConstructionError(ValueError):
    """A constructed value that kube-apiserver would refuse (wrong type name, unknown type)."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(source: str) -> list[_Token]:
    return [_Token(str(m.lastgroup), m.group()) for m in _TOKEN.finditer(source)]


def _significant(tokens: list[_Token], start: int, step: int) -> Iterator[int]:
    i = start
    while 0 <= i < len(tokens):
        if tokens[i].kind != "ws":
            yield i
        i += step


def _prev(tokens: list[_Token], i: int) -> int | None:
    return next(_significant(tokens, i - 1, -1), None)


def _next(tokens: list[_Token], i: int) -> int | None:
    return next(_significant(tokens, i + 1, 1), None)


def _name_run(tokens: list[_Token], i: int) -> tuple[str, int] | None:
    """A qualified name ``a.b.c`` starting at token ``i`` and followed by ``{``: (name, index of ``{``)."""
    parts, j = [tokens[i].text], i
    while True:
        n = _next(tokens, j)
        if n is None:
            return None
        if tokens[n].text == "{":
            return ".".join(parts), n
        if tokens[n].text != ".":
            return None
        m = _next(tokens, n)
        if m is None or tokens[m].kind != "ident":
            return None
        parts.append(tokens[m].text)
        j = m


def rewrite(source: str) -> str:
    """``source`` with every object construction turned into a tagged map literal."""
    tokens = _tokens(source)
    if "".join(t.text for t in tokens) != source:
        return source  # not lexed whole: compile it as it is and let the compiler say why
    out: list[str] = []
    stack: list[bool] = []  # per open bracket: is it a construction's brace?
    skip_to = -1
    entry_start = False
    for i, token in enumerate(tokens):
        if i < skip_to:
            continue
        if token.kind == "ws":
            out.append(token.text)
            continue
        if entry_start and stack and stack[-1]:
            entry_start = False
            if token.kind in ("ident", "escaped"):
                name = token.text.strip("`")
                out.append(json.dumps(name))
                continue
        entry_start = False
        prev = _prev(tokens, i)
        prev_token = tokens[prev] if prev is not None else None
        after_dot = prev_token is not None and prev_token.text == "."
        leading_dot = token.text == "." and (prev_token is None or not _ends_value(prev_token))
        start = _next(tokens, i) if leading_dot else i
        if start is not None and tokens[start].kind == "ident" and (leading_dot or not after_dot):
            found = _name_run(tokens, start)
            if found is not None:
                name, brace = found
                stack.append(True)
                first = _next(tokens, brace)
                closes = first is not None and tokens[first].text == "}"
                out.append("{" + json.dumps(TYPE_KEY) + ": " + json.dumps(name) + ("" if closes else ", "))
                skip_to = brace + 1
                entry_start = True
                continue
        if token.text == "?" and stack and stack[-1] and prev_token is not None and prev_token.text in ("{", ","):
            out.append(token.text)
            entry_start = True
            continue
        if token.text in ("(", "[", "{"):
            stack.append(False)
        elif token.text in (")", "]", "}") and stack:
            stack.pop()
        elif token.text == "," and stack and stack[-1]:
            entry_start = True
        out.append(token.text)
    return "".join(out)


def _ends_value(token: _Token) -> bool:
    return token.kind in _VALUE_END or token.text in (")", "]", "}")


def strip(value: Any) -> Any:
    """``value`` without type tags; ConstructionError when a nested type name does not match its field."""
    return _strip(value, None)


def _strip(value: Any, path: str | None) -> Any:
    if isinstance(value, list):
        return [_strip(v, path) for v in value]
    if not isinstance(value, dict):
        return value
    type_name = value.get(TYPE_KEY)
    if isinstance(type_name, str):
        if path is not None and type_name != path:
            raise ConstructionError(
                f"type mismatch: unexpected type name {json.dumps(type_name)}, expected {json.dumps(path)}, "
                "which matches field name path from root Object type"
            )
        return {k: _strip(v, f"{type_name}.{k}") for k, v in value.items() if k != TYPE_KEY}
    return {k: _strip(v, path) for k, v in value.items()}


def type_of(value: Any) -> str | None:
    """The type name a constructed value carries (None for plain data)."""
    if isinstance(value, dict):
        found = value.get(TYPE_KEY)
        return found if isinstance(found, str) else None
    return None
