"""The translation contract: the known vector, round trips, isolation, and no collisions."""

from __future__ import annotations

import copy
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_connector.core import contract
from mcp_connector.core.contract import AppRef

CLAIM_NAMESPACE = "mcp-claims"
label_values = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=63).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum()
)
refs = st.builds(AppRef, cluster_id=label_values, namespace=label_values, name=label_values)
flavors = st.sampled_from(contract.Flavor)


def claim(name: str, namespace: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "k8s.starter.org/v1alpha1",
        "kind": "KubernetesCluster",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "a"}},
        "spec": dict(spec),
    }


def test_known_vector() -> None:
    ref = AppRef("00000000-0000-0000-0000-000000000000", "test", "my-bucket")
    assert contract.control_plane_name(ref) == "claim-c603e518969b413e"
    assert contract.control_plane_name(ref, flavor=contract.Flavor.CLAIM) == "claim-c603e518969b413e"


def test_namespaced_xrs_share_the_hash_under_their_own_prefix() -> None:
    """Upbound's connector stores namespaced XRs as ``nxr-`` + the same 16 hex characters."""
    ref = AppRef("00000000-0000-0000-0000-000000000000", "test", "my-bucket")
    assert contract.control_plane_name(ref, flavor=contract.Flavor.NAMESPACED_XR) == "nxr-c603e518969b413e"
    assert contract.control_plane_names(ref) == ("claim-c603e518969b413e", "nxr-c603e518969b413e")


@given(refs, flavors)
def test_names_are_prefix_and_sixteen_hex(ref: AppRef, flavor: contract.Flavor) -> None:
    name = contract.control_plane_name(ref, flavor=flavor)
    prefix, digest = name[: len(flavor.prefix)], name[len(flavor.prefix) :]
    assert prefix == flavor.prefix and len(digest) == 16 and set(digest) <= set(string.hexdigits.lower())
    assert len(name) <= 63, "a control-plane name is also a valid label value and DNS label"


@given(refs, flavors)
def test_round_trip(ref: AppRef, flavor: contract.Flavor) -> None:
    body = claim(ref.name, ref.namespace, writeConnectionSecretToRef={"name": "conn"})
    body["metadata"]["annotations"] = {"note": "kept"}  # type: ignore[index]
    body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}]  # type: ignore[index]
    body_before = copy.deepcopy(body)
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    stored_before = copy.deepcopy(stored)
    assert contract.to_app(stored) == body
    assert (body, stored) == (body_before, stored_before), "the contract never changes its input"
    assert stored["metadata"]["name"] == contract.control_plane_name(ref, flavor=flavor)
    assert stored["metadata"]["namespace"] == CLAIM_NAMESPACE
    assert contract.app_ref_of(stored) == ref
    assert contract.to_app(stored) == body


def unambiguous(value: str) -> bool:
    """True when ``value`` cannot shift the "-x-" separators of the hash input."""
    return not (value.startswith("x-") or value.endswith("-x") or "-x-" in value)


@given(refs.filter(lambda r: all(map(unambiguous, (r.cluster_id, r.namespace, r.name)))), refs, flavors, flavors)
def test_distinct_refs_never_share_a_name(a: AppRef, b: AppRef, fa: contract.Flavor, fb: contract.Flavor) -> None:
    if (a, fa) != (b, fb) and all(map(unambiguous, (b.cluster_id, b.namespace, b.name))):
        assert contract.control_plane_name(a, flavor=fa) != contract.control_plane_name(b, flavor=fb)


@given(refs, refs, flavors)
def test_distinct_refs_never_share_an_identity(a: AppRef, b: AppRef, flavor: contract.Flavor) -> None:
    """The stored identity is the hashed name AND the ownership labels, and that is injective."""
    if a != b:
        identity_a = (contract.control_plane_name(a, flavor=flavor), contract.ownership_labels(a))
        identity_b = (contract.control_plane_name(b, flavor=flavor), contract.ownership_labels(b))
        assert identity_a != identity_b


@given(refs)
def test_a_claim_and_an_xr_of_one_app_name_never_share_a_control_plane_name(ref: AppRef) -> None:
    claim_name = contract.control_plane_name(ref, flavor=contract.Flavor.CLAIM)
    assert claim_name != contract.control_plane_name(ref, flavor=contract.Flavor.NAMESPACED_XR)


