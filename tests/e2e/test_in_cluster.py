"""In-cluster mode for real: `pulumi up` renders the Deployment, the pod runner runs it from the
image `make image` built, and the connector serves the app cluster as its own ServiceAccount.

The pod runner (testbed.kubelet) fills the pod's volumes from the API (Secrets, a projected
token from the TokenRequest API, the cluster CA, the namespace), runs the container with podman
(host network, read-only root, user 65532), relays the Service's ClusterIP to it and publishes
its readiness as an EndpointSlice, so the aggregator routes to it as to a pod.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from claims import wait_available
from component_stack import Program, Setting, open_stack
from pulumi import automation as auto

from mcp_connector.core import contract
from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector_component.credentials import to_kubeconfig
from testbed import APP_CLUSTER, CONTROL_PLANE, podman
from testbed.harness import Testbed
from testbed.kubelet import PodRunner
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAME = "mcp-incluster"
NAMESPACE = "kube-system"
SA_OLD, SA_NEW = "mcp-incluster-old", "mcp-incluster-new"
CLAIM = Path(__file__).resolve().parents[2] / "testbed/crossplane/kubernetescluster/claim.yaml"
APISERVICE = "v1alpha1.k8s.starter.org"


@dataclass
class Deployed:
    testbed: Testbed
    stack: auto.Stack
    setting: Setting
    runner: PodRunner
    cluster_id: str
    app_namespace: str

    def claim(self, name: str) -> contract.AppRef:
        """Apply the seed claim as ``name`` (connection Secret ``<name>-kubeconfig``) through the app
        cluster; its app-side reference.

        First waits until the aggregator serves the claim API again and kubectl can map its kind: a
        pod that just became ready (or a new container) is found Available by the aggregator a
        moment later, and discovery catches up after that.
        """
        wait_available(self.testbed, APISERVICE, timeout=90)
        text = CLAIM.read_text().replace("name: my-cluster\n", f"name: {name}\n", 1)
        text = text.replace("name: my-cluster-kubeconfig\n", f"name: {name}-kubeconfig\n", 1)
        self.testbed.kubectl(APP_CLUSTER, "apply", "-n", self.app_namespace, "-f", "-", input=text)
        return contract.AppRef(self.cluster_id, self.app_namespace, name)

    def cp_claim(self, ref: contract.AppRef) -> dict[str, object]:
        """The claim in the control plane (raises while it is not there)."""
        hashed = contract.control_plane_name(ref)
        found: dict[str, object] = self.testbed.kubectl_json(
            CONTROL_PLANE, "get", "kubernetesclusters.k8s.starter.org", hashed, "-n", self.testbed.claim_namespace
        )
        return found


def _log(line: str) -> None:
    sys.stdout.write(line)


def _sa_kubeconfig(testbed: Testbed, service_account: str) -> str:
    """A control-plane kubeconfig with a fresh token of ``service_account`` (cluster-admin)."""
    ns = testbed.claim_namespace
    testbed.kubectl(CONTROL_PLANE, "create", "serviceaccount", service_account, "-n", ns, check=False)
    testbed.kubectl(CONTROL_PLANE, "create", "clusterrolebinding", service_account, "--clusterrole=cluster-admin",
                    f"--serviceaccount={ns}:{service_account}", check=False)  # fmt: skip
    token = testbed.kubectl(CONTROL_PLANE, "create", "token", service_account, "-n", ns, "--duration=2h").stdout
    access = ControlPlaneAccess(
        url=testbed.control_plane.apiserver_url, token=token.strip(), ca_pem=testbed.control_plane.ca_cert.read_bytes()
    )
    return to_kubeconfig(access, name="e2e")


#: The component's default replica count, which this module's install keeps.
REPLICAS = 2


def _pods_log(runner: PodRunner) -> str:
    """Every pod's container output: two replicas by default, and only the leader copies Secrets."""
    return "".join(runner.container_log(pod["name"]) for pod in runner.pods())


