"""Issue 20, MutatingAdmissionPolicy: the app cluster's MAPs mutate connected claims.

Real app cluster (serving ``admissionregistration.k8s.io/v1beta1`` MAPs, see testbed/README.md),
real control plane with Crossplane, the connector as a local process. Each policy is compared
with kube-apiserver itself: a local CRD of the same group, resource and schema (the claim CRD's
``openAPIV3Schema`` copied from the control plane, at version ``v9local``) is written under the
very same policies, and both must come out the same (and be refused in the same words).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from connector_fixtures import ConnectorProcess, app, fresh_namespace, serving
from test_admission import apply_config, claim, kubectl_apply, stored

from testbed import CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP, PLURAL, KIND = "k8s.starter.org", "kubernetesclusters", "KubernetesCluster"
CONNECTED, LOCAL = "v1alpha1", "v9local"
APISERVICES = (f"{CONNECTED}.{GROUP}",)
ENFORCED = {"admission-map-e2e": "enforced"}
TEAM_LABEL = "admission.e2e/team"
SIZED_LABEL = "admission.e2e/sized-by"
REG = "admissionregistration.k8s.io/v1beta1"
RULE = {"apiGroups": [GROUP], "apiVersions": ["*"], "resources": [PLURAL], "operations": ["CREATE", "UPDATE"]}
CONNECTOR_LABELS = "mcp-connector.upbound.io/"
#: The params are a CRD's objects: kube-apiserver 1.35 loses a built-in paramKind's (ConfigMap)
#: informer for good once no binding uses it (kubernetes/kubernetes#130887), so a second run
#: against the same app cluster would see kube-apiserver deny every write.
PARAMS_GROUP, PARAMS_PLURAL, PARAMS_KIND = "map-params.e2e.example.org", "teamparams", "TeamParams"
PARAMS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PARAMS_PLURAL}.{PARAMS_GROUP}"},
    "spec": {
        "group": PARAMS_GROUP,
        "scope": "Namespaced",
        "names": {"kind": PARAMS_KIND, "plural": PARAMS_PLURAL, "singular": "teamparams"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "object", "properties": {"team": {"type": "string"}}}},
                    }
                },
            }
        ],
    },
}


def _twin_crd(testbed: Testbed) -> dict[str, Any]:
    """The local twin of the claim API, with the claim CRD's own schema."""
    crd = testbed.kubectl_json(CONTROL_PLANE, "get", "crd", f"{PLURAL}.{GROUP}")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == CONNECTED)
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
                    "schema": version["schema"],
                    "subresources": {"status": {}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    """The connector serving the claim API, with the local twin CRD beside it."""
    name = f"{PLURAL}.{GROUP}"
    app(testbed, "wait", "--for=delete", "--timeout=120s", f"crd/{name}", check=False)  # another module's twin
    app(testbed, "apply", "-f", "-", input=json.dumps(_twin_crd(testbed)))
    app(testbed, "apply", "-f", "-", input=json.dumps(PARAMS_CRD))
    app(testbed, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    app(testbed, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PARAMS_PLURAL}.{PARAMS_GROUP}")
    try:
        with serving(testbed, APISERVICES) as proc:
            eventually(
                lambda: LOCAL in app(testbed, "api-versions").stdout,
                timeout=60,
                what="the local twin version in discovery",
            )
            yield proc
    finally:
        app(
            testbed,
            "delete",
            "crd",
            name,
            f"{PARAMS_PLURAL}.{PARAMS_GROUP}",
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )


@pytest.fixture
def namespace(testbed: Testbed, conn: ConnectorProcess) -> Iterator[str]:
    with fresh_namespace(testbed, "e2e-map") as name:
        app(testbed, "label", "namespace", name, *(f"{k}={v}" for k, v in ENFORCED.items()))
        yield name


@pytest.fixture
def configs(testbed: Testbed) -> Iterator[list[str]]:
    """Configurations a test applies (kind/name), deleted afterwards."""
    made: list[str] = []
    yield made
    if made:
        app(testbed, "delete", "--ignore-not-found", *made, check=False)


def _policy(name: str, mutations: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": REG,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {"resourceRules": [RULE]},
            "mutations": mutations,
            "reinvocationPolicy": "Never",
            **spec,
        },
    }


def _binding(policy: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": REG,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": f"{policy}-binding"},
        "spec": {"policyName": policy, "matchResources": {"namespaceSelector": {"matchLabels": ENFORCED}}, **spec},
    }


