"""The runner's Node, registered and kept alive as the kubelet does.

The Node object is created with the kubelet's labels, its status says Ready (with the host's
capacity), and its heartbeat is a Lease in ``kube-node-lease`` renewed every 10 s (the kubelet's
default; the node lifecycle controller marks a node whose Lease is older than its grace period
Unknown and taints it). The status itself is rewritten every minute, as the kubelet reports it
on change or at its report frequency. Stopping deletes the Lease and the Node: the pod GC then
removes pods still bound to it, as for a node that went away.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from typing import Any

from testbed.kubelet.api import Api, ApiError

LEASE_SECONDS = 40
RENEW_EVERY = 10.0
STATUS_EVERY = 60.0
#: The address the Node reports (the pods' hostIP): this host.
HOST_IP = "127.0.0.1"
KUBELET_VERSION = "v1.35.4"
#: The kubelet's node conditions, as a healthy kubelet reports them.
CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "the test bed's pod runner is posting ready status"),
)


def now_rfc3339(micro: bool = False) -> str:
    """The API's timestamp formats (metav1.Time, or MicroTime with ``micro``)."""
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        kib = 4 * 1024 * 1024
    return f"{kib}Ki"


class Node:
    """Registers one Node and renews its Lease; ``heartbeat()`` is called from the runner's loop."""

    def __init__(self, api: Api, name: str) -> None:
        self.api, self.name = api, name
        self.uid = ""
        self.next_renew = 0.0
        self.next_status = 0.0
        self.ready_since = now_rfc3339()

    def register(self) -> None:
        """Create (or take over) the Node and report it Ready."""
        node = self.api.apply(f"/api/v1/nodes/{self.name}", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {
                "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "node.kubernetes.io/testbed": "true"}},
        })  # fmt: skip
        self.uid = node["metadata"]["uid"]
        self.heartbeat(force=True)

    def _status(self) -> dict[str, Any]:
        beat = now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str, since: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": beat, "lastTransitionTime": since}  # fmt: skip

        capacity = {"cpu": str(os.cpu_count() or 1), "memory": _memory(), "pods": "110", "ephemeral-storage": "10Gi"}
        return {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name},
            "status": {
                "conditions": [
                    condition(kind, status, reason, message, self.ready_since)
                    for kind, status, reason, message in CONDITIONS
                ],
                "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.name}],
                "capacity": capacity, "allocatable": capacity,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": os.uname().release,
                    "osImage": "test bed", "containerRuntimeVersion": "podman://", "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                },
            },
        }  # fmt: skip

    def heartbeat(self, *, force: bool = False) -> None:
        """Renew the Lease when due, and rewrite the status when due."""
        now = time.monotonic()
        if force or now >= self.next_status:
            self.api.apply_status(f"/api/v1/nodes/{self.name}/status", self._status())
            self.next_status = now + STATUS_EVERY
        if force or now >= self.next_renew:
            self.api.apply(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease", "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}]},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": now_rfc3339(micro=True)},
            })  # fmt: skip
            self.next_renew = now + RENEW_EVERY

    def deregister(self) -> None:
        """Delete the Lease and the Node."""
        for path in (f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}",
                     f"/api/v1/nodes/{self.name}"):  # fmt: skip
            with contextlib.suppress(ApiError):
                self.api.delete(path)
