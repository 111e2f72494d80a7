"""Issue 17, point 9: the connector's OpenAPI v3 is the one kube-apiserver serves for a CRD.

The control plane's claim CRD is copied into the app cluster under another group; the app
cluster's own document for that copy and the connector's for the claim API (both read through
the app cluster) must have the same structure (``openapi_shape``): paths, operations,
parameters, bodies, responses and schema names. Then schemathesis, driven by the connector's
document through the app cluster, may not find a 5xx (a fixed seed and a bounded number of
examples, so CI sends the same requests every run).
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from connector_fixtures import ConnectorProcess, serving

from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

# The structure helper the unit test (tests/unit/test_openapi_document.py) uses too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
shape = importlib.import_module("openapi_shape").shape

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "k8s.starter.org", "v1alpha1", "kubernetesclusters"
COPY_GROUP = f"copy.{GROUP}"
APISERVICE = f"{VERSION}.{GROUP}"
#: schemathesis examples per operation, in its deterministic mode (the same requests every run):
#: 11 operations, about 100 requests.
EXAMPLES = 10


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    with serving(testbed, [APISERVICE]) as proc:
        yield proc


@pytest.fixture(scope="module")
def local_copy(testbed: Testbed) -> Iterator[dict[str, Any]]:
    """kube-apiserver's own document for a local copy of the claim CRD."""
    crd = testbed.kubectl_json(CONTROL_PLANE, "get", "crd", f"{PLURAL}.{GROUP}")
    copy = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{COPY_GROUP}"},
        "spec": {**crd["spec"], "group": COPY_GROUP},
    }
    testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(copy))
    try:
        raw = eventually(
            lambda: testbed.kubectl(APP_CLUSTER, "get", "--raw", f"/openapi/v3/apis/{COPY_GROUP}/{VERSION}").stdout,
            timeout=60,
            what="kube-apiserver's document for the local copy",
        )
        yield json.loads(raw)
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "crd", f"{PLURAL}.{COPY_GROUP}", "--wait=false", check=False)


def connectors_document(testbed: Testbed) -> dict[str, Any]:
    raw = testbed.kubectl(APP_CLUSTER, "get", "--raw", f"/openapi/v3/apis/{GROUP}/{VERSION}").stdout
    document: dict[str, Any] = json.loads(raw)
    return document


def test_the_connectors_document_has_kube_apiservers_shape(
    testbed: Testbed, conn: ConnectorProcess, local_copy: dict[str, Any]
) -> None:
    theirs, ours = shape(local_copy, COPY_GROUP), shape(connectors_document(testbed), GROUP)
    assert sorted(ours["paths"]) == sorted(theirs["paths"])
    assert len(ours["paths"]) == 4
    for path, item in theirs["paths"].items():
        assert ours["paths"][path] == item, path
    assert ours["schemas"] == theirs["schemas"]


def test_schemathesis_finds_no_server_error(testbed: Testbed, conn: ConnectorProcess, tmp_path: Path) -> None:
    """schemathesis over the connector's own v3 document, through the app cluster (its client
    certificate authenticates as the test bed's admin), with a fixed seed."""
    app = testbed.app_cluster
    schema = tmp_path / "openapi.json"
    document = connectors_document(testbed)
    # The namespace parameter names one that exists, so that writes reach the verbs.
    testbed.kubectl(APP_CLUSTER, "create", "namespace", "schemathesis", check=False)
    schema.write_text(json.dumps(document))
    report = tmp_path / "report"
    args = [
        str(Path(sys.executable).with_name("st")), "run", str(schema), "--url", app.apiserver_url,
        "--tls-verify", str(app.ca_cert), "--request-cert", str(app.admin_cert),
        "--request-cert-key", str(app.admin_key),
        "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES),
        "--generation-deterministic", "--workers", "1", "--phases", "fuzzing",
        "--report", "junit", "--report-dir", str(report),
    ]  # fmt: skip
    started = time.monotonic()
    # In tmp_path, so its crash cache (.schemathesis/) stays with this run and out of the checkout.
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=240, env={"NO_COLOR": "1", "PATH": ""}, cwd=tmp_path
    )
    took = time.monotonic() - started
    print(done.stdout[-4000:], f"schemathesis took {took:.0f}s", sep="\n")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    suite = ElementTree.parse(next(report.glob("junit-*.xml"))).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("11", "0", "0"), done.stdout
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated is not None and int(generated.group(1)) >= 5 * 11, done.stdout[-2000:]
    assert conn.call("GET", "/healthz", user=("e2e", ()))[0] == 200, "the connector still answers"