@pytest.fixture(scope="module")
def deployed(testbed: Testbed, pulumi_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    image = podman.image_ref()
    if not podman.image_exists(image):
        pytest.fail(f"image {image} is not in local container storage: run make image", pytrace=False)
    app_namespace = f"incluster-{uuid.uuid4().hex[:6]}"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", app_namespace)
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name=NAME,
        args={
            "claim_namespace": testbed.claim_namespace,
            "control_plane_kubeconfig": _sa_kubeconfig(testbed, SA_OLD),
            "include": ["kubernetesclusters.k8s.starter.org"],
            "image": image,
        },
    )
    stack = open_stack(tmp_path_factory.mktemp("incluster") / "pulumi", Program(setting), "incluster")
    # Started before up: Pulumi awaits the Deployment, Available once the runner's pod is ready.
    runner = PodRunner.start(NAMESPACE, NAME)
    try:
        up = stack.up(on_output=_log)
        assert runner.ready_pods(), "up returned only once the pod was ready"
        yield Deployed(testbed, stack, setting, runner, up.outputs["clusterId"].value, app_namespace)
    finally:
        try:
            stack.destroy(run_program=True, on_output=_log)
        finally:
            runner.stop()
        stack.workspace.remove_stack("incluster")
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_namespace, "--wait=false", check=False)
        for sa in (SA_OLD, SA_NEW):
            testbed.kubectl(CONTROL_PLANE, "delete", "clusterrolebinding", sa, check=False)
            testbed.kubectl(CONTROL_PLANE, "delete", "serviceaccount", sa, "-n", testbed.claim_namespace, check=False)


def test_the_rendered_pod_serves_claims_as_its_own_service_account(deployed: Deployed) -> None:
    testbed, runner = deployed.testbed, deployed.runner
    # The two probes run apart: "live" is None until the first liveness probe has run.
    status = runner.wait(lambda s: s["ready"] and s["live"], timeout=90, what="the connector pod to be ready and live")
    assert status["probes"]["readiness"]["passed"] and status["probes"]["liveness"]["passed"]

    container = json.loads(podman.run("inspect", status["container"]).stdout)[0]
    assert container["Config"]["User"] == "65532:65532"
    assert container["HostConfig"]["ReadonlyRootfs"] is True
    assert [container["Path"], *container["Args"]][:2] == ["mcp-connector", "serve"]
    assert not any("app-kubeconfig" in a for a in container["Args"]), "in-cluster: the pod's ServiceAccount"
    mounts = {m["Destination"] for m in container["Mounts"]}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts

    testbed.kubectl(APP_CLUSTER, "wait", "--for=condition=Available", "--timeout=60s", f"apiservice/{APISERVICE}")
    ref = deployed.claim("seeded")
    claim = eventually(lambda: deployed.cp_claim(ref), timeout=30, what="the claim in the control plane")
    assert contract.app_ref_of(claim) == ref  # type: ignore[arg-type]
    # The connector logs a request once it has answered it, and podman hands the log on after that.
    eventually(lambda: '"verb":"create"' in (log := _pods_log(runner)) and '"code":201' in log,
               what="the in-cluster connector's log of serving the create")  # fmt: skip


