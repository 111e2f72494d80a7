"""Issue 17 (points 1, 2, 7): a tenant's values are parsed at the edge, never trusted.

The issue's attack first: a claim whose ``writeConnectionSecretToRef.name`` smuggles a field
selector and a ``..`` path deleted a Secret in another namespace. Now every such write is a 422
naming the field, and a name planted in the control plane behind the connector's back is never
used (the victim survives both). Then the same odd inputs are sent to the connector and to the
app cluster serving a local CRD of the same shape (kube-apiserver itself), and the status codes
compared; and real failure answers are read for anything internal.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from connector_fixtures import AppApi, ConnectorProcess, app, cluster_uid, cp, fresh_namespace, serving

from mcp_connector.core import contract
from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL, KIND = "k8s.starter.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster"
LOCAL_GROUP = "edge.e2e.local"
APISERVICES = ("v1alpha1.k8s.starter.org",)
ATTACK = "my-cluster-kubeconfig,metadata.name!=/../../../victimns/secrets/victim"
BAD_SECRET_NAMES = (ATTACK, "..", "%2F", "a%2F..%2Fb", "My-Kubeconfig", "x" * 254, "a,b", "metadata.name!=x", "a b")

LOCAL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{LOCAL_GROUP}"},
    "spec": {
        "group": LOCAL_GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "kubernetescluster", "kind": KIND, "listKind": f"{KIND}List"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def claim(name: str | None = None, *, group: str = GROUP, generate: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name} if name is not None else {"generateName": generate}
    return {
        "apiVersion": f"{group}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {"id": "edge", "parameters": {"nodes": {"count": 1, "size": "small"}}, **spec},
    }


def collection(namespace: str, *, group: str = GROUP) -> str:
    return f"/apis/{group}/{VERSION}/namespaces/{namespace}/{PLURAL}"


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    with serving(testbed, APISERVICES) as proc:
        yield proc


@pytest.fixture(scope="module")
def local_crd(testbed: Testbed) -> Iterator[None]:
    """The same kind served by the app cluster itself, for kube-apiserver's own answers."""
    app(testbed, "apply", "-f", "-", input=json.dumps(LOCAL_CRD))
    app(testbed, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{LOCAL_GROUP}")
    eventually(
        lambda: AppApi(testbed).call("GET", f"/apis/{LOCAL_GROUP}/{VERSION}/{PLURAL}")[0] == 200,
        what="the local CRD to be served",
    )
    yield
    app(testbed, "delete", "crd", f"{PLURAL}.{LOCAL_GROUP}", "--wait=false", check=False)


@pytest.fixture
def namespace(testbed: Testbed) -> Iterator[str]:
    with fresh_namespace(testbed, "edge") as name:
        yield name


# --- the attack -------------------------------------------------------------------------


@pytest.fixture
def victim(testbed: Testbed) -> Iterator[str]:
    ns = f"victimns-{secrets.token_hex(3)}"
    app(testbed, "create", "namespace", ns)
    app(testbed, "create", "secret", "generic", "victim", "-n", ns, "--from-literal=k=v")
    yield ns
    app(testbed, "delete", "namespace", ns, "--wait=false", check=False)


def victim_alive(tb: Testbed, ns: str) -> bool:
    return app(tb, "get", "secret", "victim", "-n", ns, check=False).returncode == 0


def test_a_secret_name_that_is_not_a_secret_name_is_422_and_the_victim_survives(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, victim: str
) -> None:
    api = AppApi(testbed)
    good = claim("good", writeConnectionSecretToRef={"name": "my-cluster-kubeconfig"})
    status, _, body = api.call("POST", collection(namespace), good)
    assert status == 201, body
    for n, bad in enumerate(BAD_SECRET_NAMES):
        ref = {"name": bad.replace("victimns", victim)}
        created = api.call("POST", collection(namespace), claim(f"evil-{n}", writeConnectionSecretToRef=ref))
        patched = api.call(
            "PATCH",
            f"{collection(namespace)}/good",
            {"spec": {"writeConnectionSecretToRef": ref}},
            content_type="application/merge-patch+json",
        )
        for status, _, body in (created, patched):
            assert status == 422, (bad, body)
            assert body["reason"] == "Invalid" and body["kind"] == "Status", body
            fields = {c["field"] for c in body["details"]["causes"]}
            assert fields == {"spec.writeConnectionSecretToRef.name"}, body
    # kubectl, as in the issue.
    evil = claim("evil", writeConnectionSecretToRef={"name": ATTACK.replace("victimns", victim)})
    out = app(testbed, "apply", "-n", namespace, "-f", "-", input=json.dumps(evil), check=False)
    assert out.returncode != 0 and "spec.writeConnectionSecretToRef.name" in out.stderr, out.stderr
    assert victim_alive(testbed, victim)
    uid = cluster_uid(testbed)
    for n in range(len(BAD_SECRET_NAMES)):
        ref = contract.AppRef(uid, namespace, f"evil-{n}")
        assert cp(testbed, "get", PLURAL, "-n", testbed.claim_namespace, contract.control_plane_name(ref),
                  check=False).returncode != 0  # fmt: skip


def test_a_name_planted_in_the_control_plane_is_never_used(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, victim: str
) -> None:
    """Defence in depth: a copy name written into a stored claim behind the connector's back
    (another client of the control plane) is parsed again and names nothing."""
    app(testbed, "apply", "-n", namespace, "-f", "-",
        input=json.dumps(claim("planted", writeConnectionSecretToRef={"name": "planted-conn"})))  # fmt: skip
    copied = eventually(
        lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "planted-conn", "-n", namespace),
        timeout=90, what="the connection Secret's copy",
    )  # fmt: skip
    hashed = contract.control_plane_name(contract.AppRef(cluster_uid(testbed), namespace, "planted"))
    planted = f"planted-conn,metadata.name!=/../../../{victim}/secrets/victim"
    cp(testbed, "annotate", PLURAL, hashed, "-n", testbed.claim_namespace, "--overwrite",
       f"{contract.APP_SECRET_NAME_ANNOTATION}={planted}")  # fmt: skip
    # The claim no longer asks for a copy the connector can name: its old copy goes (by the name
    # and uid read from the copy), which also shows the sync has run on the planted name.
    eventually(
        lambda: app(testbed, "get", "secret", "planted-conn", "-n", namespace, check=False).returncode != 0,
        timeout=90, what="the old copy to go",
    )  # fmt: skip
    assert victim_alive(testbed, victim)
    assert copied["metadata"]["uid"]


