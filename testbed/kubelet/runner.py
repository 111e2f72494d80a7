"""The pod runner: plays the kubelet, the scheduler and kube-proxy for one Deployment's pods.

The app cluster runs kube-controller-manager, so the Deployment and ReplicaSet controllers make
the Pods, the EndpointSlice controller publishes their IPs and the node lifecycle controller
watches the Node. The runner does the rest, as the missing parts would:

- kubelet registration: a Node for this host, Ready, with a Lease heartbeat (``node.py``);
- scheduler: each Pod of the Deployment's ReplicaSets that has no node is bound to that Node
  with the ``pods/binding`` subresource;
- kubelet: each Pod bound to the Node runs in its own container with its own pod IP
  (``pod.py``, ``podip.py``); its status (phase, conditions, containerStatuses, podIP) goes to
  ``pods/status``, so the Deployment becomes Available from the real controllers' counting; a Pod
  being deleted gets SIGTERM, its grace period, SIGKILL, and is then deleted with grace 0;
- kube-proxy: each ClusterIP Service that selects the pods is relayed from its ClusterIP:port to
  a ready endpoint of its EndpointSlices (``proxy.py``).

Everything it sees is reported to ``status.json`` (the newest pod at the top level, every pod
under ``pods``), ``events.jsonl`` and its own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from testbed import STATE_DIR, podman
from testbed.kubelet import podip
from testbed.kubelet.api import Api, ApiError
from testbed.kubelet.node import Node
from testbed.kubelet.pod import LABEL, PodWorker
from testbed.kubelet.proxy import Backend, Proxy, Route
from testbed.kubelet.spec import SpecError, from_pod
from testbed.kubelet.volumes import clean
from testbed.state import TestbedState

TICK = 0.5
SLICES = "/apis/discovery.k8s.io/v1"
#: Keys of a pod's status mirrored at the top of status.json (the newest pod's).
POD_KEYS = ("phase", "reason", "message", "ready", "live", "restarts", "revision", "checksum", "image", "pod_ip",
            "pod_name", "container", "container_id", "exit_code", "log", "probes")  # fmt: skip


def pod_root(namespace: str, deployment: str, state_dir: Path = STATE_DIR) -> Path:
    """Where one Deployment's runner keeps status, events, log and its pods' volumes."""
    return state_dir / "pods" / f"{namespace}.{deployment}"


def _instance(root: Path) -> str:
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def node_name(namespace: str, deployment: str, root: Path) -> str:
    """The runner's Node: one per runner, unique per test bed (a label value: at most 63 characters)."""
    return f"testbed-{_instance(root)}-{deployment}"[:63].rstrip("-.")


def container_name(namespace: str, pod: str, root: Path) -> str:
    """The podman name of a pod's container: unique per test bed (container storage is shared)."""
    return f"testbed-{_instance(root.parent.parent)}-{namespace}-{pod}"


def _controller(obj: dict[str, Any]) -> tuple[str, str]:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref["kind"], ref["name"]
    return "", ""


