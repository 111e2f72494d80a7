"""``mcp-connector render | kubectl apply -f -`` with the connector outside the cluster, then ``kubectl delete -f``.

The connector runs as a local process with ``--manage-apiservices --apiservice-owner``: it
registers the APIServices once the rendered ClusterRole exists, and when ``kubectl delete
-f`` removes it, the garbage collector (the test bed's kube-controller-manager) removes the
APIServices that it owned.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import connector_fixtures
import pytest
import yaml
from fleet_fixtures import fleet, fleet_env, output

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLAIM = REPO / "testbed" / "crossplane" / "kubernetescluster" / "claim.yaml"
NAMESPACE = "mcp-fleet-render"
APISERVICES = ("v1alpha1.k8s.starter.org", "v1alpha1.db.example.org", "v1beta1.db.example.org")


@pytest.mark.timeout(300)
def test_render_apply_claim_delete(testbed: Testbed, tmp_path: Path) -> None:
    cluster_id = str(uuid.uuid4())
    connector = connector_fixtures.start_connector(
        testbed,
        cluster_id=cluster_id,
        manage_apiservices=True,
        extra_args=["--service-namespace", NAMESPACE, "--apiservice-owner", "mcp-connector"],
    )
    manifests = tmp_path / "connector.yaml"
    try:
        rendered = fleet(
            "render", "ctp", testbed.claim_namespace, "-n", NAMESPACE, "--create-namespace",
            "--control-plane-kubeconfig", str(testbed.control_plane.kubeconfig),
            "--cluster-id", cluster_id, "--set", f"mode=localhost:{connector.port}",
            env=fleet_env(tmp_path),
        )  # fmt: skip
        assert rendered.returncode == 0, output(rendered)
        assert "holds the control-plane credentials" in rendered.stderr
        kinds = [d["kind"] for d in yaml.safe_load_all(rendered.stdout)]
        assert "APIService" not in kinds and "Deployment" not in kinds, "external mode: the connector runs outside"
        manifests.write_text(rendered.stdout)
        assert not any(
            testbed.kubectl(APP_CLUSTER, "get", "apiservice", name, check=False).returncode == 0 for name in APISERVICES
        ), "no APIService before the install's owner exists"

        testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=rendered.stdout)  # render | kubectl apply -f -
        connector_fixtures.wait_available(testbed, APISERVICES, timeout=90)
        owners = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", APISERVICES[0])["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"]) for o in owners] == [("ClusterRole", "mcp-connector")]

        app_ns = f"render-{cluster_id[:8]}"
        testbed.kubectl(APP_CLUSTER, "create", "namespace", app_ns)
        eventually(
            lambda: testbed.kubectl(APP_CLUSTER, "apply", "-n", app_ns, "-f", str(CLAIM)),
            timeout=60,
            what="a claim applied through the rendered connection",
        )
        ref = contract.AppRef(cluster_id, app_ns, "my-cluster")
        name = contract.control_plane_name(ref)
        claim = testbed.kubectl_json(CONTROL_PLANE, "get", "kubernetesclusters", name, "-n", testbed.claim_namespace)
        assert contract.app_ref_of(claim) == ref
        listed = testbed.kubectl_json(APP_CLUSTER, "get", "kubernetesclusters", "-n", app_ns)
        assert [i["metadata"]["name"] for i in listed["items"]] == ["my-cluster"]

        testbed.kubectl(APP_CLUSTER, "delete", "-f", str(manifests), "--wait=true", timeout=180)
        eventually(
            lambda: all(
                testbed.kubectl(APP_CLUSTER, "get", "apiservice", n, check=False).returncode != 0 for n in APISERVICES
            ),
            timeout=60,
            what="the APIServices garbage-collected with their ClusterRole",
        )
        assert testbed.kubectl(APP_CLUSTER, "get", "namespace", NAMESPACE, check=False).returncode != 0
        # The connector sees the owner go on its own watch, not necessarily before the garbage collector acts.
        eventually(lambda: "owner ClusterRole missing" in connector.logs(), what="the connector logging its owner gone")
        assert (
            contract.app_ref_of(
                testbed.kubectl_json(CONTROL_PLANE, "get", "kubernetesclusters", name, "-n", testbed.claim_namespace)
            )
            == ref
        ), "removing the manifests keeps the claim (no hook: Keep)"
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false")
        testbed.kubectl(CONTROL_PLANE, "delete", "kubernetesclusters", name, "-n", testbed.claim_namespace)
    finally:
        connector.stop()
        if manifests.exists():
            testbed.kubectl(
                APP_CLUSTER, "delete", "-f", str(manifests), "--ignore-not-found", "--wait=false", check=False
            )
        for apiservice in APISERVICES:
            testbed.kubectl(APP_CLUSTER, "delete", "apiservice", apiservice, "--ignore-not-found", check=False)