# --- names and parameters, compared with kube-apiserver ------------------------------------------

BAD_OBJECT_NAMES = ("Evil", "a..b", "-a", "a b", "x" * 254, "a/b", "..")


def test_names_generate_names_and_labels_are_refused_as_kube_apiserver_refuses_them(
    testbed: Testbed, conn: ConnectorProcess, local_crd: None, namespace: str
) -> None:
    api = AppApi(testbed)
    cases: list[tuple[str, dict[str, Any]]] = [
        *((f"name {n!r}", claim(n)) for n in BAD_OBJECT_NAMES if "/" not in n),
        *((f"generateName {g!r}", claim(generate=g)) for g in ("Bad-", "a_", "x" * 260)),
        ("label key", {**claim("lk"), "metadata": {"name": "lk", "labels": {"a/b/c": "v"}}}),
        ("label value", {**claim("lv"), "metadata": {"name": "lv", "labels": {"k": "a,b"}}}),
        ("two at once", {**claim("Two"), "metadata": {"name": "Two", "labels": {"k": "a b"}}}),
    ]
    for what, body in cases:
        local = {**body, "apiVersion": f"{LOCAL_GROUP}/{VERSION}"}
        expected, _, reference = api.call("POST", collection(namespace, group=LOCAL_GROUP), local)
        status, _, answer = api.call("POST", collection(namespace), body)
        assert status == expected == 422, (what, answer, reference)
        ours = {c["field"] for c in answer["details"]["causes"]}
        theirs = {c["field"] for c in reference["details"]["causes"]}
        assert ours == theirs, (what, answer, reference)


