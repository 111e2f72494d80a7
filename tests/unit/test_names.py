"""Names parsed as apimachinery parses them, and the write-time field errors built on them."""

from __future__ import annotations

from typing import Any

import pytest
from connector_samples import catalog

from mcp_connector.connector.api.verbs import validation
from mcp_connector.connector.api.verbs.request import Call
from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http.routing import ResourceRoute
from mcp_connector.core import names

ATTACK = "my-cluster-kubeconfig,metadata.name!=/../../../victimns/secrets/victim"


@pytest.mark.parametrize(
    "value",
    [ATTACK, "..", ".", "a%2Fb", "a/b", "Upper", "x" * 254, "", "-a", "a-", "a..b", "a\n", "a b", "ü", "a_b"],
)
def test_what_is_not_a_secret_name(value: str) -> None:
    assert names.dns1123_subdomain(value)
    with pytest.raises(names.InvalidName):
        names.parse_secret_name(value)


@pytest.mark.parametrize("value", ["a", "my-cluster-kubeconfig", "a.b-c.d", "0", "x" * 253])
def test_what_is_a_secret_name(value: str) -> None:
    assert names.parse_secret_name(value) == value


def test_messages_are_apimachinery_s() -> None:
    assert names.dns1123_subdomain("x" * 254) == ["must be no more than 253 characters"]
    assert names.dns1123_subdomain("A") == [
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]
    assert names.dns1123_label("a.b") == ["must not contain dots"]


def test_a_generate_name_may_end_in_a_dash_as_apimachinery_masks_it() -> None:
    assert not names.name_is_dns_subdomain("web-", prefix=True)
    assert names.name_is_dns_subdomain("web-", prefix=False)
    assert names.name_is_dns_subdomain("Web-", prefix=True)


def test_label_keys_and_values() -> None:
    assert not names.label_key("example.com/My_Name")
    assert names.label_key("a/b/c")
    assert names.label_key("/x") == ["prefix part must be non-empty"]
    assert not names.label_value("")
    assert names.label_value("a,b")
    assert names.label_value("a\n")


def test_every_problem_of_a_body_is_named_with_its_field() -> None:
    body = {
        "metadata": {"name": "ok", "generateName": "Bad_", "labels": {"a/b/c": "x,y"}},
        "spec": {"writeConnectionSecretToRef": {"name": ATTACK}},
    }
    fields = [f for f, _, _ in validation.metadata_problems(body) + validation.reference_problems(body)]
    assert fields == [
        "metadata.generateName",
        "metadata.labels",
        "metadata.labels",
        "spec.writeConnectionSecretToRef.name",
    ]
    assert [f for f, _, _ in validation.name_problems("Evil..Name")] == ["metadata.name"]
    assert validation.name_problems("n" * 64)[0][2].startswith("must be no more than 63 characters")
    assert validation.name_problems("") == [("metadata.name", None, "name or generateName is required")]
    assert validation.reference_problems({"spec": {"writeConnectionSecretToRef": {"name": 5}}})


def test_a_trailing_newline_is_not_a_label_value() -> None:
    """Python's ``$`` matches before a final newline; Go's does not: ``a\\n`` must not reach a selector."""
    from mcp_connector.core import contract

    with pytest.raises(contract.ContractError):
        contract.check_label_value("a\n", what="name")


def test_generate_name_is_checked_only_when_an_object_is_created() -> None:
    """ValidateObjectMetaUpdate leaves generateName alone: an update carrying a bad one is kube's 200."""
    body = {"metadata": {"name": "ok", "generateName": "Bad_"}}
    assert [f for f, _, _ in validation.metadata_problems(body)] == ["metadata.generateName"]
    assert validation.metadata_problems(body, creating=False) == []


@pytest.mark.parametrize("metadata", [None, {}, {"name": ""}, {"name": None}, {"labels": {"a": "b"}}])
def test_an_object_written_to_a_named_url_must_carry_its_name(metadata: Any) -> None:
    """kube-apiserver's checkName: an update or a patch result without a name is a 400, never
    filled in from the URL (a merge patch ``{"metadata": null}`` used to be applied)."""
    served = catalog().resource("k8s.starter.org", "v1alpha1", "kubernetesclusters")
    assert served is not None
    route = ResourceRoute("k8s.starter.org", "v1alpha1", "kubernetesclusters", "team-a", "db")
    call = Call(route, served, "update", {})
    body = {"apiVersion": "k8s.starter.org/v1alpha1", "kind": "KubernetesCluster", "metadata": metadata}
    with pytest.raises(ApiError) as refused:
        validation.check_identity(call, body, "db")
    assert refused.value.code == 400
    message = "the name of the object (db based on URL) was undeterminable: name must be provided"
    assert refused.value.body["message"] == message
    validation.check_identity(call, body, "db", name_required=False)  # an apply to an existing object
    validation.check_identity(call, {**body, "metadata": {"name": "db"}}, "db")