def test_spec_crossplane_passes_through() -> None:
    """A v2 XR's Crossplane machinery (composition ref/selector/policy) is the user's to set."""
    ref = AppRef("c1", "team-a", "bkt")
    machinery = {
        "compositionRef": {"name": "buckets-eu"},
        "compositionSelector": {"matchLabels": {"tier": "gold"}},
        "compositionUpdatePolicy": "Manual",
    }
    body = claim("bkt", "team-a", region="eu", crossplane=machinery)
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE, flavor=contract.Flavor.NAMESPACED_XR)
    assert stored["spec"]["crossplane"] == machinery
    assert stored["metadata"]["name"] == contract.control_plane_name(ref, flavor=contract.Flavor.NAMESPACED_XR)
    assert contract.to_app(stored) == body


def test_separator_ambiguity_is_caught_by_the_labels() -> None:
    """Upbound's hash input joins with "-x-", so two refs can share a name; the labels differ.

    The connector therefore checks the labels of what it finds under a hashed name and
    answers 409 Conflict instead of touching another claim.
    """
    one = AppRef("c", "b", "a-x")
    two = AppRef("c", "x-b", "a")
    assert contract.control_plane_name(one) == contract.control_plane_name(two)
    assert contract.ownership_labels(one) != contract.ownership_labels(two)
    stored = contract.to_control_plane(claim("a-x", "b"), one, claim_namespace=CLAIM_NAMESPACE)
    assert not contract.owned_by(stored, two)
    assert contract.owned_by(stored, one)


def test_body_cannot_choose_its_labels_or_place() -> None:
    ref = AppRef("cluster-a", "team-a", "db")
    body = claim("db", "team-a")
    body["metadata"]["labels"] = {  # type: ignore[index]
        contract.APP_CLUSTER_LABEL: "cluster-b",
        contract.APP_NAMESPACE_LABEL: "team-b",
        "mcp-connector.upbound.io/other": "x",
    }
    body["metadata"]["namespace"] = "kube-system"  # type: ignore[index]
    body["metadata"]["ownerReferences"] = [{"uid": "u"}]  # type: ignore[index]
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE)
    assert stored["metadata"]["labels"] == contract.ownership_labels(ref)
    assert stored["metadata"]["namespace"] == CLAIM_NAMESPACE
    assert "ownerReferences" not in stored["metadata"]


def test_connection_secret_is_mapped_both_ways() -> None:
    ref = AppRef("cluster-a", "default", "my-cluster")
    stored = contract.to_control_plane(
        claim("my-cluster", "default", writeConnectionSecretToRef={"name": "my-cluster-kubeconfig"}),
        ref,
        claim_namespace=CLAIM_NAMESPACE,
    )
    secret_name = stored["spec"]["writeConnectionSecretToRef"]["name"]
    assert secret_name == contract.control_plane_name(AppRef("cluster-a", "default", "my-cluster-kubeconfig"))
    assert contract.app_connection_secret(stored) == contract.SecretCopy(
        "cluster-a", "default", "my-cluster-kubeconfig", secret_name
    )
    assert contract.to_app(stored)["spec"]["writeConnectionSecretToRef"] == {"name": "my-cluster-kubeconfig"}


def test_a_stored_connection_secret_name_is_parsed_again_before_use() -> None:
    """Defence in depth: names read back from a control-plane object name nothing unless they parse."""
    ref = AppRef("cluster-a", "default", "my-cluster")
    stored = contract.to_control_plane(
        claim("my-cluster", "default", writeConnectionSecretToRef={"name": "ok"}), ref, claim_namespace=CLAIM_NAMESPACE
    )
    for bad in ("a,metadata.name!=/../../../victimns/secrets/victim", "..", "a%2Fb", "UPPER", "x" * 254, ""):
        tampered = {
            **stored,
            "metadata": {**stored["metadata"], "annotations": {contract.APP_SECRET_NAME_ANNOTATION: bad}},
        }
        assert contract.app_connection_secret(tampered) is None, bad
    tampered = {**stored, "spec": {"writeConnectionSecretToRef": {"name": "../x"}}}
    assert contract.app_connection_secret(tampered) is None


def test_names_too_long_for_a_label_are_refused() -> None:
    with pytest.raises(contract.ContractError, match="at most 63"):
        contract.ownership_labels(AppRef("c", "ns", "n" * 64))


