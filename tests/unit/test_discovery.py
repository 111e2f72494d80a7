"""Control-plane discovery: claim APIs (v1 XRDs) and namespaced XR APIs (v2 XRDs) with their CRDs."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_connector.connector.followers.catalog import Catalog
from mcp_connector.core.contract import Flavor
from mcp_connector.core.discovery import (
    ClaimApiSelection,
    GroupVersion,
    claim_apis_from,
    discover,
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
    name = f"x{plural}.{group}"
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec}


def xrd_v2(group: str, kind: str, plural: str, *versions: str, scope: str = "Namespaced") -> dict[str, Any]:
    """A v2 XRD: its XR kind is what app clusters use (no claims)."""
    name = f"{plural}.{group}"
    return {
        "apiVersion": "apiextensions.crossplane.io/v2",
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {
            "scope": scope,
            "group": group,
            "names": {"kind": kind, "plural": plural},
            "versions": [{"name": v, "served": True, "referenceable": i == 0} for i, v in enumerate(versions)],
        },
    }


def crd(
    group: str,
    kind: str,
    plural: str,
    *versions: str,
    established: bool = True,
    owner: str | None = None,
    scope: str = "Namespaced",
) -> dict[str, Any]:
    """A CRD as Crossplane generates it: controlled by its XRD (``owner``, default the claim's XRD)."""
    owner = owner or f"x{plural}.{group}"
    return {
        "metadata": {
            "name": f"{plural}.{group}",
            "ownerReferences": [{"kind": "CompositeResourceDefinition", "name": owner, "uid": f"uid-{owner}",
                                 "controller": True}],
        },
        "spec": {
            "scope": scope,
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


def test_namespaced_xrs_of_v2_xrds_are_served_beside_claims() -> None:
    found = discover(
        [
            xrd("k8s.starter.org", "KubernetesCluster", "kubernetesclusters", "v1alpha1"),
            xrd_v2("storage.example.org", "Bucket", "buckets", "v1alpha1"),
        ],
        [
            crd("k8s.starter.org", "KubernetesCluster", "kubernetesclusters", "v1alpha1"),
            crd("storage.example.org", "Bucket", "buckets", "v1alpha1", owner="buckets.storage.example.org"),
        ],
    )
    assert [(a.resource, a.flavor) for a in found.apis] == [
        ("kubernetesclusters.k8s.starter.org", Flavor.CLAIM),
        ("buckets.storage.example.org", Flavor.NAMESPACED_XR),
    ]
    assert found.apis[1].xrd_name == "buckets.storage.example.org"
    assert found.unserved == ()


@pytest.mark.parametrize(
    ("the_xrd", "reason"),
    [
        (xrd_v2("g.example.org", "Thing", "things", "v1", scope="Cluster"), "scope: Cluster"),
        (xrd("g.example.org", "Thing", "things", "v1", claim=False), "without claimNames"),
        (xrd_v2("g.example.org", "Thing", "things", "v1", scope="Sideways"), "unknown XRD scope"),
    ],
)
def test_cluster_scoped_xrs_are_not_served_and_say_why(the_xrd: dict[str, Any], reason: str) -> None:
    owner = the_xrd["metadata"]["name"]
    found = discover([the_xrd], [crd("g.example.org", "Thing", "things", "v1", owner=owner, scope="Cluster"),
                                 crd("g.example.org", "XThing", "xthings", "v1", owner=owner, scope="Cluster")])
    assert found.apis == ()
    assert len(found.unserved) == 1 and reason in found.unserved[0].reason
    assert found.unserved[0].xrd_name == owner


def test_a_kind_two_xrds_ask_for_is_served_once_for_the_xrd_crossplane_gave_it_to() -> None:
    """A v1 XRD's claim and a v2 XRD's XR both want ``foos.g.example.org``: one CRD, one owner."""
    legacy = xrd("g.example.org", "Foo", "foos", "v1")
    modern = xrd_v2("g.example.org", "Foo", "foos", "v1")
    for owner, served, refused in (
        (legacy, Flavor.CLAIM, modern),
        (modern, Flavor.NAMESPACED_XR, legacy),
    ):
        found = discover([legacy, modern], [crd("g.example.org", "Foo", "foos", "v1", owner=owner["metadata"]["name"])])
        assert [(a.resource, a.flavor) for a in found.apis] == [("foos.g.example.org", served)]
        assert [u.xrd_name for u in found.unserved] == [refused["metadata"]["name"]]
        assert "not controlled by this XRD" in found.unserved[0].reason


def test_a_kind_is_never_served_twice_even_under_two_plurals() -> None:
    """Kubernetes refuses a second CRD of one kind in a group; should two be Established, serve one."""
    one, two = xrd("g.example.org", "Foo", "foos", "v1"), xrd_v2("g.example.org", "Foo", "fooz", "v1")
    one["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    two["metadata"]["creationTimestamp"] = "2025-06-01T00:00:00Z"
    found = discover(
        [one, two],
        [
            crd("g.example.org", "Foo", "foos", "v1"),
            crd("g.example.org", "Foo", "fooz", "v1", owner="fooz.g.example.org"),
        ],
    )
    assert [a.resource for a in found.apis] == ["foos.g.example.org"]
    assert "already served for XRD xfoos.g.example.org" in found.unserved[0].reason


def test_an_xr_crd_crossplane_made_cluster_scoped_is_not_served() -> None:
    found = discover(
        [xrd_v2("g.example.org", "Foo", "foos", "v1")],
        [crd("g.example.org", "Foo", "foos", "v1", owner="foos.g.example.org", scope="Cluster")],
    )
    assert found.apis == () and "not namespaced" in found.unserved[0].reason


def test_pending_xrds_wait_for_their_crd() -> None:
    found = discover([xrd_v2("g.example.org", "Foo", "foos", "v1")], [])
    assert found.apis == () and "waiting for Crossplane" in found.unserved[0].reason
