"""The pod runner's pure parts: reading a Pod template and the kubelet's $(VAR) expansion."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from testbed.kubelet.spec import SpecError, from_deployment  # noqa: E402
from testbed.kubelet.volumes import expand  # noqa: E402


def _deployment(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "c"}, "annotations": {"x/config-checksum": "abc"}},
                "spec": {
                    "serviceAccountName": "sa",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532},
                    "containers": [{"name": "c", "image": "img", **container}],
                },
            }
        },
    }


def test_template_is_read_with_the_kubelet_defaults() -> None:
    pod = from_deployment(
        _deployment(
            ports=[{"name": "https", "containerPort": 8443}],
            readinessProbe={"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"}},
            securityContext={"readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        )
    )
    assert (pod.run_as_user, pod.run_as_group) == (65532, 65532)
    assert pod.read_only_root and pod.drop_all_capabilities
    probe = pod.readiness
    assert probe is not None and (probe.port, probe.period, probe.failure_threshold) == (8443, 10.0, 3)
    assert pod.automount_token and pod.service_account == "sa" and pod.grace_seconds == 30
    assert pod.revision != from_deployment(_deployment(args=["--x"])).revision, "any template change is a rollout"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"livenessProbe": {"exec": {"command": ["true"]}}}, "only httpGet probes"),
        ({"readinessProbe": {"httpGet": {"port": "nope"}}}, "names no container port"),
    ],
)
def test_what_the_runner_cannot_do_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        from_deployment(_deployment(**change))


def test_non_root_without_a_user_is_refused() -> None:
    deployment = _deployment()
    del deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    with pytest.raises(SpecError, match="runAsNonRoot"):
        from_deployment(deployment)


def test_expand_is_the_kubelets() -> None:
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-x-$(C)-$(A)"
