"""Issue 9: the translation contract fuzzed with whole bodies, for claims and namespaced XRs alike.

Whatever a body says (labels that claim another owner, a name, a namespace, a connection Secret
reference, anything in spec), what is stored is the request's own object under its own hashed
name, and it reads back as the body; messages name the app object and never turn another
tenant's name into ours; a scope admits exactly one cluster's (and namespace's) objects.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mcp_connector.connector.api.translate import Scope
from mcp_connector.core import contract, names
from mcp_connector.core.contract import AppRef

CLAIM_NAMESPACE = "mcp-claims"
label_values = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
refs = st.builds(AppRef, cluster_id=label_values, namespace=label_values, name=label_values)
flavors = st.sampled_from(contract.Flavor)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
foreign_labels = st.dictionaries(
    st.sampled_from([*contract.OWNERSHIP_LABELS, f"{contract.LABEL_DOMAIN}/other", "team"]), label_values, max_size=4
)


@st.composite
def bodies(draw: st.DrawFn, ref: AppRef) -> dict[str, Any]:
    """An app-side body for ``ref`` whose other fields say whatever they like."""
    metadata: dict[str, Any] = {"name": ref.name, "namespace": ref.namespace, "labels": draw(foreign_labels)}
    if draw(st.booleans()):
        metadata["annotations"] = {"note": draw(st.text(max_size=10))}
    spec: Any = draw(st.dictionaries(st.sampled_from(["id", "parameters", "x"]), json_values, max_size=3))
    secret = draw(st.none() | label_values)
    if draw(st.integers(0, 4)) == 0:  # a spec that is no object at all: the control plane's schema refuses it
        return {"apiVersion": "example.org/v1", "kind": "Thing", "metadata": metadata, "spec": draw(json_values)}
    if secret is not None:
        spec["writeConnectionSecretToRef"] = {
            "name": secret,
            **({"namespace": "elsewhere"} if draw(st.booleans()) else {}),
        }
    return {"apiVersion": "example.org/v1", "kind": "Thing", "metadata": metadata, "spec": spec}


def unambiguous(value: str) -> bool:
    return not (value.startswith("x-") or value.endswith("-x") or "-x-" in value)


@given(st.data(), refs, flavors)
def test_a_body_never_chooses_its_identity_and_reads_back(
    data: st.DataObject, ref: AppRef, flavor: contract.Flavor
) -> None:
    body = data.draw(bodies(ref))
    before = copy.deepcopy(body)
    stored = contract.to_control_plane(body, ref, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    assert body == before
    assert contract.app_ref_of(stored) == ref
    assert stored["metadata"]["name"] == contract.control_plane_name(ref, flavor=flavor)
    assert stored["metadata"]["namespace"] == CLAIM_NAMESPACE
    assert contract.owned_by(stored, ref)
    back = contract.to_app(stored)
    assert (back["metadata"]["name"], back["metadata"]["namespace"]) == (ref.name, ref.namespace)
    assert not any(k.startswith(contract.LABEL_DOMAIN) for k in back["metadata"].get("labels") or {})
    assert (back["metadata"].get("labels") or {}) == {
        k: v for k, v in body["metadata"]["labels"].items() if not k.startswith(contract.LABEL_DOMAIN)
    }
    secret_ref = body["spec"].get("writeConnectionSecretToRef") if isinstance(body["spec"], dict) else None
    if secret_ref is not None:
        app_secret = AppRef(ref.cluster_id, ref.namespace, secret_ref["name"])
        parses = not names.dns1123_subdomain(ref.namespace) and not names.dns1123_subdomain(secret_ref["name"])
        expected = contract.SecretCopy(
            ref.cluster_id, ref.namespace, secret_ref["name"], contract.connection_secret_name(app_secret)
        )
        assert contract.app_connection_secret(stored) == (expected if parses else None)
        assert back["spec"]["writeConnectionSecretToRef"] == {"name": secret_ref["name"]}


@given(refs, refs, flavors, flavors)
def test_never_another_tenants_name(a: AppRef, b: AppRef, fa: contract.Flavor, fb: contract.Flavor) -> None:
    if (a, fa) == (b, fb) or not all(map(unambiguous, (*vars(a).values(), *vars(b).values()))):
        return
    stored = contract.to_control_plane(
        {"metadata": {"name": a.name, "labels": contract.ownership_labels(b)}}, a, claim_namespace=CLAIM_NAMESPACE,
        flavor=fa,
    )  # fmt: skip
    assert stored["metadata"]["name"] != contract.control_plane_name(b, flavor=fb)
    assert not contract.owned_by(stored, b) or a == b


@given(refs, refs, flavors)
def test_messages_name_our_object_and_leave_others_alone(a: AppRef, b: AppRef, flavor: contract.Flavor) -> None:
    ours, theirs = contract.control_plane_name(a, flavor=flavor), contract.control_plane_name(b, flavor=flavor)
    if theirs in contract.control_plane_names(a):
        return
    status = {
        "kind": "Status",
        "message": f'Thing "{ours}" in namespace "{CLAIM_NAMESPACE}" conflicts with "{theirs}"',
        "details": {"name": ours, "causes": [{"message": f"{ours} and {theirs}"}]},
    }
    out = contract.rewrite_status(status, a, claim_namespace=CLAIM_NAMESPACE)
    assert ours not in str(out) and f'namespace "{CLAIM_NAMESPACE}"' not in out["message"]
    assert out["details"]["name"] == a.name
    assert theirs in out["message"] and theirs in out["details"]["causes"][0]["message"]


@given(refs, refs, flavors, st.booleans())
def test_a_scope_admits_one_cluster_and_namespace(a: AppRef, b: AppRef, flavor: contract.Flavor, all_ns: bool) -> None:
    stored = contract.to_control_plane({"metadata": {}}, b, claim_namespace=CLAIM_NAMESPACE, flavor=flavor)
    scope = Scope(a.cluster_id, None if all_ns else a.namespace)
    assert scope.admits(stored) == (b.cluster_id == a.cluster_id and (all_ns or b.namespace == a.namespace))
    assert scope.admits_ref(stored, a) == (a == b)
