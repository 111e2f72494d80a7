"""Request bodies: read and decode them as kube-apiserver does, within limits a hostile body cannot pass.

Every body a handler uses comes through here, so size, nesting depth and node count are bounded
in one place and every refusal is a Kubernetes ``Status`` (413 for size, 400 for the rest).

YAML becomes JSON the way kube-apiserver's sigs.k8s.io/yaml does it (go-yaml v2 resolution:
``yes``/``on``/``y`` are booleans, timestamps stay strings, ``1.0`` is the number 1, only the
first document counts). The tree is built from the parser's events, never with PyYAML's
constructor, because anchors and aliases make a few hundred bytes of YAML stand for gigabytes
of JSON: an alias costs the nodes it expands to, so a bomb fails the node budget after at most
``max_nodes`` steps instead of being expanded later by the JSON encoder.
"""

from __future__ import annotations

import base64
import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from mcp_connector.connector.errors import ApiError, bad_request

#: kube-apiserver's default limit on request bodies (``MaxRequestBodyBytes``).
MAX_BYTES = 3 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """How big a decoded body may be. A real claim is a few hundred nodes, rarely 10 deep."""

    max_bytes: int = MAX_BYTES
    max_depth: int = 100
    max_nodes: int = 100_000


DEFAULT_LIMITS = Limits()


def too_large(limit: int) -> ApiError:
    """The 413 kube-apiserver answers for an oversized body."""
    return ApiError.of(413, f"Request entity too large: limit is {limit}", reason="RequestEntityTooLarge")


async def read(request: web.Request, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Read a request body, refusing (413) as soon as it passes ``max_bytes``, chunked or not."""
    if request.content_length is not None and request.content_length > limits.max_bytes:
        raise too_large(limits.max_bytes)
    if not request.can_read_body:
        return b""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > limits.max_bytes:
            raise too_large(limits.max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


#: The media types a request body may have, as kube-apiserver's NegotiateInputSerializer takes them
#: for custom resources (protobuf is not among them: custom resources have no protobuf form).
INPUT_FORMATS = {"application/json": "json", "application/yaml": "yaml"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def input_format(content_type: str) -> str:
    """``json`` or ``yaml`` for a body's Content-Type (none means JSON); 415 for anything else.

    The media type is read as Go's mime.ParseMediaType reads it: ``type/subtype`` in any case,
    then parameters that must each be ``name=value`` (``application/json;foo`` is refused).
    """
    if not content_type.strip():
        return "json"
    media, *parameters = content_type.split(";")
    media = media.strip().lower()
    main, _, sub = media.partition("/")
    well_formed = bool(_TOKEN.fullmatch(main) and _TOKEN.fullmatch(sub)) and all(
        _TOKEN.fullmatch(p.partition("=")[0].strip()) and "=" in p for p in parameters if p.strip()
    )
    chosen = INPUT_FORMATS.get(media) if well_formed else None
    if chosen is None:
        raise ApiError.of(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(INPUT_FORMATS),
        )
    return chosen


#: The patch types kube-apiserver takes for a custom resource, by Content-Type, and what each is.
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/apply-patch+yaml": "apply",
}


def patch_type(content_type: str) -> str:
    """``json``, ``merge`` or ``apply`` for a PATCH's Content-Type; 415 for anything else.

    Read as kube-apiserver's PatchResource reads it, first of all (before the body and the
    options): what precedes the first ``;`` (when one follows something), compared exactly,
    so ``APPLICATION/MERGE-PATCH+JSON`` or ``application/apply-patch+json`` is the 415 there too.
    """
    cut = content_type.find(";")
    media = content_type[:cut] if cut > 0 else content_type
    kind = PATCH_TYPES.get(media)
    if kind is None:
        raise ApiError.of(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(PATCH_TYPES),
        )
    return kind


def decode(data: bytes, content_type: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a JSON or YAML body (by Content-Type) into plain JSON values; 400/413/415 Status otherwise."""
    if len(data) > limits.max_bytes:
        raise too_large(limits.max_bytes)
    if input_format(content_type) == "yaml":
        return decode_yaml(data, limits)
    return decode_json(data, limits)