class Runner:
    """Runs one Deployment's pods until stopped."""

    def __init__(self, state: TestbedState, namespace: str, deployment: str, *, state_dir: Path = STATE_DIR) -> None:
        self.api = Api(state.app_cluster)
        self.namespace, self.deployment = namespace, deployment
        self.root = pod_root(namespace, deployment, state_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        instance = _instance(self.root)
        self.label = f"testbed-{instance}"
        self.ip_label = f"lo:tb{instance}"
        self.node = Node(self.api, node_name(namespace, deployment, self.root))
        self.workers: dict[str, PodWorker] = {}  # by Pod uid
        self.created: dict[str, str] = {}  # uid -> creationTimestamp
        self.proxy = Proxy()
        self.next_services = 0.0
        self.published_ready: tuple[str, ...] = ()
        self._writing = threading.Lock()  # pods report from worker threads
        self.status: dict[str, Any] = {
            "deployment": f"{namespace}/{deployment}", "node": self.node.name,
            "phase": "Pending", "reason": "", "message": "", "ready": False, "live": None, "restarts": 0,
            "revision": "", "checksum": "", "image": "", "pod_ip": "", "pod_name": "", "container": "",
            "container_id": "", "exit_code": None, "log": "", "probes": {}, "services": [], "pods": [],
            "ready_pods": 0, "generation": 0,
        }  # fmt: skip

    # ---- reporting -------------------------------------------------------------------------

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """Record one event (events.jsonl) and print it (the runner's log)."""
        record = {"time": time.time(), "type": kind, "message": message, **extra}
        with (self.root / "events.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[{self.namespace}/{self.deployment}] {kind}: {message}", flush=True)

    def report(self, **changes: Any) -> None:
        """Update status.json (atomically) when something changed: runner fields, then every pod's."""
        with self._writing:
            self._report(changes)

    def _report(self, changes: dict[str, Any]) -> None:
        live = [w for w in self.workers.values() if not w.status["terminating"]]
        newest = max(live, key=lambda w: (self.created.get(w.pod.uid, ""), w.pod.name), default=None)
        if newest is not None:
            changes = {**{k: newest.status[k] for k in POD_KEYS}, **changes}
        elif self.workers:  # only pods being stopped
            changes = {"phase": "Terminating", "reason": "Killing", "ready": False, **changes}
        pods = [dict(w.status) for w in sorted(self.workers.values(), key=lambda w: w.pod.name)]
        changes |= {"pods": pods, "ready_pods": sum(1 for p in pods if p["ready"] and not p["terminating"])}
        if all(self.status.get(k) == v for k, v in changes.items()):
            return
        self.status.update(changes, generation=self.status["generation"] + 1, updated=time.time())
        tmp = self.root / "status.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.root / "status.json")

    # ---- scheduler and kubelet -------------------------------------------------------------

    def _list(self, path: str, **query: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get(path + ("?" + urlencode(query) if query else "")).get("items") or []
        return items

    def our_pods(self) -> list[dict[str, Any]]:
        """Pods of the Deployment's ReplicaSets, and any Pod bound to our Node."""
        ns = quote(self.namespace)
        sets = {rs["metadata"]["name"] for rs in self._list(f"/apis/apps/v1/namespaces/{ns}/replicasets")
                if _controller(rs) == ("Deployment", self.deployment)}  # fmt: skip
        out = []
        for p in self._list(f"/api/v1/namespaces/{ns}/pods"):
            node = (p.get("spec") or {}).get("nodeName")
            kind, owner = _controller(p)
            if node == self.node.name or (not node and kind == "ReplicaSet" and owner in sets):
                out.append(p)
        return out

    def bind(self, pod: dict[str, Any]) -> None:
        """The scheduler's one act: bind the Pod to our Node."""
        name = pod["metadata"]["name"]
        self.api.post(f"/api/v1/namespaces/{quote(self.namespace)}/pods/{quote(name)}/binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "uid": pod["metadata"]["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node.name},
        })  # fmt: skip
        self.event("Normal", f"Scheduled: assigned {self.namespace}/{name} to {self.node.name}", pod=name)

    def worker(self, pod: dict[str, Any]) -> PodWorker | None:
        """The worker of a Pod bound to us (made on first sight); None when its spec cannot be run."""
        meta = pod["metadata"]
        found = self.workers.get(meta["uid"])
        if found is not None:
            return found
        try:
            spec = from_pod(pod)
        except SpecError as e:
            self.report(reason="InvalidPodSpec", message=f"{meta['name']}: {e}")
            return None
        found = PodWorker(self.api, spec, root=self.root / "pods" / meta["name"],
                          container=container_name(self.namespace, meta["name"], self.root),
                          label=self.label, ip_label=self.ip_label, report=self.report, event=self.event)  # fmt: skip
        scheduled = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
        if scheduled and scheduled[0].get("lastTransitionTime"):
            found.scheduled_at = scheduled[0]["lastTransitionTime"]
        self.workers[meta["uid"]] = found
        self.created[meta["uid"]] = meta.get("creationTimestamp", "")
        return found

    async def sync_pods(self) -> None:
        """Bind new Pods, start workers for ours, terminate the ones being deleted or gone."""
        pods = await asyncio.to_thread(self.our_pods)
        seen = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            seen.add(meta["uid"])
            if not spec.get("nodeName"):
                if not meta.get("deletionTimestamp"):
                    await asyncio.to_thread(self.bind, pod)
                continue
            if meta.get("deletionTimestamp"):
                grace = int(meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)))
                w = self.workers.get(meta["uid"])
                if w is None:  # never ran here (or the runner restarted): nothing to stop
                    w = self.worker(pod)
                if w is not None:
                    w.terminate(grace, delete=True)
                continue
            self.worker(pod)
        for uid, w in list(self.workers.items()):
            if uid not in seen and w.terminating is None:
                self.event("Normal", f"{w.pod.name}: the Pod is gone from the API; stopping its container")
                w.terminate(0, delete=False)
            if w.terminating is not None and w.terminating.done():
                with contextlib.suppress(Exception):
                    w.terminating.result()
                del self.workers[uid]
                self.created.pop(uid, None)
        await asyncio.gather(*(w.tick() for w in self.workers.values()))

    # ---- kube-proxy ------------------------------------------------------------------------

    def routes(self) -> dict[Route, list[Backend]]:
        """ClusterIP Services selecting our pods, each port with its ready endpoints from EndpointSlices."""
        ns = quote(self.namespace)
        labels = [w.pod.labels for w in self.workers.values()]
        out: dict[Route, list[Backend]] = {}
        for svc in self._list(f"/api/v1/namespaces/{ns}/services"):
            spec, name = svc.get("spec") or {}, svc["metadata"]["name"]
            selector, ip = spec.get("selector") or {}, spec.get("clusterIP") or ""
            if spec.get("type", "ClusterIP") != "ClusterIP" or not selector or ip in ("", "None"):
                continue
            if not any(all(lb.get(k) == v for k, v in selector.items()) for lb in labels):
                continue
            if not ipaddress.ip_address(ip).is_loopback:
                raise RuntimeError(f"Service {name} has ClusterIP {ip}, not on loopback:"
                                   " restart the test bed (its service range is on 127/8)")  # fmt: skip
            slices = self._list(f"{SLICES}/namespaces/{ns}/endpointslices",
                                labelSelector=f"kubernetes.io/service-name={name}")  # fmt: skip
            for port in spec.get("ports") or []:
                backends = []
                port_name = port.get("name") or ""
                for s in slices:
                    ports = s.get("ports") or []
                    target = next((p.get("port") for p in ports if (p.get("name") or "") == port_name), None)
                    for ep in s.get("endpoints") or []:
                        if target and (ep.get("conditions") or {}).get("ready") is not False:
                            backends += [(a, int(target)) for a in ep.get("addresses") or []]
                out[Route(f"{self.namespace}/{name}", port.get("name") or "", ip, int(port["port"]))] = sorted(backends)
        return out

    async def sync_services(self) -> None:
        """Relay the Services' ClusterIPs to ready endpoints (every 2 s, and at once when readiness changed)."""
        ready = tuple(sorted(w.pod.name for w in self.workers.values() if w.status["ready"]))
        now = time.monotonic()
        if now < self.next_services and ready == self.published_ready:
            return
        self.next_services = now + (0.5 if ready != self.published_ready else 2.0)
        try:
            routes = await asyncio.to_thread(self.routes)
            await self.proxy.sync(routes)
            self.published_ready = ready
            self.report(services=[f"{r} -> {', '.join(f'{a}:{p}' for a, p in b) or 'no ready endpoint'}"
                                  for r, b in routes.items()])  # fmt: skip
        except (ApiError, RuntimeError, OSError) as e:
            self.report(services=[f"error: {e}"])

    # ---- the loop --------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: heartbeat, the Deployment, its pods, the Services."""
        await asyncio.to_thread(self.node.heartbeat)
        try:
            await asyncio.to_thread(
                self.api.get, f"/apis/apps/v1/namespaces/{quote(self.namespace)}/deployments/{quote(self.deployment)}"
            )
            if not self.workers:
                self.report(phase="Pending", reason="NoPods", message="waiting for the ReplicaSet controller's pods",
                            ready=False)  # fmt: skip
        except ApiError as e:
            if not self.workers:
                self.report(phase="Pending", reason="NoDeployment" if e.status == 404 else "ApiError", message=str(e),
                            ready=False)  # fmt: skip
        await self.sync_pods()
        await self.sync_services()
        self.report()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop every container, the relay, and remove the Node."""
        for stale in podman.run("ps", "--all", "--quiet", "--filter", f"label={LABEL}={self.label}",
                                check=False).stdout.split():  # fmt: skip
            podman.run("rm", "--force", stale, check=False)
        podip.release_all(self.ip_label)
        (self.root / "events.jsonl").unlink(missing_ok=True)
        self.report(phase="Pending", reason="Starting", message="runner started")
        await asyncio.to_thread(self.node.register)
        self.event("Normal", f"Registered Node {self.node.name}")
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception as e:  # keep playing the kubelet; say what went wrong
                    self.report(message=f"runner error: {type(e).__name__}: {e}")
                    self.event("Warning", f"runner error: {type(e).__name__}: {e}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK)
        finally:
            tasks = [w.terminate(w.pod.grace_seconds, delete=False) for w in self.workers.values()]
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.proxy.close()
            await asyncio.to_thread(self.node.deregister)
            podip.release_all(self.ip_label)
            for folder in (self.root / "pods").glob("*"):
                clean(folder)
            self.workers.clear()
            self.report(phase="Stopped", reason="RunnerStopped", ready=False, message="runner stopped")
