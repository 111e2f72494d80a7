"""Issue 20 acceptance: the app cluster's admission chain applies to connected claims.

Real app cluster, real control plane with Crossplane, the connector as a local process. Each
policy is compared with kube-apiserver itself: a local CRD of the same group and resource
(``kubernetesclusters.k8s.starter.org`` at version ``v9local``, served by the app cluster's
own kube-apiserver beside the connector's ``v1alpha1``) is written under the very same
configurations, and kubectl must print the same words for both. The webhooks are a small
HTTPS server in this test (127.0.0.1), reached through a Service (ExternalName ``localhost``)
and through a URL.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from connector_fixtures import WORK_ROOT, ConnectorProcess, app, cluster_uid, fresh_namespace, serving

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE, pki
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP, PLURAL, KIND = "k8s.starter.org", "kubernetesclusters", "KubernetesCluster"
CONNECTED, LOCAL = "v1alpha1", "v9local"
APISERVICES = (f"{CONNECTED}.{GROUP}",)
HOOK_NAMESPACE = "admission-e2e-hooks"
ENFORCED = {"admission-e2e": "enforced"}
MUTATED_LABEL = "admission.e2e/mutated"
RULE = {
    "apiGroups": [GROUP],
    "apiVersions": ["*"],
    "resources": [PLURAL],
    "operations": ["CREATE", "UPDATE"],
}


@dataclass
class HookServer:
    """The test's admission webhooks: ``/validate`` refuses size ``huge``, ``/mutate`` adds a label."""

    port: int
    ca_pem: bytes
    reviews: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode()


def _answer(path: str, review: dict[str, Any]) -> dict[str, Any]:
    request = review["request"]
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    obj = request.get("object") or {}
    if path == "/validate":
        size = ((obj.get("spec") or {}).get("parameters") or {}).get("nodes", {}).get("size")
        response["warnings"] = [f"validated by the e2e hook for {request['userInfo']['username']}"]
        if size == "huge":
            response["allowed"] = False
            response["status"] = {"code": 403, "message": "size huge is not offered"}
    elif path == "/mutate":
        labels = (obj.get("metadata") or {}).get("labels")
        key = MUTATED_LABEL.replace("/", "~1")
        patch = (
            [{"op": "add", "path": f"/metadata/labels/{key}", "value": "yes"}]
            if labels
            else [{"op": "add", "path": "/metadata/labels", "value": {MUTATED_LABEL: "yes"}}]
        )
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