@pytest.mark.parametrize("flavor", list(contract.Flavor))
def test_status_messages_name_the_app_object(flavor: contract.Flavor) -> None:
    ref = AppRef("c1", "team-a", "db")
    hashed = contract.control_plane_name(ref, flavor=flavor)
    status = {
        "kind": "Status",
        "message": f'KubernetesCluster.k8s.starter.org "{hashed}" is invalid: spec.parameters.nodes.count: Invalid',
        "details": {"name": hashed, "causes": [{"message": f"{hashed} bad"}]},
    }
    out = contract.rewrite_status(status, ref, claim_namespace=CLAIM_NAMESPACE)
    assert hashed not in str(out)
    assert out["details"]["name"] == "db"
    assert out["message"].startswith('KubernetesCluster.k8s.starter.org "db" is invalid')


@pytest.mark.parametrize(
    ("selector", "labels", "fields"),
    [
        ("metadata.name=db", f"{contract.APP_NAME_LABEL}=db", ""),
        ("metadata.namespace!=x", f"{contract.APP_NAMESPACE_LABEL}!=x", ""),
        ("metadata.name==db,status.phase=Ready", f"{contract.APP_NAME_LABEL}=db", "status.phase=Ready"),
        ("", "", ""),
        # Parsed as fields.ParseSelector parses: escapes read, terms not trimmed.
        ("metadata.name=a\\,b", f"!{contract.APP_NAME_LABEL}", ""),
        ("metadata.name!=a\\,b", "", ""),
        ("metadata.name=a b", f"!{contract.APP_NAME_LABEL}", ""),
        ("metadata.name =a", "", "metadata.name =a"),
        ("spec.x=a\\,b\\=c", "", "spec.x=a\\,b\\=c"),
        (
            "metadata.namespace=x,metadata.name=" + "n" * 64,
            f"!{contract.APP_NAME_LABEL},{contract.APP_NAMESPACE_LABEL}=x",
            "",
        ),
    ],
)
def test_field_selectors_become_label_selectors(selector: str, labels: str, fields: str) -> None:
    assert contract.translate_field_selector(selector) == (labels, fields)


@pytest.mark.parametrize("selector", ["metadata.name", "a=b\\", "metadata.name=a=b"])
def test_a_field_selector_that_does_not_parse_is_refused(selector: str) -> None:
    with pytest.raises(contract.ContractError):
        contract.translate_field_selector(selector)


@pytest.mark.parametrize(
    ("namespace", "name", "wanted"),
    [
        ("ns", None, f"{contract.APP_NAMESPACE_LABEL}=ns"),
        ("ns", "db", f"{contract.APP_NAMESPACE_LABEL}=ns,{contract.APP_NAME_LABEL}=db"),
        ("a,b", None, f"!{contract.APP_NAMESPACE_LABEL}"),
        (
            "ns",
            "x,mcp-connector.upbound.io/app-cluster",
            f"{contract.APP_NAMESPACE_LABEL}=ns,!{contract.APP_NAME_LABEL}",
        ),
    ],
)
def test_a_scope_never_carries_a_value_that_is_no_label_value(namespace: str, name: str | None, wanted: str) -> None:
    """A name or namespace from a URL or a field selector is never formatted into a selector:
    one that no object can have selects nothing."""
    assert contract.scope_selector("c1", namespace, name) == f"{contract.APP_CLUSTER_LABEL}=c1,{wanted}"


def test_scope_selector_always_names_the_cluster() -> None:
    assert contract.scope_selector("c1", None) == f"{contract.APP_CLUSTER_LABEL}=c1"
    scoped = contract.combine_selectors(contract.scope_selector("c1", "ns"), "team=a")
    assert scoped == f"{contract.APP_CLUSTER_LABEL}=c1,{contract.APP_NAMESPACE_LABEL}=ns,team=a"


OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u-1", "controller": True}


def test_owner_references_round_trip_beside_the_stored_claim() -> None:
    ref = AppRef("c1", "team-a", "db")
    body = claim("db", "team-a")
    body["metadata"]["ownerReferences"] = [OWNER]  # type: ignore[index]
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE)
    assert "ownerReferences" not in stored["metadata"], "the control plane's GC must never see app owners"
    assert contract.APP_OWNERS_ANNOTATION in stored["metadata"]["annotations"]
    back = contract.to_app(stored)
    assert back["metadata"]["ownerReferences"] == [OWNER]
    assert "annotations" not in back["metadata"]


