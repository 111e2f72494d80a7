"""McpConnector under Pulumi mocks: which children exist and what they say, per credential form and mode."""

from __future__ import annotations

import base64
import json
from typing import Any

import pulumi
import pytest
import yaml
from component_testdata import (
    CP_KUBECONFIG,
    KUBE_SYSTEM_UID,
    Registered,
    Render,
    Rendered,
    is_secret,
    plain_parts,
    reveal,
)

from mcp_connector import upstream
from mcp_connector_component import manifests
from mcp_connector_component.guard import DISCONNECT_TYPE, GUARD_TYPE, DisconnectPlan, plan_from_inputs
from mcp_connector_component.tls import generation, service_dns_names

SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
APISERVICE = "kubernetes:apiregistration.k8s.io/v1:APIService"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
ALL_APISERVICES = ["v1alpha1.db.example.org", "v1alpha1.k8s.starter.org", "v1beta1.db.example.org"]

#: The image `make image` builds; no image is published, so in-cluster mode always names one.
IMAGE = "localhost/mcp-connector:0.1.0"
KUBECONFIG_ARGS = {"claim_namespace": "mcp-claims", "control_plane_kubeconfig": CP_KUBECONFIG, "image": IMAGE}
TOKEN_ARGS = {
    "image": IMAGE,
    "claim_namespace": "mcp-claims",
    "account": "acme",
    "control_plane": "prod",
    "token": "upbound-api-token-123",
}
TLS_GENERATION = generation(service_dns_names("mcp-connector", "kube-system"))
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _ok(r: Rendered) -> Rendered:
    assert r.error is None, r.error
    return r


def _container(r: Rendered) -> dict:
    return r.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]["containers"][0]


def _plan(r: Rendered) -> DisconnectPlan:
    guard = r.one(GUARD_TYPE).inputs
    assert is_secret(guard["kubeconfig"]), "the credential is a Pulumi secret in the guard's state"
    assert not [p for p in plain_parts(guard) if "cp-secret-token" in p or "upbound-api-token" in p]
    return plan_from_inputs(reveal(guard))  # type: ignore[arg-type]