@pytest.fixture(scope="module")
def hooks() -> Iterator[HookServer]:
    """An HTTPS webhook server on 127.0.0.1 with a certificate for its Service name and address."""
    ca = pki.make_ca("admission-e2e-ca")
    leaf = pki.issue(
        ca,
        "admission-hooks",
        dns_names=[f"hooks.{HOOK_NAMESPACE}.svc", "localhost"],
        ip_addresses=["127.0.0.1"],
        server=True,
    )
    work = WORK_ROOT / "admission-hooks"
    leaf.write(work / "tls.crt", work / "tls.key")
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(review["request"])
            # kube-apiserver adds ?timeout=…s to the path, as the connector does.
            body = json.dumps(_answer(urlsplit(self.path).path, review)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(work / "tls.crt", work / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HookServer(server.server_address[1], ca.cert_pem, seen)
    finally:
        server.shutdown()
        server.server_close()


def _crd() -> dict[str, Any]:
    """The local twin of the claim API: same group, resource and kind, another version."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": "kubernetescluster", "listKind": f"{KIND}List"},
            "versions": [
                {
                    "name": LOCAL,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    """The connector serving the claim API, with the local twin CRD beside it."""
    app(testbed, "apply", "-f", "-", input=json.dumps(_crd()))
    app(testbed, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    try:
        with serving(testbed, APISERVICES) as proc:
            eventually(
                lambda: LOCAL in app(testbed, "api-versions").stdout,
                timeout=60,
                what="the local twin version in discovery",
            )
            yield proc
    finally:
        app(testbed, "delete", "crd", f"{PLURAL}.{GROUP}", "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def namespace(testbed: Testbed, conn: ConnectorProcess) -> Iterator[str]:
    with fresh_namespace(testbed, "e2e-adm") as name:
        app(testbed, "label", "namespace", name, *(f"{k}={v}" for k, v in ENFORCED.items()))
        yield name


@pytest.fixture
def configs(testbed: Testbed) -> Iterator[list[str]]:
    """Admission configurations a test applies (kind/name), deleted afterwards."""
    made: list[str] = []
    yield made
    if made:
        app(testbed, "delete", "--ignore-not-found", *made, check=False)


def apply_config(testbed: Testbed, made: list[str], *docs: dict[str, Any]) -> None:
    for doc in docs:
        app(testbed, "apply", "-f", "-", input=json.dumps(doc))
        made.append(f"{doc['kind'].lower()}/{doc['metadata']['name']}")


def claim(name: str, version: str, *, count: int = 2, size: str = "small") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"id": name, "parameters": {"nodes": {"count": count, "size": size}}},
    }


def kubectl_apply(
    testbed: Testbed, namespace: str, body: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    return app(testbed, "apply", "-n", namespace, *extra, "-f", "-", input=json.dumps(body), check=False)


def same_words(testbed: Testbed, namespace: str, name: str, *extra: str, **spec: Any) -> tuple[str, str]:
    """kubectl's stderr for the connected claim and for its local twin, written the same way."""
    connected = kubectl_apply(testbed, namespace, claim(name, CONNECTED, **spec), *extra)
    local = kubectl_apply(testbed, namespace, claim(name, LOCAL, **spec), *extra)
    return connected.stderr.strip(), local.stderr.strip()


_ATTEMPTS = iter(range(10**6))


def both_say(
    testbed: Testbed, namespace: str, prefix: str, words: str, *extra: str, **spec: Any
) -> tuple[str, str, str] | None:
    """(name, connected, local) once both sides say ``words`` about a new claim (a new
    configuration reached both), else None. Each attempt names a new claim: one that an attempt
    before the configuration created would only be left unchanged by the next ``kubectl apply``."""
    name = f"{prefix}-{next(_ATTEMPTS)}"
    connected, local = same_words(testbed, namespace, name, *extra, **spec)
    return (name, connected, local) if words in connected and words in local else None


def stored(testbed: Testbed, namespace: str, name: str) -> dict[str, Any] | None:
    """The claim as the control plane holds it (None when it never got there)."""
    ref = contract.AppRef(cluster_uid(testbed), namespace, name)
    found = testbed.kubectl(
        CONTROL_PLANE,
        "get",
        PLURAL,
        "-n",
        testbed.claim_namespace,
        contract.control_plane_name(ref),
        "-o",
        "json",
        "--ignore-not-found",
    ).stdout
    return json.loads(found) if found.strip() else None


def max_nodes_policy(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [RULE]},
            "variables": [{"name": "nodes", "expression": "object.spec.parameters.nodes.count"}],
            "validations": [
                {
                    "expression": "variables.nodes <= 3",
                    "messageExpression": (
                        "'nodes.count ' + string(variables.nodes) + ' is more than 3 for ' + object.metadata.name"
                        " + ' (asked by ' + request.userInfo.username + ')'"
                    ),
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": f"{name}-binding"},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": ENFORCED}},
        },
    }
    return policy, binding


def test_a_policy_denies_a_claim_in_kube_apiservers_words_and_it_never_reaches_the_control_plane(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, configs: list[str]
) -> None:
    apply_config(testbed, configs, *max_nodes_policy("e2e-max-nodes"))
    # A new policy applies within seconds: await the first denial on both sides.
    name, connected, local = eventually(
        lambda: both_say(testbed, namespace, "big", "denied", count=5),
        timeout=60,
        what="the new policy denying on both sides",
    )
    assert f"is more than 3 for {name}" in connected
    assert connected == local
    assert stored(testbed, namespace, name) is None

    # The namespaceSelector: an unlabelled namespace is not covered.
    with fresh_namespace(testbed, "e2e-adm-free") as free:
        created = kubectl_apply(testbed, free, claim("big", CONNECTED, count=5))
        assert created.returncode == 0, created.stderr
        assert stored(testbed, free, "big") is not None

    # Updates and patches (merge and JSON) are admitted on the patched object.
    assert kubectl_apply(testbed, namespace, claim("small", CONNECTED)).returncode == 0
    assert kubectl_apply(testbed, namespace, claim("small", LOCAL)).returncode == 0
    for kind, patch in (
        ("merge", '{"spec":{"parameters":{"nodes":{"count":9}}}}'),
        ("json", '[{"op":"replace","path":"/spec/parameters/nodes/count","value":9}]'),
    ):
        words = [
            app(
                testbed,
                "patch",
                "-n",
                namespace,
                f"{PLURAL}.{version}.{GROUP}",
                "small",
                "--type",
                kind,
                "-p",
                patch,
                check=False,
            ).stderr.strip()
            for version in (CONNECTED, LOCAL)
        ]
        assert "is more than 3 for small" in words[0], words
        assert words[0] == words[1]
    assert stored(testbed, namespace, "small")["spec"]["parameters"]["nodes"]["count"] == 2  # type: ignore[index]

    # Server-side dry run: denied in the same words, and nothing is written when allowed.
    for extra in (("--dry-run=server",), ("--dry-run=server", "--server-side")):
        connected, local = same_words(testbed, namespace, "dry", *extra, count=7)
        assert "is more than 3 for dry" in connected
        assert connected == local
    allowed = kubectl_apply(testbed, namespace, claim("dry", CONNECTED), "--dry-run=server", "--server-side")
    assert allowed.returncode == 0, allowed.stderr
    assert stored(testbed, namespace, "dry") is None


