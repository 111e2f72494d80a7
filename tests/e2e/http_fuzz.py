"""Fuzzing the connector's HTTP surface: requests made from its own discovery and OpenAPI documents.

``Surface.read(call)`` asks a running connector what it serves (``/apis``, each group/version's
APIResourceList, ``/openapi/v3`` and its documents); ``requests(surface)`` is a hypothesis
strategy of requests built from that: real and mangled paths, the verbs discovery lists and
others, known and unknown query parameters, headers, and bodies generated from the kinds'
OpenAPI schemas (objects, JSON/merge patches, apply YAML, DeleteOptions) or plain garbage.
``Client`` sends them over kept-alive TLS connections as the front proxy; ``problems()`` is the
oracle: what a response must never be.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import yaml
from hypothesis import strategies as st

from mcp_connector.core import contract

Json = Any
Caller = Callable[[str, str], tuple[int, Any]]

VERB_METHODS = {
    "get": ("GET",),
    "list": ("GET",),
    "watch": ("GET",),
    "create": ("POST",),
    "update": ("PUT",),
    "patch": ("PATCH",),
    "delete": ("DELETE",),
    "deletecollection": ("DELETE",),
}
ODD_METHODS = ("HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO", "get")
QUERY_PARAMS = (
    "watch", "labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch", "limit", "continue",
    "timeoutSeconds", "allowWatchBookmarks", "sendInitialEvents", "dryRun", "fieldManager", "fieldValidation",
    "force", "propagationPolicy", "gracePeriodSeconds", "orphanDependents", "pretty", "includeObject", "as",
)  # fmt: skip
CONTENT_TYPES = (
    "application/json", "application/yaml", "application/merge-patch+json", "application/json-patch+json",
    "application/apply-patch+yaml", "application/apply-patch+cbor", "application/strategic-merge-patch+json",
    "application/vnd.kubernetes.protobuf", "application/cbor", "text/plain", "application/json; charset=utf-8",
    "", "*/*", "application/x-www-form-urlencoded",
)  # fmt: skip
ACCEPTS = (
    "application/json", "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    "application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml", "application/cbor", "*/*", "", "text/html", "application/json;as=Nope",
)  # fmt: skip


@dataclass(frozen=True)
class Resource:
    """One served resource, as discovery and OpenAPI describe it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    subresources: tuple[tuple[str, tuple[str, ...]], ...]
    schema: Json  # the kind's OpenAPI v3 schema, local $refs resolved against ``definitions``
    definitions: Mapping[str, Json]

    @property
    def key(self) -> tuple[str, str, str]:
        """Group, version and plural: what tells resources apart."""
        return self.group, self.version, self.plural


@dataclass(frozen=True)
class Surface:
    """Everything the connector says it serves."""

    resources: tuple[Resource, ...]
    fixed_paths: tuple[str, ...]  # discovery and OpenAPI documents
    path_templates: tuple[str, ...]  # OpenAPI paths with {namespace} and {name}

    @classmethod
    def read(cls, call: Caller) -> Surface:
        """Read discovery and OpenAPI from a running connector (``call(method, path) -> (status, json)``)."""
        fixed = ["/apis", "/openapi/v2", "/openapi/v3", "/healthz", "/livez", "/readyz", "/metrics"]
        status, groups = call("GET", "/apis")
        assert status == 200, groups
        resources: list[Resource] = []
        templates: set[str] = set()
        _, index = call("GET", "/openapi/v3")
        for group in groups["groups"]:
            fixed.append(f"/apis/{group['name']}")
            for version in group["versions"]:
                gv = version["groupVersion"]
                fixed += [f"/apis/{gv}", f"/openapi/v3/apis/{gv}"]
                status, listed = call("GET", f"/apis/{gv}")
                assert status == 200, listed
                link = index["paths"][f"apis/{gv}"]["serverRelativeURL"]
                status, document = call("GET", link)
                assert status == 200, document
                templates.update(document["paths"])
                schemas = document["components"]["schemas"]
                subresources: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
                for r in listed["resources"]:
                    if "/" in r["name"]:
                        parent, sub = r["name"].split("/", 1)
                        subresources.setdefault(parent, []).append((sub, tuple(r["verbs"])))
                for r in listed["resources"]:
                    if "/" in r["name"]:
                        continue
                    schema = next(
                        s for s in schemas.values()
                        if {"group": group["name"], "version": version["version"], "kind": r["kind"]}
                        in s.get("x-kubernetes-group-version-kind", [])
                    )  # fmt: skip
                    resources.append(
                        Resource(
                            group["name"], version["version"], r["name"], r["kind"], r["namespaced"],
                            tuple(r["verbs"]), tuple(subresources.get(r["name"], ())), schema, schemas,
                        )
                    )  # fmt: skip
        return cls(tuple(resources), tuple(fixed), tuple(sorted(templates)))


