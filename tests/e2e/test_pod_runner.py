"""The test bed's pod runner on bad input: each case is reported with a reason, a clear message
and the container's own log where there is one, within seconds, never by hanging.

Small Deployments of their own (the connector image with other commands) keep these fast; the
connector's own Deployment, rendered by the component, runs in test_in_cluster.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from testbed import APP_CLUSTER, podman
from testbed.harness import Testbed
from testbed.kubelet import PodRunner

pytestmark = pytest.mark.e2e

NAMESPACE = f"pod-runner-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def image() -> str:
    ref = podman.image_ref()
    if not podman.image_exists(ref):
        pytest.fail(f"image {ref} is not in local container storage: run make image", pytrace=False)
    return ref


@pytest.fixture(scope="module")
def namespace(testbed: Testbed) -> Iterator[str]:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    yield NAMESPACE
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


def deployment(name: str, image: str, container: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> str:
    """A one-replica Deployment as JSON: non-root, read-only root, like the connector's."""
    labels = {"app": name}
    return json.dumps({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532},
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "c", "image": image,
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        **container,
                    }],
                    "volumes": volumes or [],
                },
            },
        },
    })  # fmt: skip


@pytest.fixture
def run(testbed: Testbed, namespace: str) -> Iterator[Any]:
    runners: list[PodRunner] = []

    def start(name: str, manifest: str) -> PodRunner:
        testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=manifest)
        runner = PodRunner.start(namespace, name)
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.stop()
        testbed.kubectl(APP_CLUSTER, "delete", "deployment", runner.deployment, "-n", namespace, check=False)


def test_missing_image_is_reported_not_pulled(run: Any) -> None:
    runner = run("no-image", deployment("no-image", "localhost/mcp-connector:does-not-exist", {}))
    status = runner.wait(lambda s: s["reason"] == "ErrImageNeverPull", timeout=30, what="ErrImageNeverPull")
    assert status["phase"] == "Waiting" and not status["ready"]
    assert '"localhost/mcp-connector:does-not-exist" is not present' in status["message"]
    assert "make image" in status["message"]


def test_a_secret_missing_a_key_crashes_the_connector_with_its_own_log(
    run: Any, image: str, testbed: Testbed, namespace: str
) -> None:
    testbed.kubectl(APP_CLUSTER, "create", "secret", "generic", "creds", "-n", namespace,
                    "--from-literal=not-kubeconfig=x", check=False)  # fmt: skip
    container = {
        "args": ["--control-plane-kubeconfig=/creds/kubeconfig", "--claim-namespace=c", "--cert-dir=/tmp"],
        "volumeMounts": [{"name": "creds", "mountPath": "/creds", "readOnly": True}],
    }
    manifest = deployment("missing-key", image, container, [{"name": "creds", "secret": {"secretName": "creds"}}])
    runner = run("missing-key", manifest)
    status = runner.wait(lambda s: s["phase"] == "CrashLoopBackOff", timeout=60, what="the crash to be reported")
    assert status["exit_code"] == 2
    assert "mcp-connector serve: --control-plane-kubeconfig: /creds/kubeconfig is not a readable file" in status["log"]
    events = [e["message"] for e in runner.events()]
    assert any("exit code 2; last log lines" in m and "/creds/kubeconfig" in m for m in events), events


def test_an_env_key_missing_from_a_secret_stops_before_the_container(
    run: Any, image: str, testbed: Testbed, namespace: str
) -> None:
    testbed.kubectl(APP_CLUSTER, "create", "secret", "generic", "envs", "-n", namespace,
                    "--from-literal=present=x", check=False)  # fmt: skip
    container = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "envs", "key": "absent"}}}]}
    runner = run("missing-env-key", deployment("missing-env-key", image, container))
    status = runner.wait(lambda s: s["reason"] == "CreateContainerConfigError", timeout=30, what="config error")
    assert status["message"] == f"couldn't find key absent in Secret {namespace}/envs"


def test_a_failing_readiness_probe_is_reported_with_the_log(run: Any, image: str) -> None:
    # A server that answers 404 on /readyz: the pod runs but never becomes ready.
    container = {
        "command": ["python3", "-m", "http.server", "8443", "--bind", "$(POD_IP)", "--directory", "/"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8443}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
    }
    runner = run("bad-probe", deployment("bad-probe", image, container))
    status = runner.wait(lambda s: s["reason"] == "ReadinessProbeFailed", timeout=90, what="probe failure")
    assert status["phase"] == "Running" and status["ready"] is False
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in status["message"]
    assert '"GET /readyz HTTP/1.1" 404' in runner.wait(lambda s: "/readyz" in s["log"], timeout=10)["log"]