def test_owner_annotation_cannot_be_forged_and_control_plane_owners_stay_hidden() -> None:
    ref = AppRef("c1", "team-a", "db")
    body = claim("db", "team-a")
    body["metadata"]["annotations"] = {contract.APP_OWNERS_ANNOTATION: '[{"uid": "forged"}]'}  # type: ignore[index]
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE)
    assert "annotations" not in stored["metadata"]
    stored["metadata"]["ownerReferences"] = [{**OWNER, "uid": "control-plane-object"}]
    assert "ownerReferences" not in contract.to_app(stored)["metadata"]


@pytest.mark.parametrize(
    ("owners", "fields"),
    [
        ([OWNER], []),
        ([{**OWNER, "uid": ""}], ["metadata.ownerReferences.uid"]),
        ([{"kind": "ConfigMap", "name": "cm", "uid": "u"}], ["metadata.ownerReferences.apiVersion"]),
        ([{**OWNER, "apiVersion": "apps/"}], ["metadata.ownerReferences.apiVersion"]),
        ([{**OWNER, "kind": "", "name": ""}], ["metadata.ownerReferences.kind", "metadata.ownerReferences.name"]),
        ([OWNER, {**OWNER, "uid": "u-2", "name": "other"}], ["metadata.ownerReferences"]),
        ("not-a-list", ["metadata.ownerReferences"]),
    ],
)
def test_owner_references_are_validated_as_kube_apiserver_does(owners: object, fields: list[str]) -> None:
    assert [p[0] for p in contract.owner_reference_problems(owners)] == fields


def managed(manager: str, fields: dict[str, object], operation: str = "Update") -> dict[str, object]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "k8s.starter.org/v1alpha1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


def test_managed_fields_lose_the_connectors_fields_and_show_owner_references() -> None:
    ref = AppRef("c1", "team-a", "db")
    body = claim("db", "team-a", writeConnectionSecretToRef={"name": "conn"}, id="x")
    body["metadata"]["ownerReferences"] = [OWNER]  # type: ignore[index]
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE)
    labels = {f"f:{k}": {} for k in contract.OWNERSHIP_LABELS}
    stored["metadata"]["managedFields"] = [
        managed(
            "kubectl-client-side-apply",
            {
                "f:metadata": {
                    "f:labels": {".": {}, "f:team": {}, **labels},
                    "f:annotations": {
                        ".": {},
                        f"f:{contract.APP_OWNERS_ANNOTATION}": {},
                        f"f:{contract.APP_SECRET_NAME_ANNOTATION}": {},
                    },
                },
                "f:spec": {"f:id": {}},
            },
        ),
        managed("connector-only", {"f:metadata": {"f:labels": {".": {}, **labels}}}),
        managed("status-writer", {"f:status": {"f:ready": {}}}),
    ]
    shown = contract.to_app(stored)["metadata"]["managedFields"]
    assert [m["manager"] for m in shown] == ["kubectl-client-side-apply", "status-writer"]
    assert shown[0]["fieldsV1"] == {
        "f:metadata": {
            "f:labels": {".": {}, "f:team": {}},
            "f:ownerReferences": {
                ".": {},
                'k:{"uid":"u-1"}': {
                    ".": {},
                    "f:apiVersion": {},
                    "f:controller": {},
                    "f:kind": {},
                    "f:name": {},
                    "f:uid": {},
                },
            },
        },
        "f:spec": {"f:id": {}},
    }
    assert contract.LABEL_DOMAIN not in str(shown)


def test_managed_fields_sent_back_keep_owner_references_in_the_annotation() -> None:
    ref = AppRef("c1", "team-a", "db")
    body = claim("db", "team-a")
    body["metadata"]["ownerReferences"] = [OWNER]  # type: ignore[index]
    body["metadata"]["managedFields"] = [  # type: ignore[index]
        managed("kubectl", {"f:metadata": {"f:ownerReferences": {'k:{"uid":"u-1"}': {}}}, "f:spec": {}}, "Apply"),
        managed("other", {"f:spec": {"f:id": {}}}),
    ]
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE)
    assert stored["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:metadata": {"f:annotations": {".": {}, f"f:{contract.APP_OWNERS_ANNOTATION}": {}}},
        "f:spec": {},
    }
    assert stored["metadata"]["managedFields"][1] == managed("other", {"f:spec": {"f:id": {}}})
    assert contract.to_app(stored)["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"] == {
        "f:ownerReferences": contract_owner_tree()
    }