def label_policy(namespace: str) -> list[dict[str, Any]]:
    """ApplyConfiguration: a team label from a param (paramKind/paramRef), with a variable."""
    params = {
        "apiVersion": f"{PARAMS_GROUP}/v1",
        "kind": PARAMS_KIND,
        "metadata": {"name": "e2e-map-team", "namespace": namespace},
        "spec": {"team": "platform"},
    }
    policy = _policy(
        "e2e-map-team",
        [
            {
                "patchType": "ApplyConfiguration",
                "applyConfiguration": {
                    "expression": ("Object{metadata: Object.metadata{labels: {'" + TEAM_LABEL + "': variables.team}}}")
                },
            }
        ],
        paramKind={"apiVersion": f"{PARAMS_GROUP}/v1", "kind": PARAMS_KIND},
        variables=[{"name": "team", "expression": "params.spec.team"}],
        reinvocationPolicy="IfNeeded",
    )
    binding = _binding("e2e-map-team", paramRef={"name": "e2e-map-team", "parameterNotFoundAction": "Deny"})
    return [params, policy, binding]


def count_policy() -> list[dict[str, Any]]:
    """JSONPatch: at most 3 nodes, and a label saying so (``jsonpatch.escapeKey``)."""
    policy = _policy(
        "e2e-map-count",
        [
            {
                "patchType": "JSONPatch",
                "jsonPatch": {
                    "expression": (
                        "[JSONPatch{op: 'replace', path: '/spec/parameters/nodes/count', value: 3}]"
                        " + (has(object.metadata.labels) ? [] :"
                        " [JSONPatch{op: 'add', path: '/metadata/labels', value: {}}])"
                        " + [JSONPatch{op: 'add', path: '/metadata/labels/' + jsonpatch.escapeKey('"
                        + SIZED_LABEL
                        + "'), value: 'e2e-map-count'}]"
                    )
                },
            }
        ],
        matchConditions=[{"name": "too-many", "expression": "object.spec.parameters.nodes.count > 3"}],
    )
    return [policy, _binding("e2e-map-count")]


def app_side(testbed: Testbed, namespace: str, name: str, version: str) -> dict[str, Any]:
    return testbed.kubectl_json("app-cluster", "get", f"{PLURAL}.{version}.{GROUP}", "-n", namespace, name)


def _shape(obj: dict[str, Any]) -> dict[str, Any]:
    """What the policies decide: the labels (no connector labels) and the parameters."""
    labels = {k: v for k, v in (obj["metadata"].get("labels") or {}).items() if not k.startswith(CONNECTOR_LABELS)}
    return {"labels": labels, "parameters": obj["spec"]["parameters"], "id": obj["spec"]["id"]}


_ATTEMPTS = iter(range(10**6))


