"""The pod runner's parts that need no cluster: reading a Pod, the status it writes, $(VAR), the relay."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any, cast

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from testbed.kubelet.api import Api  # noqa: E402
from testbed.kubelet.pod import PodWorker  # noqa: E402
from testbed.kubelet.proxy import Proxy, Route  # noqa: E402
from testbed.kubelet.spec import SpecError, from_deployment, from_pod  # noqa: E402
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


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "c-abc-x1",
            "namespace": "ns",
            "uid": "u1",
            "labels": {"app": "c", "pod-template-hash": "abc"},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "connector", "image": "img"}], **spec},
    }


def test_a_pod_is_read_from_its_own_object() -> None:
    pod = from_pod(_pod(terminationGracePeriodSeconds=7))
    assert (pod.name, pod.uid, pod.node_name, pod.revision, pod.container) == (
        "c-abc-x1",
        "u1",
        "n1",
        "abc",
        "connector",
    )
    assert pod.grace_seconds == 7


def test_the_pod_status_is_the_kubelets(tmp_path: Path) -> None:
    worker = PodWorker(cast(Api, None), from_pod(_pod()), root=tmp_path, container="k", label="l", ip_label="lo:t",
                       report=lambda: None, event=lambda *a, **k: None)  # fmt: skip
    pending = worker.api_status()
    assert pending["phase"] == "Pending" and "podIP" not in pending
    assert pending["containerStatuses"][0]["state"] == {"waiting": {"reason": "Scheduled", "message": ""}}
    worker.pod_ip, worker.running, worker.ever_started = "198.18.0.9", True, True
    worker.report(ready=True, container_id="abc123", restarts=1)
    running = worker.api_status()
    conditions = {c["type"]: c["status"] for c in running["conditions"]}
    assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                          "ContainersReady": "True", "PodScheduled": "True"}  # fmt: skip
    (status,) = running["containerStatuses"]
    assert status["ready"] and status["started"] and status["restartCount"] == 1
    assert status["containerID"] == "podman://abc123" and "running" in status["state"]
    assert (running["phase"], running["podIP"], running["podIPs"]) == ("Running", "198.18.0.9", [{"ip": "198.18.0.9"}])
    worker.report(ready=False)
    ready = next(c for c in worker.api_status()["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"


def test_the_relay_reaches_ready_endpoints_only() -> None:
    async def scenario() -> tuple[set[str], bool]:
        async def serve(tag: str) -> asyncio.Server:
            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(tag.encode())
                await writer.drain()
                writer.close()

            return await asyncio.start_server(answer, "127.0.0.1", 0)

        a, b = await serve("a"), await serve("b")
        ports = {tag: s.sockets[0].getsockname()[1] for tag, s in (("a", a), ("b", b))}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            front = s.getsockname()[1]
        route = Route("ns/svc", "http", "127.0.0.1", front)
        proxy = Proxy()

        async def ask() -> str:
            reader, writer = await asyncio.open_connection("127.0.0.1", front)
            data = await reader.read()
            writer.close()
            return data.decode()

        await proxy.sync({route: [("127.0.0.1", ports["a"]), ("127.0.0.1", ports["b"])]})
        both = {await ask() for _ in range(40)}
        await proxy.sync({route: [("127.0.0.1", ports["b"])]})
        only_b = all([await ask() == "b" for _ in range(10)])
        await proxy.sync({route: []})
        refused = await ask() == ""
        await proxy.close()
        a.close()
        b.close()
        return both, only_b and refused

    both, rest = asyncio.run(scenario())
    assert both == {"a", "b"} and rest
