"""The Accept header, negotiated once at the edge as kube-apiserver negotiates it for a custom resource.

kube-apiserver reads Accept with goautoneg (clauses split at ``,``, each ``type/subtype`` and
``name=value`` parameters, ordered by ``q`` and specificity, compared exactly: case counts)
and takes the first clause a serializer of its matches (NegotiateMediaTypeOptions) whose
parameters the endpoint allows: ``as``/``g``/``v`` ask for a meta.k8s.io conversion (a Table
in JSON or YAML, PartialObjectMetadata(List) in any form), ``stream`` may only be ``watch``,
``sv`` only ``v1``; without a conversion a custom resource is served as JSON or YAML only.
Nothing matching is a 406, for every verb, before anything else is done.

The connector writes JSON only: a clause that would be answered in YAML or protobuf is passed
over (a later JSON clause can still be taken; none is the 406). What the negotiation chose is a
typed ``Output``, and only it travels on: the cache's forms and the Accept sent to the control
plane are made from it, never from the tenant's header. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_connector.connector.errors import ApiError

META_GROUP = "meta.k8s.io"
_META_VERSIONS = ("v1", "v1beta1")
_CONVERSIONS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")
#: kube-apiserver's serializers for a custom resource, in its order, as (type, subtype).
_SERIALIZERS = (("application", "json"), ("application", "yaml"), ("application", "vnd.kubernetes.protobuf"))
#: Those it serves a custom resource in without a conversion.
_STANDARD = (("application", "json"), ("application", "yaml"))
NOT_ACCEPTABLE = (
    "only the following media types are accepted: application/json, application/yaml, "
    "application/vnd.kubernetes.protobuf"
)


@dataclass(frozen=True)
class Output:
    """What a response is: the object itself (``kind`` empty) or a meta.k8s.io conversion of it."""

    kind: str = ""
    version: str = ""

    @property
    def accept(self) -> str:
        """The Accept header asking the control plane for exactly this."""
        if not self.kind:
            return "application/json"
        return f"application/json;as={self.kind};g={META_GROUP};v={self.version}"


OBJECT = Output()


@dataclass(frozen=True)
class _Clause:
    type: str
    subtype: str
    q: float
    params: tuple[tuple[str, str], ...]


def _go_float(text: str) -> float:
    """strconv.ParseFloat as goautoneg uses it: 0 when it does not parse."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if text.strip() == text and "_" not in text else 0.0


def clauses(header: str) -> list[_Clause]:
    """goautoneg.ParseAccept: the clauses in the order kube-apiserver tries them."""
    found = []
    for part in header.split(","):
        ranges = part.strip(" ").split(";")
        kinds = ranges[0].split("/")
        main = kinds[0].strip(" ")
        if len(kinds) == 1 and main == "*":
            sub = "*"
        elif len(kinds) == 2:
            sub = kinds[1].strip(" ")
        else:
            continue
        q, params = 1.0, {}
        for parameter in ranges[1:]:
            name, sep, value = parameter.partition("=")
            if not sep:
                continue
            if name.strip(" ") == "q":
                q = _go_float(value)
            else:
                params[name.strip(" ")] = value.strip(" ")
        found.append(_Clause(main, sub, q, tuple(params.items())))
    # sort.Sort with goautoneg's Less: an insertion sort for the few clauses a header holds.
    for i in range(1, len(found)):
        j = i
        while j > 0 and _less(found[j], found[j - 1]):
            found[j], found[j - 1] = found[j - 1], found[j]
            j -= 1
    return found


def _less(a: _Clause, b: _Clause) -> bool:
    return a.q > b.q or (a.type != "*" and b.type == "*") or (a.subtype != "*" and b.subtype == "*")


def _options(clause: _Clause, serializer: tuple[str, str]) -> Output | None:
    """acceptMediaTypeOptions with a custom resource's restrictions; None: this pairing is not allowed."""
    convert: dict[str, str] = {}
    allowed = {"stream": "watch", "sv": "v1"}  # the one value each may take, when not empty
    for name, value in clause.params:
        if name in ("as", "g", "v"):
            convert[name] = value
        elif name in allowed and value and value != allowed[name]:
            return None
    if not convert:
        return OBJECT if serializer in _STANDARD else None
    kind, group, version = convert.get("as", ""), convert.get("g", ""), convert.get("v", "")
    if group != META_GROUP or version not in _META_VERSIONS or kind not in _CONVERSIONS:
        return None
    if kind == "Table" and serializer not in _STANDARD:
        return None
    return Output(kind, version)


def negotiate(header: str, *, watch: bool = False) -> Output:
    """What ``header`` asks a request to be answered as; 406 when kube-apiserver would refuse it.

    ``watch``: a watch also needs a stream form of what was chosen, and YAML has none, so a
    watch whose first acceptable clause is YAML is the 406 (NegotiateOutputMediaTypeStream).
    """
    if not header:
        return OBJECT
    for clause in clauses(header):
        for serializer in _SERIALIZERS:
            if not (
                (clause.type == serializer[0] and clause.subtype in (serializer[1], "*"))
                or (clause.type == "*" and clause.subtype == "*")
            ):
                continue
            chosen = _options(clause, serializer)
            if chosen is None:
                continue
            if serializer == ("application", "json"):
                return chosen
            if watch and serializer == ("application", "yaml"):
                raise ApiError.of(406, NOT_ACCEPTABLE)
            break  # kube-apiserver would answer in YAML or protobuf, which the connector does not write
    raise ApiError.of(406, NOT_ACCEPTABLE)