def contract_owner_tree() -> dict[str, object]:
    return {
        ".": {},
        'k:{"uid":"u-1"}': {".": {}, "f:apiVersion": {}, "f:controller": {}, "f:kind": {}, "f:name": {}, "f:uid": {}},
    }


def test_messages_without_one_claim_name_the_app_namespace_exactly() -> None:
    text = f'quota in namespace "{CLAIM_NAMESPACE}" exceeded; {CLAIM_NAMESPACE}-backup untouched'
    out = contract.hide_claim_namespace(text, claim_namespace=CLAIM_NAMESPACE, namespace="team-a")
    assert out == f'quota in namespace "team-a" exceeded; {CLAIM_NAMESPACE}-backup untouched'


def test_connection_secret_goes_only_to_the_claim_that_controls_it() -> None:
    """``creds-x-team`` in ``prod`` and ``creds`` in ``team-x-prod`` hash to one Secret name."""
    cluster = "00000000-0000-0000-0000-000000000000"
    assert contract.connection_secret_name(
        contract.AppRef(cluster, "prod", "creds-x-team")
    ) == contract.connection_secret_name(contract.AppRef(cluster, "team-x-prod", "creds"))
    owner = {"metadata": {"uid": "u-owner"}}
    other = {"metadata": {"uid": "u-other"}}
    secret = {"metadata": {"ownerReferences": [{"uid": "u-owner", "controller": True, "kind": "KubernetesCluster"}]}}
    assert contract.connection_secret_written_for(secret, owner)
    assert not contract.connection_secret_written_for(secret, other)
    not_controller = {"metadata": {"ownerReferences": [{"uid": "u-owner", "kind": "KubernetesCluster"}]}}
    assert not contract.connection_secret_written_for(not_controller, owner)
    assert not contract.connection_secret_written_for({"metadata": {}}, owner)
    assert not contract.connection_secret_written_for(secret, {"metadata": {}})


@given(refs, flavors)
def test_crossplanes_own_name_label_is_mapped_like_the_name(ref: AppRef, flavor: contract.Flavor) -> None:
    """A namespaced XR carries ``crossplane.io/composite: <its name>``: the app sees its own name there."""
    hashed = contract.control_plane_name(ref, flavor=flavor)
    body = claim(ref.name, ref.namespace)
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    stored["metadata"]["labels"]["crossplane.io/composite"] = hashed  # as Crossplane sets it
    seen = contract.to_app(stored)
    assert seen["metadata"]["labels"]["crossplane.io/composite"] == ref.name
    written_back = contract.to_control_plane(seen, ref, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    assert written_back["metadata"]["labels"]["crossplane.io/composite"] == hashed


@given(refs, flavors, st.text(alphabet=string.ascii_lowercase + string.digits, min_size=5, max_size=12))
def test_names_crossplane_derives_from_the_hashed_name_read_as_the_app_name(
    ref: AppRef, flavor: contract.Flavor, suffix: str
) -> None:
    """A claim's XR and an XR's composed resources are named after the hashed name; the app sees its own.

    Both directions, so a body read and written back (kubectl replace) stores what Crossplane wrote.
    """
    hashed = contract.control_plane_name(ref, flavor=flavor)
    body = claim(ref.name, ref.namespace, writeConnectionSecretToRef={"name": "conn"})
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    secret = stored["spec"]["writeConnectionSecretToRef"]["name"]
    stored["spec"]["resourceRef"] = {"apiVersion": "g/v1", "kind": "XThing", "name": f"{hashed}-{suffix}"}
    stored["spec"]["crossplane"] = {
        "resourceRefs": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": f"{hashed}-{suffix}"},
            {"apiVersion": "v1", "kind": "Secret", "name": secret},
            {"apiVersion": "v1", "kind": "Secret", "name": "fixed-by-the-composition"},
        ]
    }
    seen = contract.to_app(stored)
    assert seen["spec"]["resourceRef"]["name"] == f"{ref.name}-{suffix}"
    assert [r["name"] for r in seen["spec"]["crossplane"]["resourceRefs"]] == [
        f"{ref.name}-{suffix}",
        "conn",
        "fixed-by-the-composition",
    ]
    assert hashed not in str(seen) and secret not in str(seen)
    back = contract.to_control_plane(seen, ref, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    assert back["spec"] == stored["spec"]