def test_mutating_policies_mutate_a_claim_as_kube_apiserver_mutates_a_local_resource(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, configs: list[str]
) -> None:
    apply_config(testbed, configs, *label_policy(namespace), *count_policy())

    def both_mutated() -> str | None:
        name = f"big-{next(_ATTEMPTS)}"
        for version in (CONNECTED, LOCAL):
            created = kubectl_apply(testbed, namespace, claim(name, version, count=5))
            assert created.returncode == 0, created.stderr
        shapes = [_shape(app_side(testbed, namespace, name, v)) for v in (CONNECTED, LOCAL)]
        return name if all(TEAM_LABEL in s["labels"] and SIZED_LABEL in s["labels"] for s in shapes) else None

    # New policies apply within seconds: await both on both sides.
    name = eventually(both_mutated, timeout=60, what="both policies mutating on both sides")
    connected, local = (_shape(app_side(testbed, namespace, name, v)) for v in (CONNECTED, LOCAL))
    assert connected == local
    assert connected["labels"] == {TEAM_LABEL: "platform", SIZED_LABEL: "e2e-map-count"}
    assert connected["parameters"]["nodes"] == {"count": 3, "size": "small"}
    up = stored(testbed, namespace, name)
    assert up is not None, "the mutated claim reaches the control plane"
    assert up["metadata"]["labels"][TEAM_LABEL] == "platform"
    assert up["spec"]["parameters"]["nodes"]["count"] == 3

    # An update is mutated too (the label put back, the count capped again), on both sides.
    for version in (CONNECTED, LOCAL):
        patched = app(
            testbed, "patch", "-n", namespace, f"{PLURAL}.{version}.{GROUP}", name, "--type", "json", "-p",
            json.dumps([
                {"op": "remove", "path": "/metadata/labels/" + TEAM_LABEL.replace("/", "~1")},
                {"op": "replace", "path": "/spec/parameters/nodes/count", "value": 8},
            ]),
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr
    connected, local = (_shape(app_side(testbed, namespace, name, v)) for v in (CONNECTED, LOCAL))
    assert connected == local
    assert connected["labels"][TEAM_LABEL] == "platform"
    assert stored(testbed, namespace, name)["spec"]["parameters"]["nodes"]["count"] == 3  # type: ignore[index]

    # Server-side apply is mutated as well (the connector admits the merged object).
    for version in (CONNECTED, LOCAL):
        applied = kubectl_apply(testbed, namespace, claim("ssa", version, count=6), "--server-side")
        assert applied.returncode == 0, applied.stderr
    connected, local = (_shape(app_side(testbed, namespace, "ssa", v)) for v in (CONNECTED, LOCAL))
    assert connected == local
    assert connected["labels"] == {TEAM_LABEL: "platform", SIZED_LABEL: "e2e-map-count"}
    assert stored(testbed, namespace, "ssa")["spec"]["parameters"]["nodes"]["count"] == 3  # type: ignore[index]

    # A claim the matchCondition leaves alone keeps its count; outside the namespaceSelector, nothing.
    for version in (CONNECTED, LOCAL):
        assert kubectl_apply(testbed, namespace, claim("small", version, count=2)).returncode == 0
    connected, local = (_shape(app_side(testbed, namespace, "small", v)) for v in (CONNECTED, LOCAL))
    assert connected == local
    assert connected["parameters"]["nodes"]["count"] == 2 and SIZED_LABEL not in connected["labels"]
    with fresh_namespace(testbed, "e2e-map-free") as free:
        created = kubectl_apply(testbed, free, claim("big", CONNECTED, count=5))
        assert created.returncode == 0, created.stderr
        assert _shape(app_side(testbed, free, "big", CONNECTED))["labels"] == {}
        assert stored(testbed, free, "big")["spec"]["parameters"]["nodes"]["count"] == 5  # type: ignore[index]


def test_a_policy_that_fails_refuses_the_write_naming_the_expression(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, configs: list[str]
) -> None:
    expression = (
        "Object{metadata: Object.metadata{labels: {'prometheus': "
        "object.spec.parameters.services.operators.prometheus.version}}}"
    )
    broken = {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": expression}}
    # failurePolicy Ignore: the write goes on, and so do the mutations after the one that failed.
    after = "Object{metadata: Object.metadata{labels: {'after-failure': 'applied'}}}"
    ignored = _policy(
        "e2e-map-ignored",
        [broken, {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": after}}],
        failurePolicy="Ignore",
    )
    apply_config(testbed, configs, ignored, _binding("e2e-map-ignored"))

    def both_labelled() -> str | None:
        name = f"ignored-{next(_ATTEMPTS)}"
        for version in (CONNECTED, LOCAL):
            created = kubectl_apply(testbed, namespace, claim(name, version))
            assert created.returncode == 0, created.stderr
        shapes = [_shape(app_side(testbed, namespace, name, v)) for v in (CONNECTED, LOCAL)]
        return name if all(s["labels"].get("after-failure") == "applied" for s in shapes) else None

    ignored_name = eventually(both_labelled, timeout=60, what="the ignoring policy mutating on both sides")
    assert stored(testbed, namespace, ignored_name) is not None

    policy = _policy("e2e-map-broken", [broken], failurePolicy="Fail")
    apply_config(testbed, configs, policy, _binding("e2e-map-broken"))

    def both_refused() -> tuple[str, str, str] | None:
        name = f"broken-{next(_ATTEMPTS)}"
        words = [kubectl_apply(testbed, namespace, claim(name, v)).stderr.strip() for v in (CONNECTED, LOCAL)]
        return (name, *words) if all("e2e-map-broken" in w for w in words) else None

    name, connected, local = eventually(both_refused, timeout=60, what="the failing policy refusing on both sides")
    assert expression in connected, connected
    assert "policy 'e2e-map-broken' with binding 'e2e-map-broken-binding' denied request" in connected
    assert connected == local
    assert stored(testbed, namespace, name) is None, "a refused claim never reaches the control plane"


SECRET_LABEL = "admission.e2e/secret"
BIND_LABEL = "admission.e2e/bind"


def _from_label(name: str, label: str, path: str, value: str) -> list[dict[str, Any]]:
    """A JSONPatch policy that writes ``value`` (CEL, may read ``label``) at ``path`` of a claim with that label."""
    policy = _policy(
        name,
        [
            {
                "patchType": "JSONPatch",
                "jsonPatch": {"expression": f"[JSONPatch{{op: 'add', path: '{path}', value: {value}}}]"},
            }
        ],
        matchConditions=[
            {"name": "labelled", "expression": f"has(object.metadata.labels) && '{label}' in object.metadata.labels"}
        ],
    )
    return [policy, _binding(name)]


def test_what_a_policy_writes_is_validated_as_what_a_tenant_writes(
    testbed: Testbed, conn: ConnectorProcess, namespace: str, configs: list[str]
) -> None:
    """kube-apiserver validates after mutating admission: a policy that copies a tenant's label
    value into a claim is held to the rules the tenant would be. Into ``spec.resourceRef`` (which
    would bind the claim to another tenant's XR) it is refused as the tenant is; into
    ``writeConnectionSecretToRef.name`` it must be a Secret name. Neither reaches the control plane."""
    apply_config(
        testbed,
        configs,
        *_from_label(
            "e2e-map-secret-ref", SECRET_LABEL, "/spec/writeConnectionSecretToRef",
            "{'name': object.metadata.labels['" + SECRET_LABEL + "']}",
        ),
        *_from_label(
            "e2e-map-bind", BIND_LABEL, "/spec/resourceRef",
            "{'apiVersion': 'k8s.starter.org/v1alpha1', 'kind': 'XKubernetesCluster', "
            "'name': string(object.metadata.labels['" + BIND_LABEL + "'])}",
        ),
    )  # fmt: skip

    def labelled(name: str, label: str, value: str) -> dict[str, Any]:
        body = claim(name, CONNECTED)
        body["metadata"]["labels"] = {label: value}
        return body

    def refused(label: str, value: str, field: str) -> tuple[str, str] | None:
        name = f"policy-wrote-{next(_ATTEMPTS)}"
        answer = kubectl_apply(testbed, namespace, labelled(name, label, value)).stderr.strip()
        return (name, answer) if field in answer else None

    for label, value, field in (
        (SECRET_LABEL, "Not_A_Secret", "spec.writeConnectionSecretToRef.name"),
        (BIND_LABEL, "another-tenants-xr", "spec.resourceRef"),
    ):
        name, answer = eventually(
            functools.partial(refused, label, value, field),
            timeout=60,
            what=f"{field} from a policy refused by the connector",
        )
        assert "is invalid" in answer, answer
        assert stored(testbed, namespace, name) is None, f"a claim with a refused {field} reached the control plane"

    created = kubectl_apply(testbed, namespace, labelled("good-ref", SECRET_LABEL, "team-kubeconfig"))
    assert created.returncode == 0, created.stderr
    assert app_side(testbed, namespace, "good-ref", CONNECTED)["spec"]["writeConnectionSecretToRef"] == {
        "name": "team-kubeconfig"
    }
    assert stored(testbed, namespace, "good-ref") is not None