def test_a_warn_binding_reaches_kubectl(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, configs: list[str]
) -> None:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "e2e-no-large"},
        "spec": {
            "matchConstraints": {"resourceRules": [RULE]},
            "validations": [
                {"expression": "object.spec.parameters.nodes.size != 'large'", "message": "large is costly"}
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "e2e-no-large-warn"},
        "spec": {"policyName": "e2e-no-large", "validationActions": ["Warn"]},
    }
    apply_config(testbed, configs, policy, binding)
    expected = (
        "Warning: Validation failed for ValidatingAdmissionPolicy 'e2e-no-large' with binding 'e2e-no-large-warn': "
        "large is costly"
    )
    name, connected, local = eventually(
        lambda: both_say(testbed, namespace, "large", expected, size="large"),
        timeout=60,
        what="the warning on both sides",
    )
    assert connected == local
    assert stored(testbed, namespace, name) is not None, "a warning does not stop the write"


def test_webhooks_mutate_and_validate_claims_as_for_a_local_resource(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, configs: list[str], hooks: HookServer
) -> None:
    app(testbed, "create", "namespace", HOOK_NAMESPACE, check=False)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hooks", "namespace": HOOK_NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": hooks.port}]},
    }
    app(testbed, "apply", "-f", "-", input=json.dumps(service))
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "e2e-sizes"},
        "webhooks": [
            {
                "name": "sizes.admission-e2e.example.org",
                "clientConfig": {
                    "service": {"namespace": HOOK_NAMESPACE, "name": "hooks", "path": "/validate", "port": hooks.port},
                    "caBundle": hooks.ca_bundle,
                },
                "rules": [RULE],
                "namespaceSelector": {"matchLabels": ENFORCED},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "e2e-labels"},
        "webhooks": [
            {
                "name": "labels.admission-e2e.example.org",
                "clientConfig": {"url": f"https://127.0.0.1:{hooks.port}/mutate", "caBundle": hooks.ca_bundle},
                "rules": [RULE],
                "namespaceSelector": {"matchLabels": ENFORCED},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }
    apply_config(testbed, configs, validating, mutating)
    name, connected, local = eventually(
        lambda: both_say(testbed, namespace, "huge", "denied", size="huge"),
        timeout=60,
        what="the validating webhook denying on both sides",
    )
    assert (
        'admission webhook "sizes.admission-e2e.example.org" denied the request: size huge is not offered' in connected
    )
    assert connected == local
    assert stored(testbed, namespace, name) is None

    created = kubectl_apply(testbed, namespace, claim("labelled", CONNECTED))
    assert created.returncode == 0, created.stderr
    assert "Warning: validated by the e2e hook for" in created.stderr
    up = stored(testbed, namespace, "labelled")
    assert up is not None and up["metadata"]["labels"][MUTATED_LABEL] == "yes"
    seen = [r for r in hooks.reviews if r["name"] == "labelled" and r["resource"]["version"] == CONNECTED]
    assert seen, "the webhooks saw the claim"
    for review in seen:
        assert review["namespace"] == namespace
        assert review["object"]["metadata"]["namespace"] == namespace
        assert not any(
            k.startswith("mcp-connector.upbound.io/") for k in review["object"]["metadata"].get("labels", {})
        )
        assert (
            review["userInfo"]["username"]
            == testbed.kubectl_json(APP_CLUSTER, "auth", "whoami")["status"]["userInfo"]["username"]
        )

    # A server-side dry run is admitted (webhooks with sideEffects None take it) and shows the
    # mutated object without writing it.
    dry = app(
        testbed, "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=json.dumps(claim("dry-hook", CONNECTED)),
    )  # fmt: skip
    assert json.loads(dry.stdout)["metadata"]["labels"][MUTATED_LABEL] == "yes"
    assert stored(testbed, namespace, "dry-hook") is None
