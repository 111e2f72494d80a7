"""The connector's OpenAPI v3 has kube-apiserver's shape for the same CRD.

``data/kube-apiserver-1.35-crd-openapi-v3-shape.json`` is the structure (``openapi_shape``) of
the document kube-apiserver 1.35.4 served at ``/openapi/v3/apis/<group>/v1alpha1`` for a local
copy of ``data/kubernetescluster-claim-crd.yaml`` under another group: four paths, every verb,
each with its parameters, bodies and responses, and the component schema names. The e2e test
``test_openapi_document.py`` makes the same comparison against the live app cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

from connector_samples import catalog
from openapi_shape import shape

from mcp_connector.connector.api import openapi

RECORDED = Path(__file__).resolve().parent / "data" / "kube-apiserver-1.35-crd-openapi-v3-shape.json"
GROUP = "k8s.starter.org"


def test_v3_has_kube_apiservers_shape() -> None:
    ours = openapi.v3_group_version(catalog(), GROUP, "v1alpha1")
    assert ours is not None
    expected = json.loads(RECORDED.read_text())
    got = json.loads(json.dumps(shape(ours, GROUP)))  # tuples as lists, as recorded
    assert got["schemas"] == expected["schemas"]
    assert sorted(got["paths"]) == sorted(expected["paths"])
    for path, item in expected["paths"].items():
        assert got["paths"][path] == item, path


def test_v2_has_the_same_operations() -> None:
    """Swagger 2.0 for older clients: the same paths, verbs and parameter names, bodies as parameters."""
    doc = openapi.v2(catalog())
    v3 = openapi.v3_group_version(catalog(), GROUP, "v1alpha1")
    assert v3 is not None
    for path, item in v3["paths"].items():
        assert sorted(doc["paths"][path]) == sorted(item), path
        for method, op in item.items():
            if method == "parameters":
                continue
            names = [p["name"] for p in doc["paths"][path][method].get("parameters", [])]
            expected = (["body"] if "requestBody" in op else []) + [p["name"] for p in op.get("parameters", [])]
            assert names == expected, (path, method)
            assert doc["paths"][path][method]["operationId"] == op["operationId"]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions" in doc["definitions"]


def test_a_kind_without_status_subresource_has_no_status_path() -> None:
    cat = catalog()
    api = cat.apis[0]
    plain = type(api)(**{**api.__dict__, "versions": tuple(
        type(v)(**{**v.__dict__, "status_subresource": False}) for v in api.versions
    )})  # fmt: skip
    doc = openapi.v3_group_version(type(cat).of([plain]), GROUP, "v1alpha1")
    assert doc is not None
    assert not [p for p in doc["paths"] if p.endswith("/status")]
    assert len(doc["paths"]) == 3