def _query(params: list[tuple[str, str]]) -> str:
    return "?" + urlencode(params, quote_via=quote)


#: (verb, parameters): odd values for every parameter kube-apiserver decodes.
ODD = ["nan", "NaN", "inf", "1e3", "-1", " 5", "+5", "0x10", "99999999999999999999", "", "True", "1", "yes", "5"]
CASES: list[tuple[str, list[tuple[str, str]]]] = [
    *(("list", [("limit", v)]) for v in ODD),
    *(("list", [("timeoutSeconds", v)]) for v in ODD),
    *(("watch", [("timeoutSeconds", v)]) for v in ODD if v not in ("", "-1")),
    *(("get", [("timeoutSeconds", v)]) for v in ("nan", "x")),
    *(("delete", [("gracePeriodSeconds", v)]) for v in ODD),
    *(("delete", [("propagationPolicy", v)]) for v in ("Orphan", "Background", "bogus", "orphan")),
    *(("delete", [("dryRun", v)]) for v in ("All", "all", "bogus")),
    *(("delete", [("orphanDependents", v)]) for v in ("yes", "0", "True")),
    *(("list", [("resourceVersionMatch", v)]) for v in ("bogus", "NotOlderThan", "Exact")),
    *(("list", [("resourceVersionMatch", v), ("resourceVersion", "0")]) for v in ("bogus", "NotOlderThan", "Exact")),
    *(("list", [("allowWatchBookmarks", v)]) for v in ("yes", "0")),
    *(("list", [("sendInitialEvents", v)]) for v in ("true", "yes")),
    *(("list", [("continue", v)]) for v in ("garbage", "")),
    *(("list", [("labelSelector", v)]) for v in ("a in (b", "a=b,", "!", "a==b", "a notin (x,y)", "A/b=c")),
    *(("list", [("fieldSelector", v)]) for v in ("metadata.name=a,b", "metadata.name", "spec.x=y", "metadata.name==a")),
    *(("list", [("pretty", v)]) for v in ("yes", "bogus")),
    *(("list", [("watch", v)]) for v in ("0", "false", "FALSE")),
    ("list", [("limit", "1"), ("limit", "abc")]),
    ("list", [("limit", "abc"), ("limit", "1")]),
    ("watch", [("timeoutSeconds", "1"), ("timeoutSeconds", "nan")]),
    ("watch", [("timeoutSeconds", "nan"), ("timeoutSeconds", "1")]),
    *(("create", [("dryRun", v)]) for v in ("All", "all", "bogus")),
    *(("create", [("fieldValidation", v)]) for v in ("Strict", "strict", "bogus", "")),
    *(("create", [("fieldManager", v)]) for v in ("x" * 129, "a\tb", "ok")),
    *(("create", [("timeoutSeconds", "nan"), ("resourceVersion", "abc")]),),
    # A watch does not take a continue token (it was served as a watch).
    *(("watch", [("timeoutSeconds", "1"), *more]) for more in (
        [("continue", "abc")], [("continue", "")], [("sendInitialEvents", "true"), ("continue", "abc")],
        [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan"), ("continue", "abc")],
    )),
    # Field selectors as fields.ParseSelector reads them (escapes, no trimming), on both paths.
    *(("list", [("fieldSelector", v)]) for v in ("metadata.name=a\\,b", "metadata.name!=a\\,b", "metadata.name =a",
                                                 "metadata.name=a b", "metadata.name=" + "n" * 64, "spec.x=a\\=b")),
    *(("list", [("fieldSelector", v), ("resourceVersion", "0")]) for v in ("metadata.name=a\\,b", "metadata.name =a")),
    ("watch", [("timeoutSeconds", "1"), ("fieldSelector", "metadata.name=a\\,b")]),
    # A label key's prefix is at most 253 characters (the cache took longer ones).
    *(("list", [("labelSelector", "a" * n + "/b=c"), ("resourceVersion", rv)]) for n in (253, 254) for rv in ("", "0")),
    # Selectors of several hundred values, up to the request line's 8,190 bytes.
    ("list", [("labelSelector", "x in (" + ",".join(f"v{i}" for i in range(1000)) + ")")]),
    ("list", [("fieldSelector", ",".join(f"metadata.name!=v{i}" for i in range(250)))]),
    ("watch", [("timeoutSeconds", "1"), ("labelSelector", "x notin (" + ",".join(f"v{i}" for i in range(1000)) + ")")]),
]


def _ask(api: AppApi, verb: str, base: str, params: list[tuple[str, str]], kind_group: str) -> int:
    query = _query(params)
    if verb == "watch":
        with api.watch(base + _query([("watch", "1"), *params]), timeout=20) as (status, _, _):
            return status
    if verb == "get":
        return api.call("GET", f"{base}/probe{query}")[0]
    if verb == "delete":
        return api.call("DELETE", f"{base}/nothere{query}")[0]
    if verb == "create":
        body = {**claim(generate="odd-"), "apiVersion": f"{kind_group}/{VERSION}"}
        return api.call("POST", f"{base}{query}", body)[0]
    return api.call("GET", f"{base}{query}")[0]


def test_query_parameters_are_accepted_exactly_when_kube_apiserver_accepts_them(
    testbed: Testbed, conn: ConnectorProcess, local_crd: None, namespace: str
) -> None:
    api = AppApi(testbed)
    for group in (GROUP, LOCAL_GROUP):
        probe = {**claim("probe"), "apiVersion": f"{group}/{VERSION}"}
        status, _, body = api.call("POST", collection(namespace, group=group), probe)
        assert status == 201, body
    differ, counts = [], {}
    for verb, params in CASES:
        expected = _ask(api, verb, collection(namespace, group=LOCAL_GROUP), params, LOCAL_GROUP)
        got = _ask(api, verb, collection(namespace), params, GROUP)
        counts[expected] = counts.get(expected, 0) + 1
        if got != expected:
            differ.append((verb, params, got, expected))
    print(f"[edge] {len(CASES)} odd parameter cases; kube-apiserver's answers: {sorted(counts.items())}")
    listed = "\n".join(map(str, differ))
    assert not differ, f"connector vs kube-apiserver (verb, params, connector, kube-apiserver):\n{listed}"


_TABLE, _POM = "as=Table;g=meta.k8s.io;v=v1", "as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: (verbs, Accept): negotiated as kube-apiserver negotiates them (case counts, protobuf and CBOR
#: are not served for custom resources, unknown conversions and parameters are refused).
ACCEPTS: list[tuple[tuple[str, ...], str]] = [
    *((("get", "list", "watch", "create"), a) for a in (
        "APPLICATION/JSON", "application/cbor", "application/vnd.kubernetes.protobuf", ",,,", "application/json;v=v1",
        "application/json;sv=v9", "application/json;stream=bogus", "application/json;as=Table", "text/html",
        "application/json;as=Bogus;g=meta.k8s.io;v=v1", "application/json;as=Table;g=other.io;v=v1",
        "*/*", "application/*", "*", "application/json;q=0", "text/html, */*;q=0.1", "application/json;charset=utf-8",
        "application/yaml, application/json", f"application/vnd.kubernetes.protobuf;{_TABLE}",
    )),
    *((("get", "list"), a) for a in (
        f"application/json;{_TABLE}", "application/json;as=Table;g=meta.k8s.io;v=v1beta1", f"application/json;{_POM}",
        f"application/json;{_TABLE};q=0.5, application/json",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )),
]  # fmt: skip
#: kube-apiserver answers these in YAML, which the connector does not write: its 406 (Known limits).
YAML_ONLY = ("application/yaml", f"application/yaml;{_TABLE}")


def test_accept_headers_are_negotiated_as_kube_apiserver_negotiates_them(
    testbed: Testbed, conn: ConnectorProcess, local_crd: None, namespace: str
) -> None:
    api = AppApi(testbed)
    for group in (GROUP, LOCAL_GROUP):
        shown = {**claim("shown"), "apiVersion": f"{group}/{VERSION}"}
        status, _, body = api.call("POST", collection(namespace, group=group), shown)
        assert status == 201, body

    def ask(group: str, verb: str, accept: str) -> int:
        base = collection(namespace, group=group)
        if verb == "watch":
            with api.watch(f"{base}?watch=1&timeoutSeconds=1", accept=accept) as (status, _, _):
                return status
        if verb == "create":
            body = {**claim(generate="accept-"), "apiVersion": f"{group}/{VERSION}"}
            return api.call("POST", base, body, accept=accept)[0]
        return api.call("GET", f"{base}/shown" if verb == "get" else base, accept=accept)[0]

    differ, counts = [], {}
    for verbs, accept in ACCEPTS:
        for verb in verbs:
            if verb == "get" and "PartialObjectMetadataList" in accept:
                continue  # kube-apiserver's own 500 ("content is not a list"); the connector gives the metadata
            expected, got = ask(LOCAL_GROUP, verb, accept), ask(GROUP, verb, accept)
            counts[expected] = counts.get(expected, 0) + 1
            if got != expected:
                differ.append((verb, accept, got, expected))
    for accept in YAML_ONLY:
        assert (ask(LOCAL_GROUP, "get", accept), ask(GROUP, "get", accept)) == (200, 406), accept
    print(f"[edge] {sum(counts.values())} Accept headers; kube-apiserver's answers: {sorted(counts.items())}")
    listed = "\n".join(map(str, differ))
    assert not differ, f"connector vs kube-apiserver (verb, Accept, connector, kube-apiserver):\n{listed}"


def test_deletecollection_pages_as_kube_apiserver_pages_it(
    testbed: Testbed, conn: ConnectorProcess, local_crd: None, namespace: str
) -> None:
    """DeleteCollection lists with the request's ListOptions: ``limit`` deletes one page and
    answers the next page's token, a token that does not decode is a 400. The connector ignored
    both and deleted every claim the selectors matched."""
    api = AppApi(testbed)
    answers = {}
    for group in (LOCAL_GROUP, GROUP):
        base = collection(namespace, group=group)
        for name in ("page-a", "page-b", "page-c"):
            body = {**claim(name), "apiVersion": f"{group}/{VERSION}"}
            body["metadata"]["labels"] = {"page": "yes"}
            status, _, created = api.call("POST", base, body)
            assert status == 201, created
        status, _, page = api.call("DELETE", f"{base}?labelSelector=page%3Dyes&limit=1")
        garbage = api.call("DELETE", f"{base}?labelSelector=page%3Dyes&continue=garbage")[0]
        answers[group] = (status, len(page["items"]), bool(page["metadata"].get("continue")), garbage)
    assert answers[GROUP] == answers[LOCAL_GROUP] == (200, 1, True, 400), answers


def test_a_user_in_many_groups_is_served_as_kube_apiserver_serves_them(
    testbed: Testbed, conn: ConnectorProcess, local_crd: None, namespace: str
) -> None:
    """The aggregator sends one X-Remote-Group header per group: 300 groups are 300 headers,
    which aiohttp's defaults (128) refused with a plain-text 400 on every request."""
    api = AppApi(testbed)
    user = ("many-groups", ["system:masters", *(f"team-{i}" for i in range(300))])
    answers = {g: api.call("GET", collection(namespace, group=g), impersonate=user)[0] for g in (LOCAL_GROUP, GROUP)}
    assert answers == {LOCAL_GROUP: 200, GROUP: 200}, answers


#: (content type, DeleteOptions body): kube-apiserver decodes the body (Go's typed decoding) and
#: reads no query then. The schemathesis run found the first as a 500 from the connector.
DELETE_BODIES: list[tuple[str, bytes]] = [
    ("application/yaml", b'"#": []\ndryRun: ["x"]\ngracePeriodSeconds: 25913\nkind: "\\x91"\npreconditions: "a^,"\n'),
    *(("application/json", b) for b in (
        b'{"preconditions":"abc"}', b'{"preconditions":{"uid":5}}', b'{"gracePeriodSeconds":"5"}',
        b'{"gracePeriodSeconds":1.5}', b'{"gracePeriodSeconds":99999999999999999999}', b'{"kind":"x"}',
        b'{"kind":"ListOptions"}', b'{"kind":5}', b'{"dryRun":"All"}', b'{"dryRun":["x"]}', b'{"dryRun":[null]}',
        b'{"orphanDependents":"true"}', b'{"propagationPolicy":"x"}', b'{"propagationPolicy":5}',
        b'{"propagationPolicy":"Orphan","orphanDependents":true}', b"[]", b"5", b" ", b'{"a":1} trailing',
        b'{"ignoreStoreReadErrorWithClusterBreakingPotential":"x"}', b'{"preconditions":{"uid":"not-its-uid"}}',
        b'{"kind":"DeleteOptions","apiVersion":"zz/v9","dryRun":["All"]}', b"null", b'{"GracePeriodSeconds":"x"}',
        b'{"ignoreStoreReadErrorWithClusterBreakingPotential":true,"dryRun":["All"]}',
    )),
    ("application/yaml", b"gracePeriodSeconds: 5.0\ndryRun: [All]"),
    *((t, b'{"dryRun":["All"]}') for t in ("text/plain", "application/json;foo", "*/*", "", "APPLICATION/JSON")),
]  # fmt: skip
#: (content type, patch) sent to ``target``: a patch's type is read exactly as kube-apiserver reads
#: it (before its options), and a result without a name is refused, not named from the URL.
PATCHES: list[tuple[str, bytes]] = [
    *((t, b"{}") for t in (
        "APPLICATION/MERGE-PATCH+JSON", "application/apply-patch+json", "application/apply-patch+cbor",
        "application/merge-patch+json ; charset=utf-8", "application/merge-patch+json; charset=utf-8",
        "application/strategic-merge-patch+json", "Application/Json-Patch+Json", "",
    )),
    ("application/merge-patch+json", b'{"metadata":null}'),
    ("application/merge-patch+json", b'{"metadata":{"name":null}}'),
    ("application/merge-patch+json", b'{"metadata":{"name":""}}'),
    ("application/json-patch+json", b'[{"op":"remove","path":"/metadata/name"}]'),
    ("application/json-patch+json", b'[{"op":"remove","path":"/metadata"}]'),
    ("application/merge-patch+json", b'{"metadata":{"generateName":"Bad_"}}'),
    ("application/merge-patch+json", b'{"metadata":{"generateName":null}}'),
]  # fmt: skip
#: Content types of a create's body (protobuf left out: kube-apiserver itself answers a custom
#: resource's protobuf body with a broken stream).
CREATE_TYPES = ("text/plain", "", "application/json; charset=utf-8", "application/cbor", "*/*", "APPLICATION/JSON",
                "application/yaml", "application/json;foo", "bogus", "application/x-www-form-urlencoded")  # fmt: skip


def test_request_bodies_are_decoded_exactly_as_kube_apiserver_decodes_them(
    testbed: Testbed, conn: ConnectorProcess, local_crd: None, namespace: str
) -> None:
    """DeleteOptions bodies, patches and Content-Types answered as a local CRD answers them; never a 500."""
    api = AppApi(testbed)

    def ensure(group: str) -> None:
        """``target`` exists and is not being deleted (a claim's finalizer keeps it a while)."""
        base = collection(namespace, group=group)

        def settled() -> int | None:
            status, _, body = api.call("GET", f"{base}/target")
            deleting = status == 200 and body["metadata"].get("deletionTimestamp")
            return None if deleting else status

        if eventually(settled, what=f"{group}'s target to be gone or kept") == 404:
            status, _, body = api.call("POST", base, {**claim("target"), "apiVersion": f"{group}/{VERSION}"})
            assert status == 201, body

    def delete(group: str, content_type: str, body: bytes) -> int:
        ensure(group)
        return api.call("DELETE", f"{collection(namespace, group=group)}/target", body, content_type=content_type)[0]

    def create(group: str, content_type: str) -> int:
        body = json.dumps({**claim(generate="typed-"), "apiVersion": f"{group}/{VERSION}"}).encode()
        return api.call("POST", collection(namespace, group=group), body, content_type=content_type)[0]

    def patch(group: str, content_type: str, body: bytes) -> int:
        ensure(group)
        path = f"{collection(namespace, group=group)}/target?fieldManager=edge"
        return api.call("PATCH", path, body, content_type=content_type)[0]

    def nameless(group: str, method: str, name: str, content_type: str) -> int:
        """A PUT, or an apply that creates, of a body without metadata.name."""
        ensure(group)
        body = {k: v for k, v in claim(name).items() if k != "metadata"}
        body["apiVersion"] = f"{group}/{VERSION}"
        path = f"{collection(namespace, group=group)}/{name}?fieldManager=edge"
        return api.call(method, path, json.dumps(body).encode(), content_type=content_type)[0]

    differ, counts = [], {}
    for content_type, body in PATCHES:
        expected, got = patch(LOCAL_GROUP, content_type, body), patch(GROUP, content_type, body)
        counts[expected] = counts.get(expected, 0) + 1
        if got != expected:
            differ.append(("PATCH", content_type, body, got, expected))
    fresh = f"nameless-{secrets.token_hex(3)}"
    for method, name, content_type in (("PUT", "target", "application/json"),
                                       ("PATCH", fresh, "application/apply-patch+yaml")):  # fmt: skip
        expected, got = nameless(LOCAL_GROUP, method, name, content_type), nameless(GROUP, method, name, content_type)
        counts[expected] = counts.get(expected, 0) + 1
        if got != expected:
            differ.append((method, content_type, name, got, expected))
    for content_type, body in DELETE_BODIES:
        expected, got = delete(LOCAL_GROUP, content_type, body), delete(GROUP, content_type, body)
        counts[expected] = counts.get(expected, 0) + 1
        if got != expected:
            differ.append(("DELETE", content_type, body, got, expected))
    for content_type in CREATE_TYPES:
        expected, got = create(LOCAL_GROUP, content_type), create(GROUP, content_type)
        counts[expected] = counts.get(expected, 0) + 1
        if got != expected:
            differ.append(("POST", content_type, got, expected))
    print(f"[edge] {sum(counts.values())} odd bodies; kube-apiserver's: {sorted(counts.items())}")
    listed = "\n".join(map(str, differ))
    assert not differ, f"connector vs kube-apiserver (method, content type, body, connector, kube-apiserver):\n{listed}"


# --- nothing internal in a real failure answer ---------------------------------------------------


def _internal(tb: Testbed) -> list[str]:
    return [
        cluster_uid(tb),
        tb.claim_namespace + "/",
        f'namespace "{tb.claim_namespace}"',
        contract.APP_CLUSTER_LABEL + "=",
        contract.APP_NAMESPACE_LABEL + "=",
        tb.control_plane.apiserver_url.split("//")[1],
    ]


def test_failure_answers_show_nothing_internal(testbed: Testbed, conn: ConnectorProcess, namespace: str) -> None:
    api = AppApi(testbed)
    base = collection(namespace)
    answers = [
        api.call("GET", base + _query([("labelSelector", "a in (b")])),
        api.call("GET", base + _query([("labelSelector", "a=" + "x" * 70)])),
        api.call("GET", base + _query([("fieldSelector", "spec.x=y")])),
        api.call("GET", base + _query([("resourceVersion", "99999999999"), ("resourceVersionMatch", "Exact")])),
        api.call("POST", base, claim("schema", parameters={"nodes": {"count": "not-a-number"}})),
        api.call("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}" + _query([("labelSelector", "x notin (")])),
    ]
    assert api.call("POST", base, claim("dup"))[0] == 201
    answers.append(api.call("POST", base, claim("dup")))
    seen = []
    for status, _, body in answers:
        assert 400 <= status < 600 and isinstance(body, dict) and body.get("kind") == "Status", (status, body)
        text = json.dumps(body)
        leaked = [s for s in _internal(testbed) if s in text]
        assert not leaked, (leaked, body)
        seen.append(status)
    print(f"[edge] failure answers read for internals: {seen}")
    assert 409 in seen and 400 in seen
