"""The test bed's pod runner on bad input: each case is reported with a reason, a clear message
and the container's own log where there is one, within seconds, never by hanging.

Small Deployments of their own (the connector image with other commands) keep these fast; the
connector's own Deployment, rendered by the component, runs in test_in_cluster.py.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from testbed import APP_CLUSTER, podman
from testbed.harness import Testbed
from testbed.kubelet import PodRunner
from testbed.waiting import eventually

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


SERVER = """
import http.server, os, signal
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path != "/ready" or not os.path.exists("/tmp/unready")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(os.environ["HOSTNAME"].encode())
    def log_message(self, *_):
        pass
http.server.HTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
"""


def _replicated(name: str, image: str, replicas: int) -> str:
    """A Deployment of ``replicas`` small servers that answer with their pod's name, and its Service."""
    container = {
        "command": ["python3", "-c", SERVER],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    manifest = json.loads(deployment(name, image, container, [{"name": "tmp", "emptyDir": {}}]))
    manifest["spec"]["replicas"] = replicas
    manifest["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [manifest, service]})


def _through_service(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:80/", timeout=5) as resp:
        return str(resp.read().decode())


def test_replicas_are_real_pods_the_service_follows_readiness_and_a_rollout_keeps_them_available(
    run: Any, image: str, testbed: Testbed, namespace: str
) -> None:
    """The real Deployment/ReplicaSet/EndpointSlice controllers drive the pods the runner binds and runs."""
    runner = run("multi", _replicated("multi", image, 2))
    pods = runner.wait_pods(lambda ps: sum(p["ready"] for p in ps) == 2, timeout=120, what="two ready pods")
    assert len({p["pod_ip"] for p in pods}) == 2, "each pod has its own IP"
    testbed.kubectl(APP_CLUSTER, "wait", "-n", namespace, "--for=condition=Available", "--timeout=60s",
                    "deployment/multi")  # fmt: skip

    # The API's view, as the kubelet and the scheduler write it.
    node = runner.status()["node"]
    for pod in pods:
        obj = testbed.kubectl_json(APP_CLUSTER, "get", "pod", pod["name"], "-n", namespace)
        assert obj["spec"]["nodeName"] == node and obj["status"]["phase"] == "Running"
        assert obj["status"]["podIP"] == pod["pod_ip"]
        conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
        assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                              "ContainersReady": "True", "PodScheduled": "True"}  # fmt: skip
        (cs,) = obj["status"]["containerStatuses"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    ready = testbed.kubectl_json(APP_CLUSTER, "get", "node", node)["status"]["conditions"]
    assert {c["type"]: c["status"] for c in ready}["Ready"] == "True"
    lease = testbed.kubectl_json(APP_CLUSTER, "get", "lease", node, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == node

    # The Service: the real EndpointSlice controller publishes both pods; the relay reaches both.
    svc_ip = testbed.kubectl_json(APP_CLUSTER, "get", "service", "multi", "-n", namespace)["spec"]["clusterIP"]
    names = {p["name"] for p in pods}
    seen: set[str] = set()
    eventually(lambda: seen.add(_through_service(svc_ip)) or seen == names, timeout=60,
               what=f"both pods answering through {svc_ip}")  # fmt: skip

    # One pod turns unready: its endpoint turns unready and the Service sends nothing more to it.
    unready, other = sorted(names)
    container = next(p["container"] for p in pods if p["name"] == unready)
    podman.run("exec", container, "touch", "/tmp/unready")
    runner.wait_pods(lambda ps: [p["name"] for p in ps if p["ready"]] == [other], timeout=60, what="one pod unready")

    def slice_ready() -> dict[str, bool]:
        slices = testbed.kubectl_json(APP_CLUSTER, "get", "endpointslices", "-n", namespace,
                                      "-l", "kubernetes.io/service-name=multi")["items"]  # fmt: skip
        return {e["targetRef"]["name"]: e["conditions"]["ready"] for s in slices for e in s.get("endpoints") or []}

    eventually(lambda: slice_ready() == {unready: False, other: True}, timeout=60, what="the EndpointSlice to follow")
    eventually(lambda: all(_through_service(svc_ip) == other for _ in range(10)), timeout=30,
               what="the Service to reach the ready pod only")  # fmt: skip
    podman.run("exec", container, "rm", "/tmp/unready")
    runner.wait_pods(lambda ps: sum(p["ready"] for p in ps) == 2, timeout=60, what="both ready again")

    # A rollout: the ReplicaSet controller makes new pods one at a time (maxSurge 1, maxUnavailable 0);
    # two pods are ready throughout, and the old ones are stopped and deleted.
    patch = {"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}
    testbed.kubectl(APP_CLUSTER, "patch", "deployment", "multi", "-n", namespace, "-p", json.dumps(patch))
    fewest = 2

    def rolled(ps: list[dict[str, Any]]) -> bool:
        nonlocal fewest
        fewest = min(fewest, sum(1 for p in ps if p["ready"] and not p["terminating"]))
        return len(ps) == 2 and all(p["ready"] for p in ps) and not {p["name"] for p in ps} & names

    runner.wait_pods(rolled, timeout=180, what="two new ready pods and the old ones gone")
    assert fewest == 2, f"ready pods dropped to {fewest} during the rollout"
    testbed.kubectl(APP_CLUSTER, "rollout", "status", "deployment/multi", "-n", namespace, "--timeout=60s")
    for name in names:
        gone = testbed.kubectl(APP_CLUSTER, "get", "pod", name, "-n", namespace, check=False)
        assert gone.returncode != 0, f"{name} was deleted once its container stopped"