# -- values ---------------------------------------------------------------------------------

DNS_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
#: Names that are paths, selectors or too long (issue 17's attack among them), for every name a tenant gives.
ATTACK_NAMES = (
    "my-cluster-kubeconfig,metadata.name!=/../../../victimns/secrets/victim", "a,b", "metadata.name!=x", "a=b",
    "../x", "..%2F..%2Fx", "%2E%2E", "a?b", "a#b", "a;b", "x" * 254, "My-Secret", "a_b", "a.", ".a",
)  # fmt: skip
ODD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40
) | st.sampled_from(
    ["", ".", "..", "%", "%2F", "a/b", "claim-", "A", "a" * 64, "a" * 253, "-a", "a-", " ", "\x00", *ATTACK_NAMES]
)
#: Query values kube-apiserver parses one way and Python another (integers, booleans, enums).
ODD_VALUES = (
    "nan", "NaN", "inf", "-inf", "1e3", "1.5", " 5", "5 ", "+5", "-5", "0x10", "1_000", "", "007",
    "9223372036854775807", "9223372036854775808", "True", "FALSE", "yes", "no", "t", "Orphan", "orphan", "Foreground",
    "Background", "Strict", "strict", "Warn", "Ignore", "bogus", "all", "x" * 129, "a\tb",
)  # fmt: skip


@dataclass
class Pools:
    """Names and namespaces worth hitting: where other tenants' claims sit, and their hashed names."""

    names: list[str] = field(default_factory=lambda: ["a", "b", "foo", "my-claim"])
    namespaces: list[str] = field(default_factory=lambda: ["default", "fuzz"])
    selectors: list[str] = field(default_factory=list)
    continue_tokens: list[str] = field(default_factory=list)


def segment(value: str) -> str:
    """A path segment as a client would send it (percent-encoded), never a raw control character."""
    return quote(value, safe="-._~:@!$&'()*+,;=")


LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
JSON_VALUES: st.SearchStrategy[Json] = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def from_schema(schema: Json, definitions: Mapping[str, Json], depth: int = 0) -> st.SearchStrategy[Json]:
    """Values shaped by an OpenAPI v3 schema (mostly valid), now and then anything at all."""
    if depth > 8:
        return LEAF
    if "$ref" in schema:
        return from_schema(definitions[schema["$ref"].rsplit("/", 1)[1]], definitions, depth + 1)
    if "enum" in schema:
        valid: st.SearchStrategy[Json] = st.sampled_from(schema["enum"])
    else:
        kind = schema.get("type")
        if kind == "object" and "properties" in schema:
            props = schema["properties"]
            required = [k for k in schema.get("required", []) if k in props]
            valid = st.fixed_dictionaries(
                {k: from_schema(props[k], definitions, depth + 1) for k in required},
                optional={k: from_schema(v, definitions, depth + 1) for k, v in props.items() if k not in required},
            )
        elif kind == "object":
            valid = st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=3)
        elif kind == "array":
            valid = st.lists(from_schema(schema.get("items", {}), definitions, depth + 1), max_size=3)
        elif kind == "string":
            valid = st.text(max_size=30) | DNS_LABEL
        elif kind == "integer":
            valid = st.integers(min_value=-(2**64), max_value=2**64)
        elif kind == "number":
            valid = st.floats(allow_nan=False, allow_infinity=False)
        elif kind == "boolean":
            valid = st.booleans()
        else:
            valid = JSON_VALUES
    return st.one_of(valid, valid, valid, valid, JSON_VALUES)


