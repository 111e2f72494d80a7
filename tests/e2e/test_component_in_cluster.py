"""McpConnector in-cluster with the pod runner: the scoped identity in a real pod, and a move to another namespace.

The component gets platform credentials, makes the cluster's own control-plane namespace and
token, and renders the Deployment; the pod runner runs it from the image ``make image`` built.
Moving the install to another namespace must give the Service a certificate for its new DNS
name, so the APIServices are Available again once the pod runs there.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from claims import CLUSTER_CLAIM, apply_claim, cp_claim, wait_available
from component_helpers import CLUSTERS, log, stack_for
from component_stack import Program, Setting

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE, podman
from testbed.harness import Testbed
from testbed.kubelet import PodRunner
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAME = "mcp-moving"
APISERVICE = "v1alpha1.k8s.starter.org"


def _available(testbed: Testbed, runner: PodRunner, namespace: str) -> None:
    runner.wait(lambda s: s["ready"], timeout=90, what=f"the connector pod in {namespace} to be ready")
    wait_available(testbed, APISERVICE, timeout=90)


@pytest.mark.timeout(900)
def test_scoped_in_cluster_connector_moves_namespace_and_stays_available(
    testbed: Testbed, pulumi_tools: None, tmp_path: Path
) -> None:
    image = podman.image_ref()
    if not podman.image_exists(image):
        pytest.fail(f"image {image} is not in local container storage: run make image", pytrace=False)
    cluster_id = str(uuid.uuid4())
    namespace = f"mcp-{cluster_id}"
    app_ns = f"e2e-{cluster_id[:8]}"
    moved = f"mcp-moved-{cluster_id[:8]}"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", moved)
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name=NAME,
        args={
            "platform_kubeconfig": testbed.control_plane.kubeconfig.read_text(),
            "cluster_id": cluster_id,
            "include": [CLUSTERS],
            "image": image,
            "on_disconnect": "Release",
        },
    )
    try:
        # Pulumi awaits the Deployment, so the runners play the kubelet before and during each up.
        with (
            PodRunner.running("kube-system", NAME) as runner,
            PodRunner.running(moved, NAME) as moved_runner,
            stack_for(tmp_path, Program(setting)) as stack,
        ):
            stack.up(on_output=log)
            _available(testbed, runner, "kube-system")
            apply_claim(testbed, app_ns, CLUSTER_CLAIM, "m1")
            ref = contract.AppRef(cluster_id, app_ns, "m1-cluster")
            stored = cp_claim(testbed, CLUSTERS, ref, namespace=namespace)
            assert stored is not None and contract.app_ref_of(stored) == ref, "served by the pod, in its own namespace"

            setting.args["namespace"] = moved
            done = stack.up(on_output=log)
            assert "Release: released" not in done.stdout
            apiservice = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", APISERVICE)
            assert apiservice["spec"]["service"]["namespace"] == moved
            _available(testbed, moved_runner, moved)
            runner.wait(lambda s: not s["pods"], timeout=90, what="the old namespace's pod to be gone")
            # The aggregator dropped the group from its discovery while the pod was down and adds it
            # back on its own schedule: kubectl answers "doesn't have a resource type" until then.
            got = eventually(
                lambda: testbed.kubectl_json(APP_CLUSTER, "get", CLUSTERS, ref.name, "-n", ref.namespace),
                timeout=90, what="the claim through the moved connector",
            )  # fmt: skip
            assert got["metadata"]["name"] == ref.name

            destroyed = stack.destroy(run_program=True, on_output=log)
            assert "Release: released 1 claim(s)" in destroyed.stdout
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, moved, "--wait=false", check=False)
        testbed.kubectl(CONTROL_PLANE, "delete", "namespace", namespace, "--wait=false", check=False)