def test_a_missing_permission_fails_a_named_operation_and_restoring_it_recovers(deployed: Deployed) -> None:
    testbed, runner, app_namespace = deployed.testbed, deployed.runner, deployed.app_namespace
    runner.wait(lambda s: s["ready"], timeout=60, what="the connector pod to be ready")
    role = testbed.kubectl_json(APP_CLUSTER, "get", "clusterrole", NAME)
    secrets_rule = role["rules"].index(next(r for r in role["rules"] if r["resources"] == ["secrets"]))
    verbs = role["rules"][secrets_rule]["verbs"]

    def set_verbs(new: list[str]) -> None:
        patch = [{"op": "replace", "path": f"/rules/{secrets_rule}/verbs", "value": new}]
        testbed.kubectl(APP_CLUSTER, "patch", "clusterrole", NAME, "--type=json", "-p", json.dumps(patch))

    set_verbs([v for v in verbs if v != "list"])
    try:
        ref = deployed.claim("with-secret")
        cp_claim = eventually(lambda: deployed.cp_claim(ref), timeout=30, what="the claim in the control plane")
        source = cp_claim["spec"]["writeConnectionSecretToRef"]["name"]  # type: ignore[index]
        # Crossplane writes the connection Secret in the control plane (owned by the claim: the
        # connector copies only such a Secret); a hand-made one would race it and never be copied.
        eventually(lambda: testbed.kubectl_json(CONTROL_PLANE, "get", "secret", source, "-n", testbed.claim_namespace),
                   timeout=60, what="Crossplane to write the claim's connection Secret")  # fmt: skip
        user = f"system:serviceaccount:{NAMESPACE}:{NAME}"
        expected = (  # a list narrowed to the copy's name: the apiserver names it
            'forbade the request (HTTP 403): secrets \\"with-secret-kubeconfig\\" is forbidden: '
            f'User \\"{user}\\" cannot list resource'
        )
        try:
            eventually(lambda: expected in _pods_log(runner), timeout=90, what=f"log line containing {expected}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nconnector log:\n{_pods_log(runner)[-4000:]}") from None
        line = next(x for x in _pods_log(runner).splitlines() if expected in x)
        assert '"loop":"connection-secrets"' in line and '"msg":"reconcile failed"' in line
        absent = testbed.kubectl(APP_CLUSTER, "get", "secret", "with-secret-kubeconfig", "-n", app_namespace,
                                 check=False)  # fmt: skip
        assert absent.returncode != 0, "nothing is copied while the permission is missing"
    finally:
        set_verbs(verbs)
    try:
        copied = eventually(
            lambda: testbed.kubectl_json(APP_CLUSTER, "get", "secret", "with-secret-kubeconfig", "-n", app_namespace),
            timeout=60, what="the connection Secret to be copied once the permission is back",
        )  # fmt: skip
    except AssertionError as e:
        raise AssertionError(f"{e}\nconnector log:\n{_pods_log(runner)[-4000:]}") from None
    original = testbed.kubectl_json(CONTROL_PLANE, "get", "secret", source, "-n", testbed.claim_namespace)
    assert copied["data"] == original["data"]


def test_token_rotation_restarts_the_container_and_the_new_token_is_used(deployed: Deployed) -> None:
    testbed, runner = deployed.testbed, deployed.runner
    before = runner.wait(lambda s: s["ready"], timeout=60, what="the connector pod to be ready")
    deployed.setting.args["control_plane_kubeconfig"] = _sa_kubeconfig(testbed, SA_NEW)
    deployed.stack.up(on_output=_log)
    # up returned once the rollout was done: the ReplicaSet controller's new pods are ready, the old
    # ones were stopped (SIGTERM, their grace period) and deleted. Two replicas by default.
    after = runner.wait(
        lambda s: s["checksum"] != before["checksum"] and len(s["pods"]) == REPLICAS
        and all(p["checksum"] == s["checksum"] and p["ready"] for p in s["pods"]),
        timeout=90, what="only the new checksum's pods, ready",
    )  # fmt: skip
    assert after["revision"] != before["revision"] and after["container_id"] != before["container_id"]
    assert after["pod_name"] != before["pod_name"]
    stopped = [e for e in runner.events() if e.get("pod") == before["pod_name"]]
    assert any("Killing" in e["message"] for e in stopped) and any("deleted the Pod" in e["message"] for e in stopped)

    # Revoke the old token: only the new one can still reach the control plane.
    testbed.kubectl(CONTROL_PLANE, "delete", "serviceaccount", SA_OLD, "-n", testbed.claim_namespace)
    ref = deployed.claim("after-rotation")
    eventually(lambda: deployed.cp_claim(ref), timeout=30, what="a claim created with the new token")
