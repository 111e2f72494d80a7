"""Issue 4 (connector side): only the front proxy gets in, RBAC decides, clusters never see each other."""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from connector_fixtures import ConnectorProcess, connected, start_connector, wait_available

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE, pki
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "k8s.starter.org", "v1alpha1", "kubernetesclusters"
MARKER = "b-secret-marker"
A, B = "e2e-hostile-a", "e2e-hostile-b"


def path(namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{PLURAL}"
    return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def claim(
    name: str, namespace: str | None = None, *, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KubernetesCluster",
        "metadata": metadata,
        "spec": {"id": spec.pop("id", name), "parameters": {"nodes": {"count": 1}}, **spec},
    }


def cp_get(tb: Testbed, ref: contract.AppRef) -> dict[str, Any] | None:
    name = contract.control_plane_name(ref)
    out = tb.kubectl(CONTROL_PLANE, "get", PLURAL, "-n", tb.claim_namespace, name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


# --- authentication -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(testbed: Testbed) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    """Connectors for two cluster IDs, called directly; B owns claims A must never reach."""
    for ns in ("team", "victim", "x"):
        testbed.kubectl(APP_CLUSTER, "create", "namespace", ns, check=False)
    a, b = start_connector(testbed, cluster_id=A), start_connector(testbed, cluster_id=B)
    try:
        for name in ("b-only", "shared-name", "b-two"):
            status, body = b.call("POST", path("team"), claim(name, id=MARKER))
            assert status == 201, body
        assert b.call("POST", path("victim"), claim("b-victim", id=MARKER))[0] == 201
        for ns, name in (("team", "mine"), ("team", "shared-name"), ("victim", "other")):
            status, body = a.call("POST", path(ns), claim(name))
            assert status == 201, body
        yield a, b
    finally:
        for proc in (a, b):
            for ns in ("team", "victim", "x"):
                proc.call("DELETE", path(ns))
            proc.stop()
        testbed.kubectl(
            CONTROL_PLANE,
            "delete",
            PLURAL,
            "-n",
            testbed.claim_namespace,
            "-l",
            f"{contract.APP_CLUSTER_LABEL} in ({A},{B})",
            "--ignore-not-found",
        )


def test_no_client_certificate_is_401(hostile: tuple[ConnectorProcess, ConnectorProcess]) -> None:
    a, _ = hostile
    for p in ("/apis", path("team"), path("team", "mine"), "/openapi/v2"):
        status, body = a.call("GET", p, cert=False)
        assert status == 401 and body["kind"] == "Status", (p, body)
    assert a.raw("GET", "/healthz", cert=False)[0] == 200
    assert a.raw("GET", "/livez", cert=False)[0] == 200
    status, body = a.call("GET", "/metrics", cert=False)
    assert status == 401 and body["kind"] == "Status", body


def test_certificate_from_another_ca_is_refused(
    hostile: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path
) -> None:
    a, _ = hostile
    rogue_ca = pki.make_ca("rogue-ca")
    rogue = pki.issue(rogue_ca, "front-proxy-client", client=True)
    rogue.write(tmp_path / "c.crt", tmp_path / "c.key")
    # Python's ssl rejects a client certificate it cannot verify in the handshake itself, so the
    # refusal is a TLS alert rather than an HTTP 401; either way nothing is served.
    try:
        status, _ = a.call("GET", path("team", "mine"), cert=(tmp_path / "c.crt", tmp_path / "c.key"))
    except (ssl.SSLError, ConnectionError):
        status = None  # refused in the handshake
    assert status in (None, 401)
    # A dead connector refuses every connection too: it must still be up and serving the front proxy.
    assert a.proc is not None and a.proc.poll() is None, a.logs()[-2000:]
    status, body = a.call("GET", path("team", "mine"))
    assert status == 200 and body["metadata"]["name"] == "mine", body


def test_cn_outside_allowed_names_or_missing_user_is_401(
    testbed: Testbed, hostile: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path
) -> None:
    a, _ = hostile
    app = testbed.app_cluster
    assert app.front_proxy_ca_cert and app.front_proxy_ca_key
    front_proxy_ca = pki.load(app.front_proxy_ca_cert, app.front_proxy_ca_key)
    intruder = pki.issue(front_proxy_ca, "not-the-aggregator", client=True)
    intruder.write(tmp_path / "i.crt", tmp_path / "i.key")
    status, body = a.call("GET", path("team", "mine"), cert=(tmp_path / "i.crt", tmp_path / "i.key"))
    assert status == 401, body
    status, body = a.call("GET", path("team", "mine"), user=("", ()))
    assert status == 401, body


# --- isolation: hostile requests from cluster A --------------------------------------------

B_ONLY = contract.control_plane_name(contract.AppRef(B, "team", "b-only"))
MINE = contract.control_plane_name(contract.AppRef(A, "team", "mine"))
B_LABEL = f"{contract.APP_CLUSTER_LABEL}={B}"
OWN_LABELS = {contract.APP_CLUSTER_LABEL: B, contract.APP_NAMESPACE_LABEL: "victim", contract.APP_NAME_LABEL: "x"}
MERGE, JSONP, APPLY = "application/merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml"

HOSTILE: list[tuple[str, str, str, Any, str, int | tuple[int, ...]]] = [
    ("get B's claim by its app name", "GET", path("team", "b-only"), None, "", 404),
    ("get B's claim by its hashed name", "GET", path("team", B_ONLY), None, "", 404),
    ("get B's claim through the claim namespace", "GET", path("mcp-claims", B_ONLY), None, "", 404),
    ("get own claim by its hashed name", "GET", path("team", MINE), None, "", 404),
    ("get other namespace's claim from team", "GET", path("team", "other"), None, "", 404),
    ("get B's status", "GET", path("team", "b-only", "status"), None, "", 404),
    ("list with B's cluster label", "GET", path("team") + f"?labelSelector={B_LABEL}", None, "", 200),
    ("list all namespaces with B's cluster label", "GET", path(None) + f"?labelSelector={B_LABEL}", None, "", 200),
    ("list with cluster != A", "GET", path(None) + f"?labelSelector={contract.APP_CLUSTER_LABEL}!={A}", None, "", 200),
    (
        "list team by field metadata.namespace=victim",
        "GET",
        path("team") + "?fieldSelector=metadata.namespace=victim",
        None,
        "",
        200,
    ),
    (
        "list all by field metadata.name=b-only",
        "GET",
        path(None) + "?fieldSelector=metadata.name=b-only",
        None,
        "",
        200,
    ),
    ("list with name != field selector", "GET", path(None) + "?fieldSelector=metadata.name!=nothing", None, "", 200),
    (
        "list with a forged continue token",
        "GET",
        path("team") + "?limit=1&continue=Zm9yZ2Vk",
        None,
        "",
        (400, 410, 422),
    ),
    ("list with a bad field selector", "GET", path("team") + "?fieldSelector=metadata.name=x=y,", None, "", (200, 400)),
    (
        "watch team with B's label",
        "GET",
        path("team") + f"?watch=1&timeoutSeconds=1&labelSelector={B_LABEL}",
        None,
        "",
        200,
    ),
    (
        "watch all from resourceVersion 0",
        "GET",
        path(None) + "?watch=1&timeoutSeconds=1&resourceVersion=0",
        None,
        "",
        200,
    ),
    ("create with B's labels", "POST", path("x"), claim("forged", labels=OWN_LABELS), "application/json", 201),
    (
        "create naming another namespace in the body",
        "POST",
        path("team"),
        claim("n", "victim"),
        "application/json",
        400,
    ),
    ("create B's claim name in the same namespace", "POST", path("x"), claim("b-only"), "application/json", 201),
    ("create a hashed name", "POST", path("x"), claim(B_ONLY), "application/json", 201),
    (
        "create via generateName",
        "POST",
        path("x"),
        {**claim(""), "metadata": {"generateName": "b-only-"}},
        "application/json",
        201,
    ),
    (
        "dry-run create with B's labels",
        "POST",
        path("x") + "?dryRun=All",
        claim("dry", labels=OWN_LABELS),
        "application/json",
        201,
    ),
    ("update B's claim", "PUT", path("team", "b-only"), claim("b-only", id="pwned"), "application/json", 404),
    (
        "update own claim into another namespace",
        "PUT",
        path("team", "mine"),
        claim("mine", "victim"),
        "application/json",
        400,
    ),
    (
        "update own claim with B's labels",
        "PUT",
        path("team", "mine"),
        claim("mine", labels=OWN_LABELS),
        "application/json",
        (200, 409, 422),  # 422: an update needs metadata.resourceVersion
    ),
    ("merge-patch B's claim", "PATCH", path("team", "b-only"), {"spec": {"id": "pwned"}}, MERGE, 404),
    ("merge-patch own labels to B", "PATCH", path("team", "mine"), {"metadata": {"labels": OWN_LABELS}}, MERGE, 200),
    ("merge-patch own namespace", "PATCH", path("team", "mine"), {"metadata": {"namespace": "victim"}}, MERGE, 400),
    ("merge-patch own name", "PATCH", path("team", "mine"), {"metadata": {"name": "b-only"}}, MERGE, 400),
    (
        "json-patch removing all labels",
        "PATCH",
        path("team", "mine"),
        [{"op": "remove", "path": "/metadata/labels"}],
        JSONP,
        (200, 422),
    ),
    (
        "json-patch adding B's cluster label",
        "PATCH",
        path("team", "mine"),
        [{"op": "add", "path": "/metadata/labels", "value": OWN_LABELS}],
        JSONP,
        200,
    ),
    (
        "json-patch B's claim",
        "PATCH",
        path("team", "b-only"),
        [{"op": "replace", "path": "/spec/id", "value": "x"}],
        JSONP,
        404,
    ),
    (
        "apply with B's labels",
        "PATCH",
        path("team", "mine") + "?fieldManager=e2e&force=true",
        claim("mine", labels=OWN_LABELS),
        APPLY,
        200,
    ),
    ("apply under another name", "PATCH", path("team", "mine") + "?fieldManager=e2e", claim("b-only"), APPLY, 400),
    (
        "apply to B's claim name creates our own",
        "PATCH",
        path("x", "b-two") + "?fieldManager=e2e",
        claim("b-two"),
        APPLY,
        201,
    ),
    ("status merge-patch of B's claim", "PATCH", path("team", "b-only", "status"), {"status": {"x": 1}}, MERGE, 404),
    ("status update of B's claim", "PUT", path("team", "b-only", "status"), claim("b-only"), "application/json", 404),
    ("delete B's claim", "DELETE", path("team", "b-only"), None, "", 404),
    ("delete B's claim by hashed name", "DELETE", path("team", B_ONLY), None, "", 404),
    ("deletecollection with B's label", "DELETE", path("team") + f"?labelSelector={B_LABEL}", None, "", 200),
    (
        "deletecollection by field namespace=victim",
        "DELETE",
        path("team") + "?fieldSelector=metadata.namespace=victim",
        None,
        "",
        200,
    ),
    (
        "strategic merge patch",
        "PATCH",
        path("team", "mine"),
        {"metadata": {"labels": OWN_LABELS}},
        "application/strategic-merge-patch+json",
        415,
    ),
    ("path traversal", "GET", f"/apis/{GROUP}/{VERSION}/namespaces/team/../victim/{PLURAL}", None, "", 404),
]


@pytest.mark.parametrize(
    ("what", "method", "url", "body", "content_type", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_request(
    testbed: Testbed,
    hostile: tuple[ConnectorProcess, ConnectorProcess],
    what: str,
    method: str,
    url: str,
    body: Any,
    content_type: str,
    expected: int | tuple[int, ...],
) -> None:
    a, _ = hostile
    raw = None
    if content_type == APPLY:
        raw = json.dumps(body).encode()
    status, answer = a.call(
        method, url, raw if raw is not None else body, content_type=content_type or "application/json"
    )
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert status in allowed, (what, answer)
    text = json.dumps(answer)
    assert MARKER not in text and B not in text, (what, text[:500])
    assert "claim-" not in text or "claim-" in url or "claim-" in json.dumps(body), (what, text[:500])
    # B's claims are untouched, and everything A ever stored carries A's labels.
    for name in ("b-only", "b-two", "shared-name"):
        stored = cp_get(testbed, contract.AppRef(B, "team", name))
        assert stored is not None and stored["spec"]["id"] == MARKER, (what, name)
    stored_a = testbed.kubectl_json(
        CONTROL_PLANE, "get", PLURAL, "-n", testbed.claim_namespace, "-l", f"{contract.APP_CLUSTER_LABEL}={A}"
    )["items"]
    for item in stored_a:
        ref = contract.app_ref_of(item)
        assert ref is not None and ref.cluster_id == A
        assert item["metadata"]["name"] == contract.control_plane_name(ref), what
    mine = cp_get(testbed, contract.AppRef(A, "team", "mine"))
    assert mine is not None and contract.app_ref_of(mine) == contract.AppRef(A, "team", "mine"), what


def test_hostile_table_is_big_enough() -> None:
    assert len(HOSTILE) >= 30


# --- authorization through the real aggregator -----------------------------------------------


@pytest.fixture(scope="module")
def aggregated(testbed: Testbed) -> Iterator[ConnectorProcess]:
    testbed.kubectl(
        APP_CLUSTER,
        "delete",
        "apiservice",
        "--ignore-not-found",
        "v1alpha1.k8s.starter.org",
        "v1alpha1.db.example.org",
        "v1beta1.db.example.org",
    )
    with connected(testbed) as proc:
        wait_available(testbed, ["v1alpha1.k8s.starter.org"])
        yield proc


def test_rbac_decides_through_subject_access_review(testbed: Testbed, aggregated: ConnectorProcess) -> None:
    ns, other = f"e2e-rbac-{secrets.token_hex(3)}", f"e2e-rbac-{secrets.token_hex(3)}"
    user = f"reader-{secrets.token_hex(2)}"
    for n in (ns, other):
        testbed.kubectl(APP_CLUSTER, "create", "namespace", n)
        testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(claim("c", n)))
    try:
        denied = testbed.kubectl(APP_CLUSTER, "--as", user, "get", PLURAL, "-n", ns, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
        testbed.kubectl(
            APP_CLUSTER, "create", "role", "claim-reader", "-n", ns, "--verb=get,list", f"--resource={PLURAL}.{GROUP}"
        )
        testbed.kubectl(
            APP_CLUSTER, "create", "rolebinding", "claim-reader", "-n", ns, "--role=claim-reader", f"--user={user}"
        )
        # The connector caches denials briefly: the new binding takes effect when that runs out.
        listed = eventually(
            lambda: testbed.kubectl(APP_CLUSTER, "--as", user, "get", PLURAL, "-n", ns), what="the new RoleBinding"
        )
        assert "c " in listed.stdout or listed.stdout.splitlines()[1].startswith("c")
        assert testbed.kubectl(APP_CLUSTER, "--as", user, "get", PLURAL, "-n", ns, "c").returncode == 0
        elsewhere = testbed.kubectl(APP_CLUSTER, "--as", user, "get", PLURAL, "-n", other, check=False)
        assert elsewhere.returncode != 0 and "forbidden" in elsewhere.stderr.lower()
        create = testbed.kubectl(
            APP_CLUSTER, "--as", user, "apply", "-f", "-", check=False, input=json.dumps(claim("d", ns))
        )
        assert create.returncode != 0 and "forbidden" in create.stderr.lower(), create.stderr
    finally:
        for n in (ns, other):
            testbed.kubectl(APP_CLUSTER, "delete", "namespace", n, "--wait=false", check=False)


def test_an_empty_value_set_is_authorized_as_kube_apiserver_reads_it(
    testbed: Testbed, aggregated: ConnectorProcess
) -> None:
    """``k notin ()`` is ``k notin ("")`` to labels.Parse; a SubjectAccessReview with no values is invalid."""
    ns = f"e2e-sel-{secrets.token_hex(3)}"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", ns)
    testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(claim("c", ns, labels={"team": "a"})))
    try:
        for selector, names in (("team notin ()", ["c"]), ("team in ()", []), ("team in (a,)", ["c"])):
            listed = testbed.kubectl(APP_CLUSTER, "get", "--raw", f"{path(ns)}?labelSelector={quote(selector)}")
            assert [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]] == names, selector
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", ns, "--wait=false", check=False)
