"""Pure builders: modes, names, RBAC, APIServices, TLS material and composed kubeconfigs."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mcp_connector.core.access import AccessError, ControlPlaneAccess, from_kubeconfig
from mcp_connector.core.discovery import GroupVersion
from mcp_connector_component import manifests, tls
from mcp_connector_component.credentials import kubeconfig_from_secret_data, to_kubeconfig, upbound_kubeconfig
from mcp_connector_component.tls import CA_LIFETIME, LEAF_LIFETIME, generation, service_dns_names, serving_tls

NAMES = manifests.Names("mcp-connector", "kube-system")


@pytest.mark.parametrize(
    ("mode", "parsed"),
    [
        (None, manifests.InCluster()),
        ("in-cluster", manifests.InCluster()),
        ("localhost:9443", manifests.External("localhost", 9443)),
        ("connector.example.com:443", manifests.External("connector.example.com", 443)),
    ],
)
def test_parse_mode(mode: str | None, parsed: manifests.Mode) -> None:
    assert manifests.parse_mode(mode) == parsed


@pytest.mark.parametrize("mode", ["localhost", "localhost:0", "localhost:99999", ":443", "in cluster", "a b:1"])
def test_parse_mode_rejects(mode: str) -> None:
    with pytest.raises(manifests.ManifestError, match="host:port"):
        manifests.parse_mode(mode)


def test_names() -> None:
    assert NAMES.service_dns == "mcp-connector.kube-system.svc"


def test_cluster_role_is_least_privilege() -> None:
    rules = manifests.cluster_role(NAMES)["rules"]
    assert rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": [
                "validatingadmissionpolicies",
                "validatingadmissionpolicybindings",
                "validatingwebhookconfigurations",
                "mutatingwebhookconfigurations",
            ],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
            "verbs": ["list", "watch"],
        },
    ]
    managed = manifests.cluster_role(NAMES, manage_apiservices=True)["rules"]
    assert managed[-1] == {
        "apiGroups": ["apiregistration.k8s.io"],
        "resources": ["apiservices"],
        "verbs": ["list", "create", "update", "delete"],
    }


def test_apiservice() -> None:
    obj = manifests.apiservice(NAMES, GroupVersion("db.example.org", "v1beta1"), ca_bundle="Q0E=", port=443)
    assert obj["metadata"]["name"] == "v1beta1.db.example.org"
    assert "namespace" not in obj["metadata"]
    assert obj["spec"] == {
        "group": "db.example.org",
        "version": "v1beta1",
        "groupPriorityMinimum": 1000,
        "versionPriority": 15,
        "caBundle": "Q0E=",
        "service": {"name": "mcp-connector", "namespace": "kube-system", "port": 443},
    }


def test_version_priorities_prefer_the_storage_version() -> None:
    gvs = [GroupVersion("g", "v1alpha1"), GroupVersion("g", "v1"), GroupVersion("h", "v1")]
    assert manifests.version_priorities(gvs, {"g": "v1"}) == {gvs[0]: 15, gvs[1]: 20, gvs[2]: 15}


def test_config_checksum_is_stable_and_sensitive() -> None:
    assert manifests.config_checksum("a", "b", ["x"]) == manifests.config_checksum("a", "b", ["x"])
    assert manifests.config_checksum("a", "b", ["x"]) != manifests.config_checksum("a", "b", ["y"])


def test_ca_bundle_of() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
    assert base64.b64decode(manifests.ca_bundle_of(pem)).decode() == pem
    with pytest.raises(manifests.ManifestError, match="ca_bundle"):
        manifests.ca_bundle_of("not a cert")


def test_serving_tls_chains_to_its_ca_with_the_service_name() -> None:
    made = serving_tls(service_dns_names("mcp-connector", "kube-system"))
    ca = x509.load_pem_x509_certificate(made.ca_pem.encode())
    leaf = x509.load_pem_x509_certificate(made.cert_pem.encode())
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "mcp-connector.kube-system.svc" in sans
    assert leaf.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + LEAF_LIFETIME - datetime.timedelta(days=1)
    assert LEAF_LIFETIME < CA_LIFETIME
    assert "PRIVATE KEY" in made.key_pem
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_upbound_kubeconfig_round_trips() -> None:
    text = upbound_kubeconfig(host="proxy.upbound.io", account="acme", control_plane="prod", token="tok")
    access = from_kubeconfig(text)
    assert access.url == "https://proxy.upbound.io/v1/controlPlanes/acme/prod/k8s"
    assert access.token == "tok"
    with pytest.raises(AccessError):
        upbound_kubeconfig(host="proxy.upbound.io", account="", control_plane="prod", token="tok")


def test_to_kubeconfig_keeps_client_certificates() -> None:
    access = ControlPlaneAccess(
        url="https://127.0.0.1:6443", ca_pem=b"CA", client_cert_pem=b"CERT", client_key_pem=b"KEY"
    )
    assert from_kubeconfig(to_kubeconfig(access)) == access


def test_kubeconfig_from_secret_data() -> None:
    encoded = base64.b64encode(b"kc").decode()
    assert kubeconfig_from_secret_data({"kubeconfig": encoded}, secret="ns/s") == "kc"
    with pytest.raises(AccessError, match="ns/s has no 'kubeconfig'"):
        kubeconfig_from_secret_data({}, secret="ns/s")


def test_tls_generation_follows_the_service_and_nothing_else() -> None:
    names = service_dns_names("mcp-connector", "kube-system")
    same = generation(names)
    assert generation(list(names)) == same, "no clock, no randomness: a preview and its up agree"
    assert generation(service_dns_names("mcp-connector", "platform")) != same, "namespace moves it"
    assert generation(service_dns_names("other", "kube-system")) != same, "so does the name"


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def test_a_new_certificate_comes_from_the_stored_ca_and_the_bundle_holds_both_cas_while_they_differ() -> None:
    names = service_dns_names("mcp-connector", "kube-system")
    old_ca, new_ca = tls.new_ca(), tls.new_ca()
    serving = tls.issue(old_ca, names)
    x509.load_pem_x509_certificate(serving.cert_pem.encode()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(old_ca.ca_pem.encode())
    )
    assert serving.ca_pem == old_ca.ca_pem, "the serving Secret records its signer"
    alone = base64.b64decode(tls.trust_bundle(_b64(serving.ca_pem), _b64(old_ca.ca_pem))).decode()
    assert alone.count("BEGIN CERTIFICATE") == 1, "one CA once"
    overlap = base64.b64decode(tls.trust_bundle(_b64(serving.ca_pem), _b64(new_ca.ca_pem))).decode()
    assert overlap.count("BEGIN CERTIFICATE") == 2, "a replaced CA is trusted next to the one still serving"
    assert old_ca.ca_pem.strip() in overlap and new_ca.ca_pem.strip() in overlap
    renewed = tls.issue(new_ca, names)
    after = base64.b64decode(tls.trust_bundle(_b64(renewed.ca_pem), _b64(new_ca.ca_pem))).decode()
    assert after.strip() == new_ca.ca_pem.strip(), "the old CA leaves once the serving certificate is from the new one"


def test_expiry_is_only_a_warning_computed_from_the_stored_certificate() -> None:
    made = serving_tls(service_dns_names("mcp-connector", "kube-system"))
    now = datetime.datetime.now(datetime.UTC)
    assert tls.expiring(_b64(made.cert_pem), what="serving certificate", now=now) is None
    late = now + LEAF_LIFETIME - datetime.timedelta(days=30)
    warning = tls.expiring(_b64(made.cert_pem), what="serving certificate", now=late)
    assert warning is not None and "--replace" in warning


def test_admission_policy_fences_this_installs_service_account() -> None:
    names = manifests.Names("conn", "team-a")
    policy = manifests.admission_policy(names, manage_apiservices=True, apiservice_owner="conn")
    binding = manifests.admission_policy_binding(names)
    assert policy["metadata"]["name"] == binding["spec"]["policyName"] == "conn.team-a.mcp-connector.upbound.io"
    assert "namespace" not in policy["metadata"] and "namespace" not in binding["metadata"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConditions"] == [
        {
            "name": "connector-service-account",
            "expression": "request.userInfo.username == 'system:serviceaccount:team-a:conn'",
        }
    ]
    rules = spec["matchConstraints"]["resourceRules"]
    assert {r for rule in rules for r in rule["resources"]} == {
        "secrets",
        "events",
        "apiservices",
        "apiservices/status",
    }
    assert all(rule["operations"] == ["CREATE", "UPDATE", "DELETE"] for rule in rules)
    secrets, apiservices, events = (v["expression"] for v in spec["validations"])
    # Both the new and the old object are checked: an update cannot drop the label, a delete needs it.
    for var in ("object", "oldObject"):
        assert f"'mcp-connector.upbound.io/connection-secret-for' in {var}.metadata.labels" in secrets
        assert f"{var}.type != 'kubernetes.io/service-account-token'" in secrets
        assert f"{var}.metadata.labels['app.kubernetes.io/managed-by'] == 'mcp-connector'" in apiservices
        assert f"{var}.metadata.ownerReferences.exists(r" in apiservices
        assert f"'mcp-connector.upbound.io/event-copy-for' in {var}.metadata.labels" in events
    assert "r.name == 'conn'" in apiservices


def test_admission_policy_without_managed_apiservices_refuses_every_apiservice_write() -> None:
    policy = manifests.admission_policy(NAMES)
    assert policy["spec"]["validations"][1]["expression"] == "request.resource.resource != 'apiservices' || (false)"
    labelled_only = manifests.admission_policy(NAMES, manage_apiservices=True)
    assert "ownerReferences" not in labelled_only["spec"]["validations"][1]["expression"]


def test_admission_policy_labels_are_the_followers() -> None:
    """The policy's marks are exactly what the Secret sync and the APIService follower write."""
    from mcp_connector.connector.followers import apiservices, events, secrets_sync

    assert manifests.COPY_LABEL == secrets_sync.MANAGED_LABEL
    assert manifests.EVENT_COPY_LABEL == events.COPY_LABEL
    assert manifests.APISERVICE_MANAGED_BY == (apiservices.MANAGED_BY, apiservices.MANAGER)


def test_cel_literals_refuse_quotes() -> None:
    with pytest.raises(manifests.ManifestError):
        manifests.admission_policy(manifests.Names("a'b", "ns"))
