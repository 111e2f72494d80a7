"""``mcp-connector render``: Helm-style values, the rendered objects, and that they are the component's own.

The comparison with McpConnector under Pulumi mocks is the guard against a second copy of
the manifests: every object both make must agree, except where render must differ (the
managed-by label, the connector managing its own APIServices, no Pulumi-only objects).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from component_testdata import CP_KUBECONFIG, Render, reveal

from mcp_connector.connector.cli import main as connector_main
from mcp_connector_component import manifests
from mcp_connector_component.fleet import render as rendering
from mcp_connector_component.fleet.values import ConnectorValues, ValuesError, flatten, parse_set, resolve
from mcp_connector_component.tls import generation, service_dns_names

TOKEN = "upbound-api-token-123"
IMAGE = "registry.example/mcp-connector:0.1.0"
#: The serving certificate's Secret, named by the Service's DNS names.
TLS_NAME = f"mcp-connector-tls-{generation(service_dns_names('mcp-connector', 'kube-system'))}"


def _objects(**values: Any) -> dict[tuple[str, str], dict[str, Any]]:
    docs = rendering.objects(ConnectorValues(**values))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


# ---------------------------------------------------------------------------------------------- values


def test_upbound_chart_keys_map_onto_component_args(tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(
        yaml.safe_dump(
            {"mcp": {"account": "acme", "name": "prod", "namespace": "team-a", "token": TOKEN}, "clusterID": "dev-1"}
        )
    )
    sets = ["replicas=2", "include={*.example.org,k8s.starter.org}", f"image={IMAGE}"]
    values = resolve(files=[str(values_file)], sets=sets)
    assert values.component_args() == {
        "claim_namespace": "team-a",
        "namespace": "kube-system",
        "account": "acme",
        "control_plane": "prod",
        "token": TOKEN,
        "cluster_id": "dev-1",
        "replicas": 2,
        "include": ["*.example.org", "k8s.starter.org"],
        "image": IMAGE,
    }
    assert TOKEN not in repr(values)


def test_spaces_keys_and_flags_win_over_files(tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(
        yaml.safe_dump(
            {
                "spaces": {
                    "controlPlane": {"name": "ctp", "claimNamespace": "from-file", "kubeconfigSecret": {"name": "s"}}
                }
            }
        )
    )
    values = resolve(
        files=[str(values_file)],
        sets=["clusterID=a"],
        flags={"claim_namespace": "from-flag", "cluster_id": "b", "image": IMAGE},
    )
    assert (values.claim_namespace, values.control_plane_secret, values.cluster_id) == ("from-flag", "s", "b")


def test_every_problem_is_reported_by_name_and_no_secret_is_quoted(tmp_path: Path) -> None:
    with pytest.raises(ValuesError) as caught:
        resolve(
            sets=[f"mcp.token={TOKEN}", "spaces.host=x", "nonsense.key=1", "replicas=many", "onDisconnect=Later"],
            flags={"control_plane_secret": "s"},
        )
    text = "\n".join(caught.value.problems)
    assert TOKEN not in text
    for expected in (
        "spaces.host: not supported",
        "nonsense.key: unknown value",
        "replicas: 'many' is not a whole number",
        "the claim namespace is required",
        "give one credential, not --token and --control-plane-secret",
        "--account",
        "--on-disconnect must be Keep or Release",
    ):
        assert expected in text


def test_missing_credential_and_unreadable_file() -> None:
    with pytest.raises(ValuesError) as caught:
        resolve(files=["/nonexistent/values.yaml"], flags={"claim_namespace": "a"})
    assert caught.value.problems[0].startswith("-f /nonexistent/values.yaml:")
    assert any(p.startswith("missing credential") for p in caught.value.problems)


def test_set_syntax() -> None:
    assert parse_set(["a.b=c,d={x,y}", "e="]) == ({"a.b": "c", "d": ["x", "y"], "e": ""}, [])
    assert parse_set(["novalue"])[1] == ["--set: 'novalue' is not key=value"]
    assert flatten({"a": {"b": {"c": 1}}, "d": [1]}) == {"a.b.c": 1, "d": [1]}


# ---------------------------------------------------------------------------------------------- objects


def test_in_cluster_render_manages_its_own_apiservices() -> None:
    objs = _objects(claim_namespace="team-a", control_plane_kubeconfig=CP_KUBECONFIG, image=IMAGE)
    assert set(objs) == {
        ("Secret", "mcp-connector-credentials"),
        ("ServiceAccount", "mcp-connector"),
        ("ClusterRole", "mcp-connector"),
        ("ClusterRoleBinding", "mcp-connector"),
        ("ClusterRoleBinding", "mcp-connector:system:auth-delegator"),
        ("RoleBinding", "mcp-connector:extension-apiserver-authentication-reader"),
        ("Role", "mcp-connector:leader-election"),
        ("RoleBinding", "mcp-connector:leader-election"),
        ("PodDisruptionBudget", "mcp-connector"),
        ("ValidatingAdmissionPolicy", "mcp-connector.kube-system.mcp-connector.upbound.io"),
        ("ValidatingAdmissionPolicyBinding", "mcp-connector.kube-system.mcp-connector.upbound.io"),
        ("Secret", TLS_NAME),
        ("Deployment", "mcp-connector"),
        ("Service", "mcp-connector"),
    }, "no APIService, no disconnect guard: the connector keeps APIServices, there is no hook"
    args = objs[("Deployment", "mcp-connector")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--manage-apiservices" in args
    assert "--apiservice-owner=mcp-connector" in args
    assert "--tls-ca-file=/var/run/mcp-connector/tls/ca.crt" in args
    assert "--cluster-id" not in args, "the connector finds kube-system's UID itself"
    rules = objs[("ClusterRole", "mcp-connector")]["rules"]
    owner_rule = {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"]}
    assert {**owner_rule, "verbs": ["get", "list", "watch"], "resourceNames": ["mcp-connector"]} in rules
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == rendering.MANAGED_BY for o in objs.values())


def test_external_render_and_existing_secret() -> None:
    objs = _objects(claim_namespace="team-a", control_plane_secret="ctp", mode="localhost:9443", namespace="conn")
    assert ("Deployment", "mcp-connector") not in objs
    assert ("Secret", "mcp-connector-credentials") not in objs, "the existing Secret is used"
    assert ("Secret", TLS_NAME) not in objs
    service = objs[("Service", "mcp-connector")]
    assert service["metadata"]["namespace"] == "conn"
    assert service["spec"] == {
        "type": "ExternalName",
        "externalName": "localhost",
        "ports": [{"name": "https", "port": 9443, "protocol": "TCP"}],
    }


def test_token_becomes_an_upbound_kubeconfig_secret() -> None:
    objs = _objects(claim_namespace="a", account="acme", control_plane="prod", token=TOKEN, image=IMAGE)
    kubeconfig = yaml.safe_load(objs[("Secret", "mcp-connector-credentials")]["stringData"]["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://proxy.upbound.io/v1/controlPlanes/acme/prod/k8s"
    assert kubeconfig["users"][0]["user"]["token"] == TOKEN


def _normal(value: Any) -> Any:
    """Protobuf numbers back to ints; render's managed-by label read as the component's."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return "pulumi" if value == rendering.MANAGED_BY else value