def decode_object(data: bytes, content_type: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Like decode, but the body must be a JSON object."""
    value = decode(data, content_type, limits)
    if not isinstance(value, dict):
        raise bad_request("the request body must be a JSON object")
    return value


def decode_json(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """orjson, then a bounded walk: depth and node count are checked before any handler recurses."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"the request body is not valid JSON: {str(e)[:200]}") from None
    check_shape(value, limits)
    return value


def check_shape(value: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    """400 when ``value`` nests deeper than ``max_depth`` or has more than ``max_nodes`` nodes.

    Iterative, so a hostile value cannot exhaust the stack while being measured.
    """
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise _too_many_nodes(limits)
        if depth > limits.max_depth:
            raise _too_deep(limits)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            nodes += len(item)  # the keys
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _too_many_nodes(limits: Limits) -> ApiError:
    return bad_request(f"the request body has more than {limits.max_nodes} values (aliases count as expanded)")


def _too_deep(limits: Limits) -> ApiError:
    return bad_request(f"the request body nests deeper than {limits.max_depth} levels")


# --- YAML, resolved the way go-yaml v2 (sigs.k8s.io/yaml) resolves it ---------------------------

_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_BINARY, _MERGE = "tag:yaml.org,2002:binary", "tag:yaml.org,2002:merge"
_SPECIAL: dict[str, Any] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_FLOAT = re.compile(r"^[-+]?[0-9]*\.?[0-9]+([eE][-+][0-9]+)?$")
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1
_MERGE_KEY = object()
_TAG_TYPES: dict[str, type | tuple[type, ...]] = {_INT: int, _FLOAT: (int, float), _BOOL: bool, _NULL: type(None)}


class _YamlError(ValueError):
    """A YAML document kube-apiserver would refuse too (message safe to show)."""


def _go_int(text: str) -> int | None:
    """strconv.ParseInt, then ParseUint, with base 0 (Go's prefixes, and a leading 0 for octal)."""
    if not _GO_INT.match(text):
        return None
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    base = 8 if len(digits) > 1 and digits[0] == "0" and digits[1] in "01234567" else 0
    value = sign * int(digits, base)
    if _INT64[0] <= value <= _INT64[1] or (text[0] not in "+-" and value <= _UINT64_MAX):
        return value
    return None


def _go_float(text: str) -> float | str:
    """strconv.ParseFloat; out of range stays a string, as in go-yaml v2."""
    try:
        value = float(text)
    except ValueError:
        return text
    return text if math.isinf(value) else value


def _plain(text: str) -> Any:
    """Resolve an untagged plain scalar: go-yaml v2's resolve() into interface{}.

    YAML 1.1 words (``y``, ``no``, ``on``...) are booleans, ``1e3`` (no exponent sign) and
    timestamps are strings, ``010`` is octal; base-60 numbers are not numbers.
    """
    if text in _SPECIAL:
        return _SPECIAL[text]
    if text == "<<":
        return _MERGE_KEY
    if text[0] == ".":
        return text if "_" in text else _go_float(text)
    if text[0] not in "+-0123456789":
        return text
    plain = text.replace("_", "")
    number = _go_int(plain)
    if number is not None:
        return number
    if _YAML_FLOAT.match(plain):
        return _go_float(plain)
    return text


def _scalar(event: yaml.ScalarEvent) -> Any:
    """A scalar event as a JSON value (timestamps, unknown tags and quoted scalars stay strings)."""
    tag, text = event.tag, event.value
    if tag is None and event.implicit[0]:
        return _json_value(_plain(text), text)
    if tag in (_INT, _FLOAT, _BOOL, _NULL):
        value = _plain(text)
        wanted = _TAG_TYPES[tag]
        if value is _MERGE_KEY or isinstance(value, bool) != (tag == _BOOL) or not isinstance(value, wanted):
            raise _YamlError(f"cannot decode {text[:40]!r} as a !!{tag.rsplit(':', 1)[1]}")
        return _json_value(value, text)
    if tag == _BINARY:
        try:
            return base64.b64decode("".join(text.split()), validate=True).decode("utf-8", errors="replace")
        except ValueError:
            raise _YamlError(f"!!binary value {text[:40]!r} is not base64") from None
    return text


def _json_value(value: Any, text: str) -> Any:
    """What survives kube-apiserver's YAML -> JSON -> object round trip for a resolved scalar."""
    if not isinstance(value, float):
        return value
    if math.isnan(value) or math.isinf(value):
        raise _YamlError(f"{text[:40]!r} cannot be represented in JSON")
    # json.Marshal writes integral floats without a fraction, which kube-apiserver reads back as ints.
    if value.is_integer() and abs(value) < 1e21 and _INT64[0] <= value <= _INT64[1]:
        return int(value)
    return value


def _key(value: Any) -> str | object:
    """A mapping key as a JSON object key (sigs.k8s.io/yaml's key conversion)."""
    if value is _MERGE_KEY or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):  # Go prints these with float32 precision; close enough for a key
        return str(int(value)) if value.is_integer() else repr(value)
    raise _YamlError(f"unsupported map key {value!r}")


@dataclass
class _Frame:
    """A mapping or sequence being built, with what its subtree costs."""

    value: dict[str, Any] | list[Any]
    anchor: str | None
    nodes: int = 1
    height: int = 1
    key: Any = None
    has_key: bool = False


def decode_yaml(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode the first YAML document into JSON values, or raise a 400 Status."""
    try:
        return _build(data, limits)
    except _YamlError as e:
        raise bad_request(f"error converting YAML to JSON: yaml: {e}") from None
    except yaml.YAMLError as e:
        raise bad_request(f"error converting YAML to JSON: yaml: {str(e)[:300]}") from None
    except UnicodeDecodeError:
        raise bad_request("error converting YAML to JSON: the body is not UTF-8") from None


def _build(data: bytes, limits: Limits) -> Any:
    loader = yaml.CSafeLoader(data) if yaml.__with_libyaml__ else yaml.SafeLoader(data)
    try:
        return _walk(loader, limits)
    finally:
        loader.dispose()


def _walk(loader: Any, limits: Limits) -> Any:
    anchors: dict[str, tuple[Any, int, int]] = {}
    stack: list[_Frame] = []
    nodes = 0
    result: Any = None
    done = False

    def place(value: Any, size: int, height: int) -> None:
        nonlocal result, done
        if not stack:
            result, done = value, True
            return
        frame = stack[-1]
        frame.nodes += size
        frame.height = max(frame.height, height + 1)
        if isinstance(frame.value, list):
            frame.value.append(value)
        elif not frame.has_key:
            frame.key, frame.has_key = _key(value), True
        else:
            if frame.key is _MERGE_KEY:
                _merge(frame.value, value)
            else:
                frame.value[frame.key] = value
            frame.has_key = False

    while not done and loader.check_event():
        event = loader.get_event()
        if isinstance(event, yaml.DocumentEndEvent | yaml.StreamEndEvent):
            break
        if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent | yaml.CollectionStartEvent):
            size, height = 1, 1
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise _YamlError(f"unknown anchor {event.anchor!r} referenced")
                value, size, height = anchors[event.anchor]
            nodes += size
            if nodes > limits.max_nodes:
                raise _too_many_nodes(limits)
            if len(stack) + height > limits.max_depth:
                raise _too_deep(limits)
            if isinstance(event, yaml.AliasEvent):
                place(copy.deepcopy(value), size, height)  # bounded: size was charged above
            elif isinstance(event, yaml.ScalarEvent):
                value = _scalar(event)
                if event.anchor:
                    anchors[event.anchor] = (value, 1, 1)
                place(value, 1, 1)
            else:
                container: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
                stack.append(_Frame(container, event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = stack.pop()
            value = frame.value
            if frame.anchor:
                anchors[frame.anchor] = (value, frame.nodes, frame.height)
            place(value, frame.nodes, frame.height)
    return result


def _merge(target: dict[str, Any], value: Any) -> None:
    """Apply a ``<<`` merge key where it stands, as go-yaml v2 does: keys after it override it,
    keys before it are overridden, and in a list of maps the earlier map wins."""
    sources = value if isinstance(value, list) else [value]
    if not all(isinstance(m, dict) for m in sources):
        raise _YamlError("map merge requires map or sequence of maps as the value")
    for source in reversed(sources):
        target.update(source)