def ownership_labels(pools: Pools) -> st.SearchStrategy[dict[str, str]]:
    """Labels that claim to be someone's: the contract's own keys with any values."""
    keys = st.sampled_from(contract.OWNERSHIP_LABELS)
    values = st.sampled_from(["fuzz-b", "x-fuzz-a", *pools.namespaces, *pools.names]) | DNS_LABEL
    return st.dictionaries(keys, values, max_size=3)


@st.composite
def claim_objects(draw: st.DrawFn, kit: Kit, resource: Resource) -> Json:
    """A claim body from the kind's schema, with identity fields often set to tricky values."""
    body = draw(kit.schema_values[resource.key])
    if not isinstance(body, dict) or draw(st.booleans()):
        return body
    if draw(st.integers(0, 3)):
        body["apiVersion"] = f"{resource.group}/{resource.version}"
        body["kind"] = resource.kind
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    body["metadata"] = metadata
    choice = draw(st.integers(0, 5))
    if choice <= 2:
        metadata["name"] = draw(kit.names)
    elif choice == 3:
        metadata["generateName"] = draw(DNS_LABEL)
    if draw(st.booleans()):
        metadata["namespace"] = draw(kit.namespaces)
    if draw(st.booleans()):
        labels = metadata.get("labels")  # generated from the schema: anything, a float even
        metadata["labels"] = {**(labels if isinstance(labels, dict) else {}), **draw(kit.labels)}
    if draw(st.booleans()):
        metadata["resourceVersion"] = draw(st.sampled_from(["0", "1", "999999999", "x", ""]))
    if draw(st.booleans()):
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Secret", "name": draw(kit.names), "uid": "u"}]
    spec = body.get("spec")
    if isinstance(spec, dict) and draw(st.booleans()):
        spec["writeConnectionSecretToRef"] = {"name": draw(kit.names), "namespace": draw(kit.namespaces)}
    return body


POINTERS = st.sampled_from(
    [
        "/metadata/name", "/metadata/namespace", "/metadata/labels", "/metadata/uid", "/metadata/resourceVersion",
        "/metadata/generateName", "/metadata/finalizers", "/metadata/finalizers/-", "/metadata/ownerReferences",
        f"/metadata/labels/{contract.APP_CLUSTER_LABEL.replace('/', '~1')}",
        f"/metadata/labels/{contract.APP_NAMESPACE_LABEL.replace('/', '~1')}",
        f"/metadata/labels/{contract.APP_NAME_LABEL.replace('/', '~1')}",
        "/spec", "/spec/id", "/spec/parameters/nodes/count", "/spec/writeConnectionSecretToRef",
        "/status", "/status/conditions/0", "/kind", "/apiVersion", "", "/", "/~2", "/a~1b", "/spec/0/-",
    ]
)  # fmt: skip


def json_patches() -> st.SearchStrategy[Json]:
    op = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "nope"]), "path": POINTERS},
        optional={"value": JSON_VALUES, "from": POINTERS},
    )
    return st.lists(op, max_size=5) | JSON_VALUES


def delete_options() -> st.SearchStrategy[Json]:
    return st.fixed_dictionaries(
        {},
        optional={
            "kind": st.sampled_from(["DeleteOptions", "Pod"]),
            "apiVersion": st.sampled_from(["v1", "meta.k8s.io/v1", "x"]),
            "propagationPolicy": st.sampled_from(["Foreground", "Background", "Orphan", "Nope"]),
            "gracePeriodSeconds": st.integers(-5, 2**40),
            "preconditions": st.fixed_dictionaries({}, optional={"uid": st.text(max_size=10),
                                                                 "resourceVersion": st.text(max_size=10)}),
            "dryRun": st.lists(st.sampled_from(["All", "None", "x"]), max_size=2),
        },
    )  # fmt: skip