ADMISSION = "kubernetes:admissionregistration.k8s.io/v1"


def test_render_matches_the_component(render: Render) -> None:
    """Every object both make agrees, apart from the documented differences."""
    component = render(
        {"claim_namespace": "team-a", "control_plane_kubeconfig": CP_KUBECONFIG, "cluster_id": "c1", "image": IMAGE}
    )
    assert component.error is None, component.error
    rendered = _objects(claim_namespace="team-a", control_plane_kubeconfig=CP_KUBECONFIG, cluster_id="c1", image=IMAGE)
    by_kind = {
        "ServiceAccount": "kubernetes:core/v1:ServiceAccount",
        "ClusterRoleBinding": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        "RoleBinding": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        "Role": "kubernetes:rbac.authorization.k8s.io/v1:Role",
        "PodDisruptionBudget": "kubernetes:policy/v1:PodDisruptionBudget",
        "Service": "kubernetes:core/v1:Service",
        "Deployment": "kubernetes:apps/v1:Deployment",
        "Secret": "kubernetes:core/v1:Secret",
        "ClusterRole": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        "ValidatingAdmissionPolicy": f"{ADMISSION}:ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding": f"{ADMISSION}:ValidatingAdmissionPolicyBinding",
    }
    compared = 0
    for (kind, name), obj in rendered.items():
        matches = [
            r
            for r in component.of_type(by_kind[kind])
            if reveal(r.inputs)["metadata"]["name"] == name  # type: ignore[index]
        ]
        assert len(matches) == 1, f"the component makes no {kind} {name}"
        theirs: dict[str, Any] = reveal(matches[0].inputs)  # type: ignore[assignment]
        theirs = _normal({k: v for k, v in theirs.items() if k not in ("apiVersion", "kind")})
        ours = _normal({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        if kind == "Deployment":
            for side in (ours, theirs):
                side["spec"]["template"]["metadata"]["annotations"].pop(manifests.CHECKSUM_ANNOTATION)
            container = ours["spec"]["template"]["spec"]["containers"][0]
            extra = [
                "--manage-apiservices",
                "--tls-ca-file=/var/run/mcp-connector/tls/ca.crt",
                "--apiservice-owner=mcp-connector",
            ]
            assert container["args"][-3:] == extra
            container["args"] = container["args"][:-3]
        if kind == "ClusterRole":
            managing = (["apiregistration.k8s.io"], ["rbac.authorization.k8s.io"])
            ours["rules"] = [r for r in ours["rules"] if r["apiGroups"] not in managing]
        if kind == "ValidatingAdmissionPolicy":
            # Render's connector manages its APIServices; the component's writes none.
            ours["spec"]["validations"][1] = theirs["spec"]["validations"][1]
            assert "ClusterRole mcp-connector" in obj["spec"]["validations"][1]["message"]
        if (kind, name) == ("Secret", TLS_NAME):
            # A fresh CA each time; both carry the three keys.
            assert sorted(ours["data"]) == sorted(theirs["data"]) == ["ca.crt", "tls.crt", "tls.key"]
            ours["data"] = theirs["data"]
        assert ours == theirs, f"{kind} {name} differs from the component's"
        compared += 1
    assert compared == len(rendered)


def test_tls_secret_verifies_the_service_name() -> None:
    objs = _objects(claim_namespace="a", control_plane_secret="s", namespace="conn", image=IMAGE)
    from cryptography import x509

    data = objs[("Secret", f"mcp-connector-tls-{generation(service_dns_names('mcp-connector', 'conn'))}")]["data"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "mcp-connector.conn.svc" in sans


# ---------------------------------------------------------------------------------------------- command


def test_render_command_stdout_and_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert connector_main(["render", "ctp", "team-a", "--control-plane-secret", "s", "--set", f"image={IMAGE}"]) == 0
    out = capsys.readouterr()
    docs = list(yaml.safe_load_all(out.out))
    assert [d["kind"] for d in docs][-1] == "Service"
    assert "credentials" not in out.err, "an existing Secret: nothing secret in the output"
    folder = ["-o", str(tmp_path / "m")]
    assert (
        connector_main(["render", "ctp", "team-a", "--control-plane-secret", "s", "--set", f"image={IMAGE}", *folder])
        == 0
    )
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files[0].startswith("00-serviceaccount-") and len(files) == len(docs)


def test_render_command_bad_input_never_prints_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert connector_main(["render", "ctp", "team-a", "--token", TOKEN]) == 2
    assert connector_main(["render", "ctp", "team-a", "--tokn", TOKEN]) == 2
    assert connector_main(["render", "ctp", "team-a", "--set", f"mcp.tokn={TOKEN}"]) == 2
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert "error: unknown flag: --tokn" in out.err
    assert "--account (or mcp.account / upbound.account) is required with --token" in out.err


def test_help_reads_like_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("render", "install", "uninstall", "rollout"):
        assert connector_main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Examples:\n  # " in text and "\nFlags:\n" in text and f"\nUsage:\n  mcp-connector {command}" in text