def test_kubeconfig_in_cluster_children(render: Render) -> None:
    r = _ok(render(KUBECONFIG_ARGS))
    assert sorted(x.name for x in r.of_type(SECRET)) == sorted(
        ["mcp-connector-credentials", f"mcp-connector-tls-{TLS_GENERATION}", "mcp-connector-tls-ca"]
    )
    assert r.k8s_names("kubernetes:core/v1:ServiceAccount") == ["mcp-connector"]
    assert r.k8s_names("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding") == [
        "mcp-connector",
        "mcp-connector:system:auth-delegator",
    ]
    reader = r.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "mcp-connector-auth-reader")
    assert reader.inputs["metadata"]["namespace"] == "kube-system"
    assert reader.inputs["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    # Leader election: exactly its Lease (create cannot be restricted by name).
    leader = r.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "mcp-connector-leader").inputs
    assert leader["metadata"] == {
        **leader["metadata"],
        "name": "mcp-connector:leader-election",
        "namespace": "kube-system",
    }
    assert leader["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "watch", "update"],
            "resourceNames": ["mcp-connector"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = r.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "mcp-connector-leader").inputs
    assert binding["roleRef"]["name"] == "mcp-connector:leader-election"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mcp-connector", "namespace": "kube-system"}]
    # The Lease is named after the Service (the connector's default); the pod's name is its identity.
    assert _container(r)["env"] == [
        {"name": "MCP_CONNECTOR_LEADER_ELECT_IDENTITY", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    rules = r.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole").inputs["rules"]
    groups = {g for rule in rules for g in rule["apiGroups"]}
    assert groups == {"", "admissionregistration.k8s.io"}, "no apiregistration rights by default"
    admission = [r for r in rules if r["apiGroups"] == ["admissionregistration.k8s.io"]]
    assert all(r["verbs"] == ["list", "watch"] for r in admission), "admission configurations are only read"
    # Two replicas by default, spread over nodes where there are several, and a disruption budget.
    spec = r.one(DEPLOYMENT).inputs["spec"]
    assert spec["replicas"] == 2
    assert spec["template"]["spec"]["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": spec["selector"]["matchLabels"]},
        }
    ]
    # SIGTERM: 5 s unready while endpoints move, up to 20 s for requests in flight, then SIGKILL.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert r.one(PDB).inputs["spec"]["minAvailable"] == 1
    assert r.of_type(PDB) and _ok(render({**KUBECONFIG_ARGS, "replicas": 1})).of_type(PDB) == []
    assert r.k8s_names(APISERVICE) == ALL_APISERVICES
    assert r.outputs == {
        "cluster_id": KUBE_SYSTEM_UID,
        "app_cluster_uid": KUBE_SYSTEM_UID,
        "claim_apis": [
            "db.example.org/v1alpha1/PostgreSQLInstance",
            "db.example.org/v1beta1/PostgreSQLInstance",
            "k8s.starter.org/v1alpha1/KubernetesCluster",
        ],
        "apiservice_names": ["v1alpha1.db.example.org", "v1beta1.db.example.org", "v1alpha1.k8s.starter.org"],
        "control_plane_namespace": "mcp-claims",
    }


def test_cluster_id_defaults_to_kube_system_uid(render: Render) -> None:
    r = _ok(render(KUBECONFIG_ARGS))
    reads = [x for x in r.resources if x.read_id]
    assert [(x.typ, x.read_id) for x in reads] == [("kubernetes:core/v1:Namespace", "kube-system")]
    assert KUBE_SYSTEM_UID in _container(r)["args"]
    assert _plan(r).cluster_id == KUBE_SYSTEM_UID


def test_an_explicit_cluster_id_still_records_the_app_cluster(render: Render) -> None:
    """The app cluster is part of the identity whatever the cluster ID: its kube-system UID is read and planned."""
    r = _ok(render({**KUBECONFIG_ARGS, "cluster_id": "00000000-0000-0000-0000-000000000000"}))
    assert [(x.typ, x.read_id) for x in r.resources if x.read_id] == [("kubernetes:core/v1:Namespace", "kube-system")]
    assert r.outputs["cluster_id"] == "00000000-0000-0000-0000-000000000000"
    assert r.outputs["app_cluster_uid"] == KUBE_SYSTEM_UID
    plan = _plan(r)
    assert (plan.cluster_id, plan.app_cluster) == ("00000000-0000-0000-0000-000000000000", KUBE_SYSTEM_UID)
    disconnect = plan_from_inputs(reveal(r.one(DISCONNECT_TYPE).inputs))  # type: ignore[arg-type]
    assert disconnect.app_cluster == KUBE_SYSTEM_UID


def test_app_cluster_objects_are_replaced_when_the_app_cluster_changes(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every object in the app cluster carries its kube-system UID as replacement trigger; nothing else does.

    An update that the identity check refused has already recorded the re-pointed provider, so
    only the trigger makes the allowed update replace these objects instead of updating them
    in a cluster where they do not exist (seen with the real engine).
    """
    from pulumi.runtime import mocks

    triggers: dict[str, tuple[str, object]] = {}
    register = mocks.MockMonitor.RegisterResource

    def recording(self: mocks.MockMonitor, request: Any) -> Any:
        if request.HasField("replacement_trigger"):
            triggers[request.name] = (request.type, request.replacement_trigger.string_value)
        else:
            triggers[request.name] = (request.type, None)
        return register(self, request)

    monkeypatch.setattr(mocks.MockMonitor, "RegisterResource", recording)
    monkeypatch.setattr(
        "mcp_connector_component.discovery.scoped_kubeconfig", lambda name, *_: "kind: Config\nusers: []"
    )
    _ok(render({"platform_kubeconfig": CP_KUBECONFIG, "image": IMAGE}))
    in_app = {
        n: t for n, (typ, t) in triggers.items() if typ.startswith("kubernetes:") and n != "mcp-connector-control-plane"
    }
    control_plane = {
        "mcp-connector-claim-namespace",
        "mcp-connector-cp-sa",
        "mcp-connector-cp-role",
        "mcp-connector-cp-discovery",
        "mcp-connector-cp-token",
    }
    assert control_plane <= set(in_app), sorted(in_app)
    app_objects = {n: t for n, t in in_app.items() if n not in control_plane}
    assert {"mcp-connector-deployment", "mcp-connector-service", "mcp-connector-v1alpha1.k8s.starter.org"} <= set(
        app_objects
    )
    assert set(app_objects.values()) == {KUBE_SYSTEM_UID}, app_objects
    assert {n: in_app[n] for n in control_plane} == dict.fromkeys(control_plane), "the control plane's objects stay"
    others = {n: t for n, (typ, t) in triggers.items() if not typ.startswith("kubernetes:")}
    assert set(others.values()) == {None}, others


def test_an_app_cluster_uid_given_as_a_value_reads_nothing_from_the_app_cluster(render: Render) -> None:
    """For an app cluster that is gone: no read at all, and the default cluster ID is that UID."""
    given = "9a1c2b3d-0000-4000-8000-00000000000a"
    r = _ok(render({**KUBECONFIG_ARGS, "app_cluster_uid": given}))
    assert [x for x in r.resources if x.read_id] == []
    assert r.outputs["cluster_id"] == given and r.outputs["app_cluster_uid"] == given
    assert _plan(r).app_cluster == given


@pytest.mark.parametrize("given", ["kube-system", "5F0C3C56-8D0E-4C38-9D7B-2A4F7D1C0001", ""])
def test_an_app_cluster_uid_that_is_no_uid_is_refused_naming_it(render: Render, given: str) -> None:
    r = render({**KUBECONFIG_ARGS, "app_cluster_uid": given})
    assert r.error is not None and "app_cluster_uid" in str(r.error) and "must be a UID" in str(r.error)
    assert [x for x in r.resources if x.typ != "mcp-connector:index:McpConnector"] == []


def test_deployment_is_locked_down_and_checksummed(render: Render) -> None:
    r = _ok(render(KUBECONFIG_ARGS))
    deployment = r.one(DEPLOYMENT).inputs
    assert "annotations" not in deployment["metadata"], "Pulumi awaits the Deployment as any workload"
    pod = deployment["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    container = pod["spec"]["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == IMAGE
    checksum = pod["metadata"]["annotations"][manifests.CHECKSUM_ANNOTATION]
    assert isinstance(checksum, str) and len(checksum) == 64, "the digest is shown in diffs, not hidden"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["credentials"]["secret"]["secretName"] == "mcp-connector-credentials"
    assert volumes["tls"]["secret"]["secretName"] == f"mcp-connector-tls-{TLS_GENERATION}"
    assert container["args"] == [
        "--port=8443",
        f"--tls-cert-file={manifests.TLS_MOUNT}/tls.crt",
        f"--tls-key-file={manifests.TLS_MOUNT}/tls.key",
        f"--control-plane-kubeconfig={manifests.CREDENTIALS_MOUNT}/kubeconfig",
        "--service-name=mcp-connector",
        "--service-namespace=kube-system",
        "--claim-namespace",
        "mcp-claims",
        "--cluster-id",
        KUBE_SYSTEM_UID,
    ]


def test_rotating_the_token_changes_only_the_checksum(render: Render) -> None:
    first = _ok(render(KUBECONFIG_ARGS))
    second = _ok(render({**KUBECONFIG_ARGS, "control_plane_kubeconfig": CP_KUBECONFIG.replace("cp-secret", "new")}))
    again = _ok(render(KUBECONFIG_ARGS))

    def checksum(r: Rendered) -> str:
        return r.one(DEPLOYMENT).inputs["spec"]["template"]["metadata"]["annotations"][manifests.CHECKSUM_ANNOTATION]

    assert checksum(first) != checksum(second)
    assert checksum(first) == checksum(again)


def _checksum(r: Rendered) -> str:
    return str(r.one(DEPLOYMENT).inputs["spec"]["template"]["metadata"]["annotations"][manifests.CHECKSUM_ANNOTATION])


def _bundle(r: Rendered) -> list[str]:
    bundles = {str(a.inputs["spec"]["caBundle"]) for a in r.of_type(APISERVICE)}
    assert len(bundles) == 1, "every APIService carries the same bundle"
    pem = base64.b64decode(bundles.pop()).decode()
    return [c.strip() for c in pem.split("-----END CERTIFICATE-----") if "BEGIN CERTIFICATE" in c]


def _serving(r: Rendered) -> dict[str, str]:
    return reveal(r.one(SECRET, f"mcp-connector-tls-{TLS_GENERATION}").inputs["data"])  # type: ignore[return-value]


def test_a_new_serving_certificate_rolls_the_pods_and_keeps_the_bundle(render: Render) -> None:
    """``up --replace`` of the serving Secret: a certificate from the same stored CA, new pods, same caBundle."""
    first = _ok(render(KUBECONFIG_ARGS))
    again = _ok(render(KUBECONFIG_ARGS))
    assert _checksum(first) == _checksum(again) and _bundle(first) == _bundle(again), "re-runs change nothing"
    renewed = _ok(render(KUBECONFIG_ARGS, replace=[f"mcp-connector-tls-{TLS_GENERATION}"]))
    assert _serving(renewed)["tls.crt"] != _serving(first)["tls.crt"]
    assert _checksum(renewed) != _checksum(first), "the pod template's checksum covers the serving certificate"
    assert _bundle(renewed) == _bundle(first), "same CA: the APIServices stay as they are while the pods roll"


def test_ca_rotation_overlaps(render: Render) -> None:
    """A new CA joins the bundle before any pod serves a certificate from it, and leaves the old CA only after."""
    first = _ok(render(KUBECONFIG_ARGS))
    (old_ca,) = _bundle(first)
    new_ca = _ok(render(KUBECONFIG_ARGS, replace=["mcp-connector-tls-ca"]))
    assert len(_bundle(new_ca)) == 2 and old_ca in _bundle(new_ca), "old and new CA both trusted"
    assert _checksum(new_ca) == _checksum(first), "the pods keep serving the old CA's certificate"
    switched = _ok(render(KUBECONFIG_ARGS, replace=[f"mcp-connector-tls-{TLS_GENERATION}"]))
    assert _checksum(switched) != _checksum(first), "the serving certificate switches: the pods roll"
    assert _bundle(switched) == [c for c in _bundle(new_ca) if c != old_ca], "then the old CA leaves"


@pytest.mark.parametrize("args", [KUBECONFIG_ARGS, {"platform_kubeconfig": CP_KUBECONFIG, "image": IMAGE}])
def test_replacing_a_secret_rolls_the_pods_and_never_replaces_the_deployment(
    render: Render, monkeypatch: pytest.MonkeyPatch, args: dict[str, object]
) -> None:
    """The engine replaces a dependent whose property depends on a Secret replaced delete-first (it marks
    the property unknown, and pulumi-kubernetes replaces a Deployment whose spec is unknown): every pod
    would stop at once. So no Deployment property depends on a child; depends_on orders them."""
    from pulumi.runtime import mocks

    sent: dict[str, tuple[set[str], set[str]]] = {}
    register = mocks.MockMonitor.RegisterResource

    def recording(self: mocks.MockMonitor, request: Any) -> Any:
        deps = {u for d in request.propertyDependencies.values() for u in d.urns}
        sent[request.name] = (deps, set(request.dependencies))
        return register(self, request)

    monkeypatch.setattr(mocks.MockMonitor, "RegisterResource", recording)
    if "platform_kubeconfig" in args:
        monkeypatch.setattr(
            "mcp_connector_component.discovery.scoped_kubeconfig", lambda name, *_: "kind: Config\nusers: []"
        )
    _ok(render(args))
    property_deps, deps = sent["mcp-connector-deployment"]
    # Only the read of kube-system (the cluster ID), which the engine never replaces.
    assert {u.rsplit("::", 1)[1] for u in property_deps} <= {"mcp-connector-kube-system"}, property_deps
    assert {u.rsplit("::", 1)[1] for u in deps if "core/v1:Secret" in u} >= {
        "mcp-connector-credentials",
        f"mcp-connector-tls-{TLS_GENERATION}",
    }


def test_in_cluster_service_and_apiservices(render: Render) -> None:
    r = _ok(render(KUBECONFIG_ARGS))
    service = r.one(SERVICE).inputs["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"][0]["port"] == 443 and service["ports"][0]["targetPort"] == 8443
    tls = reveal(r.one(SECRET, f"mcp-connector-tls-{TLS_GENERATION}").inputs["data"])
    assert is_secret(r.one(SECRET, f"mcp-connector-tls-{TLS_GENERATION}").inputs["data"])
    for apiservice in r.of_type(APISERVICE):
        spec = apiservice.inputs["spec"]
        assert spec["service"] == {"name": "mcp-connector", "namespace": "kube-system", "port": 443}
        assert spec["caBundle"] == tls["ca.crt"], "the CA comes from the stored TLS Secret"  # type: ignore[index]
        assert not is_secret(spec["caBundle"])
        assert spec["groupPriorityMinimum"] == 1000
        assert "insecureSkipTLSVerify" not in spec
    priorities = {a.inputs["metadata"]["name"]: a.inputs["spec"]["versionPriority"] for a in r.of_type(APISERVICE)}
    assert priorities == {"v1alpha1.db.example.org": 15, "v1beta1.db.example.org": 20, "v1alpha1.k8s.starter.org": 20}


def test_apiservices_are_awaited_and_a_marker_waits_for_them(render: Render) -> None:
    """depends_on=[connector] means the claim APIs are served (the e2e test proves the ordering)."""
    r = _ok(render(KUBECONFIG_ARGS))
    for apiservice in r.of_type(APISERVICE):
        assert apiservice.inputs["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Available"}
    marker = r.one("kubernetes:core/v1:ConfigMap", "mcp-connector-served").inputs
    assert marker["metadata"]["namespace"] == "kube-system"
    assert marker["data"] == {"apiservices": "v1alpha1.db.example.org,v1alpha1.k8s.starter.org,v1beta1.db.example.org"}


def test_token_form_builds_an_upbound_kubeconfig(render: Render, discovered: list[str]) -> None:
    r = _ok(render(TOKEN_ARGS))
    url = "https://proxy.upbound.io/v1/controlPlanes/acme/prod/k8s"
    assert discovered == [url]
    credentials = r.one(SECRET, "mcp-connector-credentials").inputs["stringData"]
    assert is_secret(credentials)
    kubeconfig = yaml.safe_load(reveal(credentials)["kubeconfig"])  # type: ignore[index]
    assert kubeconfig["clusters"][0]["cluster"]["server"] == url
    assert kubeconfig["users"][0]["user"]["token"] == "upbound-api-token-123"


def test_token_form_with_own_host(render: Render, discovered: list[str]) -> None:
    _ok(render({**TOKEN_ARGS, "host": "spaces.example.com"}))
    assert discovered == ["https://spaces.example.com/v1/controlPlanes/acme/prod/k8s"]


def test_secret_values_never_appear_in_plain_inputs(render: Render) -> None:
    for args, secret in ((TOKEN_ARGS, "upbound-api-token-123"), (KUBECONFIG_ARGS, "cp-secret-token")):
        r = _ok(render(args))
        for resource in r.resources:
            leaked = [s for s in plain_parts(resource.inputs) if secret in s]
            assert leaked == [], f"{resource.name} shows the credential in plain text"


def test_existing_secret_form_reads_and_mounts_it(render: Render, discovered: list[str]) -> None:
    args = {"claim_namespace": "mcp-claims", "control_plane_secret": "cp-access", "namespace": "mcp", "image": IMAGE}
    r = _ok(render(args))
    reads = {x.typ: x.read_id for x in r.resources if x.read_id}
    assert reads["kubernetes:core/v1:Secret"] == "mcp/cp-access"
    assert discovered == ["https://cp.example:6443"]
    assert "mcp-connector-credentials" not in [x.name for x in r.of_type(SECRET)]
    volumes = {v["name"]: v for v in r.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]["volumes"]}
    assert volumes["credentials"]["secret"]["secretName"] == "cp-access"
    assert r.one(DEPLOYMENT).inputs["metadata"]["namespace"] == "mcp"
    assert "cp-secret-token" in _plan(r).kubeconfig


def test_existing_secret_without_kubeconfig_key_fails(render: Render) -> None:
    r = render(
        {"claim_namespace": "mcp-claims", "control_plane_secret": "cp-access", "image": IMAGE}, existing_kubeconfig=None
    )
    assert r.error is not None
    assert "kube-system/cp-access" in str(r.error) and "'kubeconfig'" in str(r.error)


def test_external_mode(render: Render) -> None:
    r = _ok(render({**KUBECONFIG_ARGS, "mode": "localhost:9443", "ca_bundle": CA_PEM}))
    assert r.of_type(DEPLOYMENT) == []
    assert sorted(x.name for x in r.of_type(SECRET)) == [
        "mcp-connector-credentials",
    ]
    assert r.one(SERVICE).inputs["spec"] == {
        "type": "ExternalName",
        "externalName": "localhost",
        "ports": [{"name": "https", "port": 9443, "protocol": "TCP"}],
    }
    for apiservice in r.of_type(APISERVICE):
        spec = apiservice.inputs["spec"]
        assert spec["service"]["port"] == 9443
        assert base64.b64decode(spec["caBundle"]).decode() == CA_PEM


def test_replicas_and_resources_and_everything_awaited(render: Render) -> None:
    resources = {"requests": {"cpu": "50m"}, "limits": {"memory": "256Mi"}}
    r = _ok(render({**KUBECONFIG_ARGS, "replicas": 2, "resources": resources, "image": "x:1"}))
    deployment = r.one(DEPLOYMENT).inputs
    assert "annotations" not in deployment["metadata"], "no pulumi.com/skipAwait: Pulumi awaits the rollout"
    assert "annotations" not in r.one(SERVICE).inputs["metadata"], "and the Service's ready endpoints"
    assert deployment["spec"]["replicas"] == 2
    assert _container(r)["resources"] == resources
    assert _container(r)["image"] == "x:1"
    assert r.one(PDB).inputs["spec"]["minAvailable"] == 1


def test_the_connector_gets_memory_and_cpu_requests_and_a_memory_limit_by_default(render: Render) -> None:
    r = _ok(render(KUBECONFIG_ARGS))
    resources = _container(r)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"] == "768Mi" and "cpu" not in resources["limits"]


def test_selection_limits_apiservices(render: Render) -> None:
    r = _ok(render({**KUBECONFIG_ARGS, "include": ["*.example.org"], "exclude": ["v1alpha1-never"]}))
    assert r.k8s_names(APISERVICE) == ["v1alpha1.db.example.org", "v1beta1.db.example.org"]
    assert r.outputs["claim_apis"] == [
        "db.example.org/v1alpha1/PostgreSQLInstance",
        "db.example.org/v1beta1/PostgreSQLInstance",
    ]
    assert [c.plural for c in _plan(r).served] == ["postgresqlinstances"]


def test_disconnect_plan_in_the_guard(render: Render) -> None:
    plan = _plan(_ok(render({**KUBECONFIG_ARGS, "on_disconnect": "Release"})))
    assert plan.on_disconnect == "Release"
    assert plan.claim_namespace == "mcp-claims"
    assert plan.kubeconfig == CP_KUBECONFIG
    assert [(c.group, c.version, c.plural, c.kind) for c in plan.served] == [
        ("db.example.org", "v1beta1", "postgresqlinstances", "PostgreSQLInstance"),
        ("k8s.starter.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster"),
    ]
    assert plan.control_plane == "https://cp.example:6443"
    assert plan.cluster_id == KUBE_SYSTEM_UID
    assert plan.connector == "mcp-connector"
    assert _plan(_ok(render(KUBECONFIG_ARGS))).on_disconnect == "Keep"


@pytest.mark.parametrize("args", [KUBECONFIG_ARGS, {**KUBECONFIG_ARGS, "platform_kubeconfig": CP_KUBECONFIG}])
def test_a_refused_disconnect_update_registers_no_other_child(
    render: Render, monkeypatch: pytest.MonkeyPatch, args: dict[str, object]
) -> None:
    """The engine answers the Disconnect's registration after its before_update hook (the identity and
    drift checks); when the hook refuses, no other child may have been sent, so none changes."""
    from conftest import RecordingMocks

    if "platform_kubeconfig" in args:
        args = {k: v for k, v in args.items() if k not in ("control_plane_kubeconfig", "claim_namespace")}
    answer = RecordingMocks.new_resource

    def refuse(self: RecordingMocks, resource: pulumi.runtime.MockResourceArgs) -> object:
        if resource.typ == DISCONNECT_TYPE:
            self.rendered.resources.append(Registered(resource.typ, resource.name, dict(resource.inputs), None))
            raise RuntimeError("refused by the before_update hook")
        return answer(self, resource)

    monkeypatch.setattr(RecordingMocks, "new_resource", refuse)
    r = render(args)
    assert r.error is not None and "refused by the before_update hook" in str(r.error)
    sent = {(x.typ, x.name) for x in r.resources if x.read_id is None}
    assert sent == {("mcp-connector:index:McpConnector", "mcp-connector"), (DISCONNECT_TYPE, "mcp-connector-claims")}


def test_no_second_copy_of_the_credential_in_the_app_cluster(render: Render) -> None:
    r = _ok(render(TOKEN_ARGS))
    holding = [
        x.name
        for x in r.resources
        if x.typ.startswith("kubernetes:") and "upbound-api-token-123" in json.dumps(reveal(x.inputs))
    ]
    assert holding == ["mcp-connector-credentials"], "only the connector's own Secret carries the token"
    assert "upbound-api-token-123" in _plan(r).kubeconfig, "the hook's copy is in Pulumi state only"


def test_invalid_arguments_are_reported_together(render: Render) -> None:
    r = render({"token": "t", "control_plane_kubeconfig": "k", "mode": "nowhere", "on_disconnect": "Delete"})
    message = str(r.error)
    for expected in (
        "exactly one of token, control_plane_secret, control_plane_kubeconfig",
        "account is required with token",
        "claim_namespace is required",
        "mode 'nowhere'",
        "on_disconnect must be one of Keep, Release",
    ):
        assert expected in message
    assert [x.typ for x in r.resources] == []


def test_in_cluster_mode_needs_an_image(render: Render) -> None:
    args = {k: v for k, v in KUBECONFIG_ARGS.items() if k != "image"}
    r = render(args)
    assert "image is required in in-cluster mode: no connector image is published" in str(r.error)
    assert [x.typ for x in r.resources] == []
    _ok(render({**args, "mode": "localhost:9443", "ca_bundle": CA_PEM}))  # external mode runs no image


def test_external_mode_needs_a_ca_bundle(render: Render) -> None:
    r = render({**KUBECONFIG_ARGS, "mode": "localhost:9443"})
    assert "ca_bundle is required" in str(r.error)


def test_unreachable_control_plane_fails_and_creates_nothing(render: Render, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    async def refuse(client: object) -> None:
        raise upstream.ControlPlaneUnauthorized("https://cp.example:6443", "credentials rejected (HTTP 401)")

    monkeypatch.setattr(upstream, "discover_apis_by_name", refuse)
    r = render(KUBECONFIG_ARGS)
    assert r.error is not None
    message = str(r.error)
    assert "https://cp.example:6443" in message and "credentials rejected (HTTP 401)" in message
    assert "cp-secret-token" not in message
    assert {x.typ for x in r.resources} <= {"mcp-connector:index:McpConnector", "kubernetes:core/v1:Namespace"}


def test_plan_never_shows_its_credential() -> None:
    plan = DisconnectPlan("token: kc-secret", "https://cp", "ns", "id", "Keep")
    assert "kc-secret" not in repr(plan)


def test_platform_credentials_make_a_scoped_identity(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def fake_request(client: object, method: str, path: str, **kwargs: object) -> dict[str, object]:
        asked.append(f"{method} {path}")
        return {"data": {"token": base64.b64encode(b"scoped-sa-token").decode()}}

    monkeypatch.setattr(upstream, "request", fake_request)
    r = _ok(render({"platform_kubeconfig": CP_KUBECONFIG, "image": IMAGE}))
    namespace = f"mcp-{KUBE_SYSTEM_UID}"
    assert r.outputs["control_plane_namespace"] == namespace
    assert asked == [f"GET /api/v1/namespaces/{namespace}/secrets/mcp-connector-token"]
    assert r.k8s_names("kubernetes:core/v1:Namespace") == [namespace]
    role = r.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "mcp-connector-cp-role").inputs
    assert role["metadata"]["namespace"] == namespace
    write = ["get", "list", "watch", "create", "update", "patch", "delete"]
    assert role["rules"] == [
        {"apiGroups": ["db.example.org"], "resources": ["postgresqlinstances"], "verbs": write},
        {
            "apiGroups": ["db.example.org"],
            "resources": ["postgresqlinstances/status"],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": ["k8s.starter.org"], "resources": ["kubernetesclusters"], "verbs": write},
        {
            "apiGroups": ["k8s.starter.org"],
            "resources": ["kubernetesclusters/status"],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    ], "no deletecollection (one delete per claim), status only read and written"
    discovery = r.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "mcp-connector-cp-discovery").inputs
    assert discovery["metadata"]["name"] == f"mcp-connector:{namespace}:discovery"
    assert {g for rule in discovery["rules"] for g in rule["apiGroups"]} == {
        "apiextensions.crossplane.io",
        "apiextensions.k8s.io",
    }, "no claims and no Secrets outside the namespace"
    token = r.one(SECRET, "mcp-connector-cp-token").inputs
    assert token["type"] == "kubernetes.io/service-account-token"
    connector = yaml.safe_load(reveal(r.one(SECRET, "mcp-connector-credentials").inputs["stringData"])["kubeconfig"])  # type: ignore[index]
    assert connector["users"][0]["user"] == {"token": "scoped-sa-token"}
    assert connector["clusters"][0]["cluster"]["server"] == "https://cp.example:6443"
    assert "--claim-namespace" in _container(r)["args"] and namespace in _container(r)["args"]
    plan = _plan(r)
    assert plan.kubeconfig == CP_KUBECONFIG, "discovery and the disconnect use the platform credential"
    assert plan.claim_namespace == namespace and plan.writer_binding == "mcp-connector"
    holding = [x.name for x in r.resources if "cp-secret-token" in json.dumps(reveal(x.inputs))]
    assert sorted(holding) == ["mcp-connector-claims", "mcp-connector-control-plane", "mcp-connector-disconnect"], (
        "the platform credential is only in the control-plane provider, the disconnect and its guard (Pulumi state)"
    )


def test_pinned_claim_apis_need_no_discovery(render: Render, discovered: list[str]) -> None:
    pinned = ["k8s.starter.org/v1alpha1/KubernetesCluster", "widgets.example.org/v2", "widgets.example.org/v1"]
    r = _ok(render({**KUBECONFIG_ARGS, "claim_apis": pinned}))
    assert discovered == [], "no discovery at all"
    assert r.k8s_names(APISERVICE) == ["v1.example.org", "v1alpha1.k8s.starter.org", "v2.example.org"]
    by_name = {x.inputs["metadata"]["name"]: x.inputs["spec"] for x in r.of_type(APISERVICE)}
    assert by_name["v2.example.org"]["versionPriority"] > by_name["v1.example.org"]["versionPriority"], (
        "the first version given is preferred"
    )
    assert [(c.plural, c.kind) for c in _plan(r).served] == [
        ("widgets", "widgets"),
        ("kubernetesclusters", "KubernetesCluster"),
    ]


def test_bad_pinned_entries_are_named(render: Render) -> None:
    r = render({**KUBECONFIG_ARGS, "claim_apis": ["Widgets"]})
    assert "claim_apis entry 'Widgets' must be group/version/Kind or plural.group/version" in str(r.error)


def _late_credentials(args: dict[str, object]) -> object:
    """A program whose control-plane kubeconfig comes from another resource's output (unknown in previews)."""
    import pulumi
    import pulumi_kubernetes as k8s

    from mcp_connector_component import McpConnector

    def program() -> None:
        source = k8s.core.v1.Secret("cp-access-source", metadata={"name": "src"})
        late = source.string_data.apply(lambda d: (d or {}).get("kubeconfig", CP_KUBECONFIG))
        McpConnector("mcp-connector", {**args, "control_plane_kubeconfig": pulumi.Output.secret(late)})  # type: ignore[typeddict-item]

    return program


def test_unknown_credentials_in_a_preview_fail_saying_why(render: Render, discovered: list[str]) -> None:
    r = render(program=_late_credentials({"claim_namespace": "mcp-claims", "image": IMAGE}), preview=True)
    assert r.error is not None
    message = str(r.error)
    assert "not known until apply" in message and "claim_apis" in message
    assert discovered == []
    assert [x.typ for x in r.resources if x.typ.startswith("kubernetes:") and x.name != "cp-access-source"] == [
        "kubernetes:core/v1:Namespace"
    ], "nothing is shown half"


def test_unknown_credentials_with_pinned_apis_preview_every_child(render: Render) -> None:
    args = {
        "claim_namespace": "mcp-claims",
        "claim_apis": ["k8s.starter.org/v1alpha1/KubernetesCluster"],
        "image": IMAGE,
    }
    previewed = _ok(render(program=_late_credentials(args), preview=True))
    applied = _ok(render(program=_late_credentials(args)))
    assert sorted((x.typ, x.name) for x in previewed.resources) == sorted((x.typ, x.name) for x in applied.resources)
    assert previewed.k8s_names(APISERVICE) == ["v1alpha1.k8s.starter.org"]
