"""Control-plane discovery: claim APIs come from XRDs with claim names and their Established CRDs."""

from __future__ import annotations

from typing import Any

from mcp_connector.connector.catalog import Catalog
from mcp_connector.core.discovery import (
    ClaimApiSelection,
    GroupVersion,
    claim_apis_from,
    group_versions,
    preferred_versions,
    select,
    version_order,
)


def xrd(group: str, kind: str, plural: str, *versions: str, claim: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "group": group,
        "names": {"kind": f"X{kind}", "plural": f"x{plural}"},
        "versions": [{"name": v, "served": True, "referenceable": i == 0} for i, v in enumerate(versions)],
    }
    if claim:
        spec["claimNames"] = {"kind": kind, "plural": plural}
    return {"metadata": {"name": f"x{plural}.{group}"}, "spec": spec}


def crd(group: str, kind: str, plural: str, *versions: str, established: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "shortNames": ["x"],
                      "categories": ["claim"]},
            "versions": [
                {"name": v, "served": True, "storage": i == len(versions) - 1, "subresources": {"status": {}},
                 "additionalPrinterColumns": [{"name": "READY", "type": "string", "jsonPath": ".status.ready"}],
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
                for i, v in enumerate(versions)
            ],
        },
        "status": {"conditions": [{"type": "Established", "status": "True" if established else "False"}]},
    }


def test_claim_apis_come_from_xrds_with_claim_names_and_established_crds() -> None:
    apis = claim_apis_from(
        [
            xrd("k8s.starter.org", "KubernetesCluster", "kubernetesclusters", "v1alpha1"),
            xrd("db.example.org", "PostgreSQLInstance", "postgresqlinstances", "v1alpha1", "v1beta1"),
            xrd("noclaim.example.org", "Thing", "things", "v1", claim=False),
            xrd("pending.example.org", "Pending", "pendings", "v1"),
        ],
        [
            crd("k8s.starter.org", "KubernetesCluster", "kubernetesclusters", "v1alpha1"),
            crd("db.example.org", "PostgreSQLInstance", "postgresqlinstances", "v1alpha1", "v1beta1"),
            crd("noclaim.example.org", "Thing", "things", "v1"),
            crd("pending.example.org", "Pending", "pendings", "v1", established=False),
        ],
    )
    assert [a.resource for a in apis] == ["postgresqlinstances.db.example.org", "kubernetesclusters.k8s.starter.org"]
    db = apis[0]
    assert db.preferred_version.name == "v1beta1"
    assert db.short_names == ("x",) and db.categories == ("claim",)
    assert db.versions[0].printer_columns[0]["name"] == "READY"
    assert group_versions(apis) == (
        GroupVersion("db.example.org", "v1alpha1"),
        GroupVersion("db.example.org", "v1beta1"),
        GroupVersion("k8s.starter.org", "v1alpha1"),
    )
    assert group_versions(apis)[0].apiservice_name == "v1alpha1.db.example.org"


def test_selection_by_name_or_pattern() -> None:
    apis = claim_apis_from(
        [xrd("a.example.org", "A", "as", "v1"), xrd("b.example.org", "B", "bs", "v1")],
        [crd("a.example.org", "A", "as", "v1"), crd("b.example.org", "B", "bs", "v1")],
    )
    assert [a.kind for a in select(apis, ClaimApiSelection())] == ["A", "B"]
    assert [a.kind for a in select(apis, ClaimApiSelection(include=("as.a.example.org",)))] == ["A"]
    assert [a.kind for a in select(apis, ClaimApiSelection(exclude=("*.b.example.org", "b.example.org")))] == ["A"]


def test_versions_follow_kubernetes_order_not_the_storage_version() -> None:
    names = ["v1alpha1", "v2", "v1beta2", "foo", "v1", "v10beta1", "v1beta10", "bar", "v2alpha1"]
    assert sorted(names, key=version_order) == [
        "v2", "v1", "v10beta1", "v1beta10", "v1beta2", "v2alpha1", "v1alpha1", "bar", "foo",
    ]  # fmt: skip
    # The storage version is the last one here (see crd()), and still not preferred over v1.
    apis = claim_apis_from(
        [xrd("a.example.org", "A", "as", "v1", "v1alpha1"), xrd("a.example.org", "B", "bs", "v1beta1", "v1alpha2")],
        [crd("a.example.org", "A", "as", "v1", "v1alpha1"), crd("a.example.org", "B", "bs", "v1beta1", "v1alpha2")],
    )
    assert [a.preferred_version.name for a in apis] == ["v1", "v1beta1"]
    assert preferred_versions(apis) == {"a.example.org": "v1"}
    assert Catalog.of(apis).versions_of("a.example.org") == ("v1", "v1beta1", "v1alpha2", "v1alpha1")
