"""The reference policy: what an app user may not write into a claim or namespaced XR."""

from __future__ import annotations

from typing import Any

from mcp_connector.core import references

XR_REF = {"apiVersion": "k8s.starter.org/v1alpha1", "kind": "XKubernetesCluster", "name": "a-9z8x7"}


def claim(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "k8s.starter.org/v1alpha1", "kind": "KubernetesCluster", "spec": {"id": "a", **spec}}


def fields(found: list[references.Violation]) -> list[str]:
    return [v.field for v in found]


def test_a_new_claim_cannot_name_an_xr() -> None:
    assert fields(references.violations(claim(resourceRef=XR_REF), None)) == ["spec.resourceRef"]
    assert references.violations(claim(), None) == []
    assert references.violations(claim(resourceRef=None), None) == []


def test_the_stored_reference_may_be_repeated_never_changed() -> None:
    stored = claim(resourceRef=XR_REF)
    assert references.violations(claim(resourceRef=XR_REF), stored) == []
    other = {**XR_REF, "name": "someone-elses-xr"}
    assert fields(references.violations(claim(resourceRef=other), stored)) == ["spec.resourceRef"]
    assert fields(references.violations(claim(resourceRef=XR_REF), claim())) == ["spec.resourceRef"]


def test_v2_and_legacy_references_and_refused_fields() -> None:
    body = {
        "spec": {
            "crossplane": {"resourceRefs": [{"apiVersion": "v1", "kind": "Secret", "name": "x"}]},
            "claimRef": {"name": "c"},
            "resourceRefs": [],
            "publishConnectionDetailsTo": {"name": "claim-0123456789abcdef"},
        }
    }
    assert sorted(fields(references.violations(body, None))) == [
        "spec.claimRef",
        "spec.crossplane.resourceRefs",
        "spec.publishConnectionDetailsTo",
        "spec.resourceRefs",
    ]
    # publishConnectionDetailsTo is refused even when it is what is stored.
    assert fields(references.violations(body, body)) == ["spec.publishConnectionDetailsTo"]


def test_restore_keeps_what_a_replacement_leaves_out() -> None:
    stored = {"spec": {"id": "a", "resourceRef": XR_REF, "crossplane": {"resourceRefs": [1], "x": 1}}}
    new = {"spec": {"id": "b", "crossplane": {"y": 2}}}
    restored = references.restore(new, stored)
    assert restored == {"spec": {"id": "b", "resourceRef": XR_REF, "crossplane": {"y": 2, "resourceRefs": [1]}}}
    assert new == {"spec": {"id": "b", "crossplane": {"y": 2}}}  # the input is not changed
    assert references.restore({"spec": {"resourceRef": None}}, stored)["spec"]["resourceRef"] == XR_REF
    assert references.restore({"metadata": {}}, {"metadata": {}}) == {"metadata": {}}
    assert references.restore({"spec": "odd"}, stored) == {"spec": "odd"}