@st.composite
def encodings(draw: st.DrawFn, value: Json) -> bytes:
    """Bytes for a body: JSON, YAML, YAML with anchors, or something broken."""
    how = draw(st.integers(0, 9))
    if how <= 5:
        return json.dumps(value).encode()
    if how == 6:
        return yaml.safe_dump(value).encode()
    if how == 7:
        return b"a: &a [1, 2]\nb: [*a, *a, *a]\nc: {d: *a}\n" + yaml.safe_dump(value).encode()
    if how == 8:
        return draw(st.binary(max_size=64))
    encoded = json.dumps(value).encode()
    cut = draw(st.integers(0, len(encoded)))
    return encoded[:cut]


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One fuzzed request."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    verb: str = ""  # what it was made as (e.g. "watch"), for reading its response

    def __repr__(self) -> str:
        body = self.body[:300] if self.body else self.body
        return f"Request({self.method} {self.path[:300]} headers={list(self.headers)} body={body!r})"


EXTRA_HEADERS = ("Impersonate-User", "Impersonate-Group", "Authorization", "X-Remote-Uid", "If-None-Match",
                 "Content-Encoding", "Accept-Encoding", "X-Forwarded-For", "Expect", "X-Foo")  # fmt: skip
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def query_strings(pools: Pools, verb: str) -> st.SearchStrategy[str]:
    """Query strings: the verb's must-haves (a watch ends within a second), then anything."""
    keys = st.sampled_from(QUERY_PARAMS) | st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
    values = (
        st.sampled_from(["true", "false", "0", "1", "-1", "99999999999999999999", "All", "Exact", "NotOlderThan"])
        | st.sampled_from(ODD_VALUES)
        | st.sampled_from([f"metadata.name={n}" for n in ATTACK_NAMES])
        | st.sampled_from(pools.selectors or ["x=y"])
        | st.sampled_from(pools.continue_tokens or ["e30="])
        | HEADER_TEXT
    )
    pairs = st.lists(st.tuples(keys, values), max_size=4)

    @st.composite
    def build(draw: st.DrawFn) -> str:
        params: list[tuple[str, str]] = []
        if verb == "watch":
            params.append(("watch", draw(st.sampled_from(["true", "1", "True"]))))
            params.append(("timeoutSeconds", "1"))  # 0 would mean the server's default: half an hour
        params += [(k, v) for k, v in draw(pairs) if k != "watch" and not (k == "timeoutSeconds" and verb == "watch")]
        if not params:
            return ""
        return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)

    return build()


