"""The in-cluster connector's serving certificate replaced and its CA rotated, while the APIService is watched.

The connector runs in-cluster from the image; the pod runner plays the kubelet for the pods the
Deployment controller makes, so a changed pod template is a real rollout (a new pod, ready, before
the old one goes) and Pulumi awaits it. Throughout each ``up`` a prober lists claims through the
app cluster's aggregator (which verifies the connector against the APIService's caBundle) and a
``kubectl get -w`` records every change of the APIService's Available condition. Each step must
serve every request and never leave Available:

1. ``up --replace`` of the serving Secret (same CA): the pods roll (the checksum covers the
   certificate), the caBundle stays.
2. ``up --replace`` of the CA Secret: the new CA joins the caBundle; nothing rolls.
3. ``up --replace`` of the serving Secret again: a certificate from the new CA; the pods roll
   while both CAs are trusted, and the old CA leaves the caBundle after the rollout.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from claims import wait_available
from component_helpers import CLUSTERS, log, stack_for
from component_stack import Program, Setting
from cryptography import x509
from pulumi import automation as auto

from testbed import APP_CLUSTER, REPO_ROOT, podman
from testbed.harness import Testbed
from testbed.kubelet import PodRunner

pytestmark = pytest.mark.e2e

NAME = "mcp-tls"
APISERVICE = "v1alpha1.k8s.starter.org"
KUBECTL = REPO_ROOT / ".venv" / "bin" / "kubectl"


@dataclass
class Watch:
    """Requests through the aggregator and the APIService's Available condition, while an ``up`` runs."""

    testbed: Testbed
    probes: list[tuple[float, bool, str]] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Watch:
        kubeconfig = str(self.testbed.app_cluster.kubeconfig)
        self._watch = subprocess.Popen(
            [str(KUBECTL), "--kubeconfig", kubeconfig, "get", "apiservice", APISERVICE, "-w", "-o",
             "jsonpath={.status.conditions[?(@.type=='Available')].status} "
             "{.status.conditions[?(@.type=='Available')].reason} "
             "{.status.conditions[?(@.type=='Available')].message}{\"\\n\"}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._threads = [threading.Thread(target=self._read, daemon=True), threading.Thread(target=self._probe)]
        for thread in self._threads:
            thread.start()
        return self

    def _read(self) -> None:
        assert self._watch.stdout is not None
        for line in self._watch.stdout:
            if line.strip():
                self.conditions.append(line.strip())

    def _probe(self) -> None:
        while not self._stop.is_set():
            done = self.testbed.kubectl(APP_CLUSTER, "get", CLUSTERS, "-A", "-o", "name", check=False, timeout=20)
            self.probes.append((time.monotonic(), done.returncode == 0, done.stderr.strip()))
            self._stop.wait(0.2)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._threads[1].join(30)
        self._watch.terminate()
        self._watch.wait(10)
        self._threads[0].join(10)  # the reader ends at the pipe's end
        assert self._watch.stdout is not None
        self._watch.stdout.close()

    @property
    def failures(self) -> list[str]:
        return [message for _, ok, message in self.probes if not ok]


def _secret_urns(stack: auto.Stack) -> dict[str, str]:
    resources = stack.export_stack().deployment["resources"]
    return {r["urn"].rsplit("::", 1)[-1]: r["urn"] for r in resources if r["type"] == "kubernetes:core/v1:Secret"}


def _bundle(testbed: Testbed) -> list[str]:
    apiservice = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", APISERVICE)
    pem = base64.b64decode(apiservice["spec"]["caBundle"]).decode()
    end = "-----END CERTIFICATE-----"
    return [f"{c.strip()}\n{end}" for c in pem.split(end) if "BEGIN CERTIFICATE" in c]


def _served_certificate(runner: PodRunner) -> str:
    status = runner.status()
    return ssl.get_server_certificate((status["pod_ip"], 8443), timeout=10).strip()


def _stored_certificate(testbed: Testbed, secret: str) -> str:
    data = testbed.kubectl_json(APP_CLUSTER, "get", "secret", secret, "-n", "kube-system")["data"]
    pem = base64.b64decode(data["tls.crt"]).decode()
    return pem.split("-----END CERTIFICATE-----")[0].strip() + "\n-----END CERTIFICATE-----"


def _ready_revisions(runner: PodRunner) -> set[str]:
    return {str(p["revision"]) for p in runner.ready_pods()}


def _step(testbed: Testbed, stack: auto.Stack, urn: str, what: str) -> Watch:
    """``up --replace urn`` while watched; every request served, the APIService Available throughout."""
    with Watch(testbed) as watch:
        stack.up(on_output=log, replace=[urn])
        wait_available(testbed, APISERVICE, timeout=120)
    assert watch.probes and not watch.failures, f"{what}: {watch.failures}"
    assert all(c.startswith("True") for c in watch.conditions), f"{what}: {watch.conditions}"
    print(f"[figure] {what}: {len(watch.probes)} requests through the aggregator, 0 failed; "
          f"Available: {json.dumps(watch.conditions)}")  # fmt: skip
    return watch


@pytest.mark.timeout(900)
def test_serving_certificate_replaced_and_ca_rotated_while_watched(
    testbed: Testbed, pulumi_tools: None, tmp_path: Path
) -> None:
    image = podman.image_ref()
    if not podman.image_exists(image):
        pytest.fail(f"image {image} is not in local container storage: run make image", pytrace=False)
    setting = Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name=NAME,
        args={
            "control_plane_kubeconfig": testbed.control_plane.kubeconfig.read_text(),
            "claim_namespace": testbed.claim_namespace,
            "cluster_id": str(uuid.uuid4()),
            "include": [CLUSTERS],
            "image": image,
        },
    )
    # Pulumi awaits the Deployment, so the runner plays the kubelet before and during each up.
    with PodRunner.running("kube-system", NAME) as runner, stack_for(tmp_path, Program(setting)) as stack:
        stack.up(on_output=log)
        wait_available(testbed, APISERVICE, timeout=120)
        urns = _secret_urns(stack)
        serving = next(name for name in urns if name.startswith(f"{NAME}-tls-") and name != f"{NAME}-tls-ca")
        (first_ca,) = _bundle(testbed)
        revisions = _ready_revisions(runner)

        _step(testbed, stack, urns[serving], "serving certificate replaced, same CA")
        assert _bundle(testbed) == [first_ca], "same CA: the caBundle did not change"
        assert _ready_revisions(runner) != revisions, "the pods rolled"
        assert _served_certificate(runner) == _stored_certificate(testbed, serving), "the new pods serve it"
        revisions = _ready_revisions(runner)

        _step(testbed, stack, urns[f"{NAME}-tls-ca"], "CA replaced")
        bundle = _bundle(testbed)
        assert len(bundle) == 2 and first_ca in bundle, "old and new CA are both trusted"
        assert _ready_revisions(runner) == revisions, "nothing rolled"
        (new_ca,) = [c for c in bundle if c != first_ca]

        _step(testbed, stack, urns[serving], "serving certificate from the new CA")
        assert _bundle(testbed) == [new_ca], "the old CA left after the rollout"
        assert _ready_revisions(runner) != revisions, "the pods rolled"
        served = x509.load_pem_x509_certificate(_served_certificate(runner).encode())
        served.verify_directly_issued_by(x509.load_pem_x509_certificate(new_ca.encode()))
