"""Shared sample data for the connector's unit tests: the claim CRD Crossplane made for the seed's XRD, as a Catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mcp_connector.connector.followers.catalog import Catalog
from mcp_connector.core import contract
from mcp_connector.core.discovery import claim_apis_from

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = Path(__file__).resolve().parent / "data" / "kubernetescluster-claim-crd.yaml"
XRD_FILE = REPO / "testbed" / "crossplane" / "kubernetescluster" / "xrd.yaml"
CLUSTER = "00000000-0000-0000-0000-000000000000"
OTHER_CLUSTER = "11111111-1111-1111-1111-111111111111"
CLAIM_NS = "mcp-claims"


def catalog() -> Catalog:
    """The KubernetesCluster claim API, as discovery would find it."""
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    crd["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
    xrd = yaml.safe_load(XRD_FILE.read_text())
    xrd["metadata"]["uid"] = crd["metadata"]["ownerReferences"][0]["uid"] = "xrd-uid"  # Crossplane's XRD owns the CRD
    return Catalog.of(claim_apis_from([xrd], [crd]))


def cp_claim(name: str, namespace: str = "default", cluster: str = CLUSTER, **spec: Any) -> dict[str, Any]:
    """A control-plane claim as the connector would have stored it."""
    ref = contract.AppRef(cluster, namespace, name)
    app = {
        "apiVersion": "k8s.starter.org/v1alpha1",
        "kind": "KubernetesCluster",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7", "labels": {"team": "a"}},
        "spec": {"id": name, "parameters": {"nodes": {"count": 1}}, **spec},
    }
    return contract.to_control_plane(app, ref, claim_namespace=CLAIM_NS)