@st.composite
def requests(draw: st.DrawFn, kit: Kit) -> Request:
    """A request against the surface: mostly well-formed enough to reach a handler, never polite."""
    surface = kit.surface
    kind = draw(st.integers(0, 19))
    verb = ""
    body_value: Json = None
    if kind == 0:
        method = draw(st.sampled_from(("GET", "GET", "HEAD", "POST", "DELETE", *ODD_METHODS)))
        path = draw(st.sampled_from(surface.fixed_paths))
    elif kind == 1:
        method = draw(st.sampled_from(("GET", "POST", "PUT", "PATCH", "DELETE", *ODD_METHODS)))
        parts = draw(st.lists(ODD_TEXT | st.sampled_from(["apis", "namespaces", "openapi", "v3", "status"]),
                              max_size=8))  # fmt: skip
        path = "/" + "/".join(segment(p) for p in parts) + draw(st.sampled_from(["", "/", "//", "/..", "/."]))
    elif kind == 2:
        template = draw(st.sampled_from(surface.path_templates))
        method = draw(st.sampled_from(("GET", "PUT", "PATCH", "DELETE", "POST")))
        path = template.replace("{namespace}", segment(draw(kit.namespaces))).replace(
            "{name}", segment(draw(kit.names))
        )
    else:
        r = draw(st.sampled_from(surface.resources))
        sub = draw(st.sampled_from([("", r.verbs), *r.subresources])) if r.subresources else ("", r.verbs)
        verb = draw(st.sampled_from(sub[1]))
        if draw(st.integers(0, 9)) == 0:
            method = draw(st.sampled_from((*ODD_METHODS, "PUT", "POST", "PATCH")))
        else:
            method = VERB_METHODS[verb][0]
        base = f"/apis/{r.group}/{r.version}"
        collection = verb in ("list", "watch", "create", "deletecollection")
        if verb in ("list", "watch") and draw(st.integers(0, 3)) == 0:
            path = f"{base}/{r.plural}"  # all namespaces
        else:
            path = f"{base}/namespaces/{segment(draw(kit.namespaces))}/{r.plural}"
            if not collection:
                path += f"/{segment(draw(kit.names))}"
                if sub[0]:
                    path += f"/{sub[0]}"
        if verb in ("create", "update"):
            body_value = draw(kit.claims[r.key])
        elif verb == "patch":
            body_value = draw(kit.patches[r.key])
        elif verb in ("delete", "deletecollection") and draw(st.booleans()):
            body_value = draw(kit.delete_options)
        path += draw(kit.queries[verb])
    headers = [("Accept", draw(st.sampled_from(ACCEPTS)))]
    user = draw(st.integers(0, 9))
    if user <= 6:
        headers += [("X-Remote-User", "fuzz-admin"), ("X-Remote-Group", "system:masters")]
    elif user == 7:
        headers += [("X-Remote-User", draw(HEADER_TEXT)), ("X-Remote-Group", draw(HEADER_TEXT))]
    elif user == 8:
        headers += [("X-Remote-User", "nobody"), ("X-Remote-Extra-Scopes", draw(HEADER_TEXT))]
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.sampled_from(EXTRA_HEADERS))
        headers.append((extra, draw(st.sampled_from(["gzip", "br", "*", "Bearer x"]) | HEADER_TEXT)))
    body: bytes | None = None
    if method == "CONNECT":  # a CONNECT has no content (RFC 9110); its bytes would be read as a tunnel's
        pass
    elif body_value is not None or method in ("POST", "PUT", "PATCH") or draw(st.integers(0, 9)) == 0:
        body = draw(encodings(body_value if body_value is not None else draw(JSON_VALUES)))  # cheap: one level
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if verb == "patch" and draw(st.integers(0, 2)):
            content_type = draw(st.sampled_from(CONTENT_TYPES[2:5]))
        elif verb in ("create", "update") and draw(st.integers(0, 2)):
            content_type = "application/json" if body.startswith((b"{", b"[")) else "application/yaml"
        if content_type:
            headers.append(("Content-Type", content_type))
    return Request(method, path, tuple(headers), body, verb)


class Kit:
    """Every strategy for one surface and its pools, built once: building them costs more than drawing."""

    def __init__(self, surface: Surface, pools: Pools) -> None:
        self.surface = surface
        self.pools = pools
        self.names = st.one_of(st.sampled_from(pools.names), DNS_LABEL, ODD_TEXT)
        self.namespaces = st.one_of(st.sampled_from(pools.namespaces), DNS_LABEL, ODD_TEXT)
        self.labels = ownership_labels(pools)
        self.schema_values = {r.key: from_schema(r.schema, r.definitions) for r in surface.resources}
        self.claims = {r.key: claim_objects(self, r) for r in surface.resources}
        merge = st.fixed_dictionaries(
            {"metadata": st.fixed_dictionaries({}, optional={"labels": self.labels, "name": self.names})}
        )
        self.patches = {r.key: st.one_of(json_patches(), merge, self.claims[r.key]) for r in surface.resources}
        self.delete_options = delete_options()
        self.queries = {verb: query_strings(pools, verb) for verb in (*VERB_METHODS, "")}
        self.requests = requests(self)


# -- sending and judging ----------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """What came back: status, headers (lower-cased names), body, seconds taken."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    took: float
    error: str = ""  # the connection failed (no HTTP response)


class Client:
    """Sends fuzzed requests over kept-alive HTTPS connections, as the front proxy."""

    def __init__(self, port: int, context: ssl.SSLContext, *, timeout: float = 20.0) -> None:
        self.port = port
        self.context = context
        self.timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                                     timeout=self.timeout)  # fmt: skip
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, request: Request) -> Response:
        started = time.monotonic()
        conn = self._connection()
        try:
            conn.putrequest(request.method, request.path, skip_accept_encoding=True)
            for name, value in request.headers:
                conn.putheader(name, value)
            if request.body is not None:
                conn.putheader("Content-Length", str(len(request.body)))
            conn.endheaders(request.body)
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            watching = request.verb == "watch" and response.status == 200
            body = self._read_watch(response) if watching else response.read()
            # After a CONNECT the server treats the connection as a tunnel: start a new one.
            if response.will_close or request.verb == "watch" or request.method == "CONNECT":
                self.close()
            return Response(response.status, headers, body, time.monotonic() - started)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return Response(-1, {}, b"", time.monotonic() - started, f"{type(e).__name__}: {e}")

    def _read_watch(self, response: http.client.HTTPResponse) -> bytes:
        """A watch asked for timeoutSeconds of at most 1: it must end by itself, soon."""
        chunks = []
        with contextlib.suppress(socket.timeout, TimeoutError):
            while line := response.readline():
                chunks.append(line)
        return b"".join(chunks)


#: Statuses the connector may answer with at all.
ALLOWED = frozenset({200, 201, 202, 304, 400, 401, 403, 404, 405, 406, 409, 410, 413, 415, 422, 429, 503, 504})


#: Methods aiohttp's HTTP parser knows; it refuses any other token (even a lower-case "get") with a
#: plain-text 400 before the connector sees the request (kube-apiserver would answer 405 with a
#: Status). A documented limit (README), allowed by the oracle for these methods only.
PARSER_METHODS = frozenset(
    [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "CONNECT",
        "OPTIONS",
        "TRACE",
        "PATCH",
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
    ]
)


def problems(request: Request, response: Response, forbidden: Iterable[str]) -> list[str]:
    """What is wrong with a response; empty when it is acceptable."""
    found: list[str] = []
    if response.error:
        return [f"no HTTP response: {response.error}"]
    if request.method not in PARSER_METHODS and response.status == 400:
        return [] if response.body.startswith(b"Invalid method encountered") else [f"{response.body[:100]!r}"]
    if request.method == "CONNECT" and response.status == 400 and response.body == request.path.encode():
        return []  # aiohttp's parser reads a CONNECT target as host:port; a path with a ":" is not one (README)
    expect = dict(request.headers).get("Expect")
    if expect is not None and expect.lower() != "100-continue" and response.status == 417:
        return []  # what Go's HTTP server (and so kube-apiserver) answers too, in plain text
    relayed_timeout = response.status == 504 and b"Too large resource version" in response.body
    if response.status >= 500 and response.status != 503 and not relayed_timeout:
        # 504 only as the control plane's own answer to a resourceVersion from its future, passed on
        # as kube-apiserver gives it to its clients (they retry).
        found.append(f"HTTP {response.status}")
    if response.status not in ALLOWED:
        found.append(f"unexpected HTTP {response.status}")
    path = request.path.split("?")[0]
    plain = path in ("/healthz", "/livez", "/readyz", "/metrics") or path.startswith(("/healthz/", "/livez/",
                                                                                        "/readyz/"))  # fmt: skip
    if response.status >= 400 and not plain and request.method != "HEAD":
        try:
            status = json.loads(response.body)
        except ValueError:
            status = None
        if not (isinstance(status, dict) and status.get("kind") == "Status" and status.get("code") == response.status):
            found.append(f"error body is not a Status with code {response.status}: {response.body[:200]!r}")
    text = response.body.decode(errors="replace")
    found += [f"leaks {marker!r}" for marker in forbidden if marker in text]
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
