"""The pod runner: plays the kubelet (and kube-proxy) for one Deployment of the app cluster.

It reads the Deployment's Pod template, fills the volumes as the kubelet does, runs the
container with podman from local storage (host network, the pod's user, read-only root when
asked, capabilities dropped), polls its probes and reports everything to ``status.json``,
``events.jsonl`` and its own log. A changed template (e.g. the checksum annotation after a token
rotation) replaces the container, as a rollout replaces the pod; a liveness failure or an exit
restarts it with the kubelet's back-off. Each failure is reported with a reason, a message and
the container's own log, never by hanging.

One departure from the spec: the host network stands in for the pod's network namespace, so
the pod gets an address of its own on the loopback range and the connector is told to listen
there (``MCP_CONNECTOR_BIND_ADDRESS``), instead of on every address of the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import random
import socket
import time
from pathlib import Path
from typing import Any

from testbed import STATE_DIR, podman
from testbed.kubelet import probes
from testbed.kubelet.api import Api, ApiError
from testbed.kubelet.proxy import Proxy, Route
from testbed.kubelet.spec import PodTemplate, Probe, SpecError, from_deployment
from testbed.kubelet.volumes import ConfigError, Filled, Filler, clean, expand
from testbed.state import TestbedState

#: The environment variable that makes the connector listen on the pod's address only.
BIND_ENV = "MCP_CONNECTOR_BIND_ADDRESS"
#: The kubelet's crash-loop back-off: 10 s doubling up to 5 min.
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
TICK = 0.5
LOG_LINES = 40
SLICES = "/apis/discovery.k8s.io/v1"
MANAGED_BY = "testbed.kubelet"
#: Label on every container a runner starts, so a new runner can clean up after a killed one.
LABEL = "io.mcp-connector.testbed-pod"


def pod_root(namespace: str, deployment: str, state_dir: Path = STATE_DIR) -> Path:
    """Where one Deployment's runner keeps status, events, log and volumes."""
    return state_dir / "pods" / f"{namespace}.{deployment}"


def container_name(namespace: str, deployment: str, root: Path) -> str:
    """The podman name of a runner's container: unique per test bed (container storage is shared)."""
    instance = hashlib.sha256(str(root.parent.parent.resolve()).encode()).hexdigest()[:8]
    return f"testbed-{instance}-{namespace}-{deployment}"


def _choose_pod_ip(ports: list[int]) -> str:
    """A random loopback address on which none of the pod's ports is taken."""
    for _ in range(50):
        ip = f"127.{random.randint(200, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind((ip, port))
        except OSError:
            continue
        return ip
    raise RuntimeError("no free loopback address for the pod")


class Runner:
    """Runs one Deployment's pod until stopped."""

    def __init__(self, state: TestbedState, namespace: str, deployment: str, *, state_dir: Path = STATE_DIR) -> None:
        self.api = Api(state.app_cluster)
        self.namespace, self.deployment = namespace, deployment
        self.root = pod_root(namespace, deployment, state_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.container = container_name(namespace, deployment, self.root)
        self.label = self.container
        self.pod: PodTemplate | None = None
        self.pod_ip = ""
        self.filler: Filler | None = None
        self.filled: Filled | None = None
        self.proxy = Proxy()
        self.running = False
        self.retry_at = 0.0
        self.backoff = BACKOFF_START
        self.started_at = 0.0
        self.counts: dict[str, list[int]] = {}  # probe -> [successes, failures] in a row
        self.next_probe: dict[str, float] = {}
        self.next_services = 0.0
        self.published: set[str] = set()
        self.published_ready: bool | None = None
        self.status: dict[str, Any] = {
            "deployment": f"{namespace}/{deployment}",
            "phase": "Pending",
            "reason": "",
            "message": "",
            "ready": False,
            "live": None,
            "restarts": 0,
            "revision": "",
            "checksum": "",
            "image": "",
            "pod_ip": "",
            "pod_name": "",
            "container": "",
            "container_id": "",
            "exit_code": None,
            "log": "",
            "probes": {},
            "services": [],
            "generation": 0,
        }

    # ---- reporting -------------------------------------------------------------------------

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """Record one event (events.jsonl) and print it (the runner's log)."""
        record = {"time": time.time(), "type": kind, "message": message, **extra}
        with (self.root / "events.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[pod {self.namespace}/{self.deployment}] {kind}: {message}", flush=True)

    def report(self, **changes: Any) -> None:
        """Update status.json (atomically) when something changed."""
        if all(self.status.get(k) == v for k, v in changes.items()):
            return
        self.status.update(changes, generation=self.status["generation"] + 1, updated=time.time())
        tmp = self.root / "status.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.root / "status.json")

    def container_log(self) -> str:
        """The last lines of the container's own output."""
        # Not --tail: podman 4.3 returns nothing for it on a k8s-file log.
        proc = podman.run("logs", self.container, check=False, timeout=20)
        return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-LOG_LINES:])

    # ---- the container ---------------------------------------------------------------------

    def _podman_args(self, pod: PodTemplate, filled: Filled) -> list[str]:
        env_file = self.root / "env"
        env = {**filled.env, BIND_ENV: self.pod_ip}
        bad = [k for k, v in env.items() if "\n" in v]
        if bad:
            raise SpecError(f"env values with newlines are not supported by the runner: {bad}")
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        args = [
            "run", "--detach", "--name", self.container, "--label", f"{LABEL}={self.label}",
            "--pull=never", "--network=host", "--log-driver=k8s-file", *podman.ULIMITS,
            f"--stop-timeout={pod.grace_seconds}", f"--env-file={env_file}",
        ]  # fmt: skip
        if pod.read_only_root:
            args += ["--read-only", "--read-only-tmpfs=false"]
        if pod.run_as_user is not None:
            args += ["--user", f"{pod.run_as_user}:{pod.run_as_group if pod.run_as_group is not None else 0}"]
        if pod.drop_all_capabilities:
            args += ["--cap-drop=all"]
        if pod.no_new_privileges:
            args += ["--security-opt=no-new-privileges"]
        for host, path, read_only in filled.mounts:
            args += ["--volume", f"{host}:{path}:{'ro' if read_only else 'rw'}"]
        if pod.command is not None:
            args += ["--entrypoint", json.dumps([expand(c, env) for c in pod.command])]
        return [*args, pod.image, *(expand(a, env) for a in pod.args)]

    def remove_container(self, grace: int = 0) -> None:
        """Stop and remove our container, if any."""
        podman.run("stop", f"--time={grace}", self.container, check=False, timeout=grace + 30)
        podman.run("rm", "--force", "--ignore", self.container, check=False, timeout=30)
        self.running = False

    def start(self, pod: PodTemplate) -> None:
        """Fill volumes and start the container; on failure report why and retry later."""
        now = time.monotonic()
        self.remove_container()
        if not podman.image_exists(pod.image):
            self.retry_at = now + self.backoff
            self.report(phase="Waiting", reason="ErrImageNeverPull", ready=False, log="",
                        message=f'Container image "{pod.image}" is not present with pull policy of Never'
                        " (this test bed never pulls: build it with make image)")  # fmt: skip
            self.event("Warning", self.status["message"])
            return
        try:
            if not self.pod_ip:
                self.pod_ip = _choose_pod_ip(sorted(set(pod.ports.values())))
            self.filler = Filler(self.api, pod, self.root, pod_ip=self.pod_ip)
            self.filled = self.filler.fill()
            args = self._podman_args(pod, self.filled)
        except (ConfigError, SpecError, ApiError) as e:
            self.retry_at = now + self.backoff
            reason = "CreateContainerConfigError" if isinstance(e, ConfigError | ApiError) else "InvalidPodSpec"
            self.report(phase="Waiting", reason=reason, message=str(e), ready=False, log="")
            self.event("Warning", f"{reason}: {e}")
            return
        proc = podman.run(*args, check=False, timeout=120)
        if proc.returncode != 0:
            self.retry_at = now + self.backoff
            self.report(phase="Waiting", reason="RunContainerError", message=proc.stderr.strip()[-1000:], ready=False)
            self.event("Warning", f"RunContainerError: {proc.stderr.strip()[-500:]}")
            return
        self.running, self.started_at = True, now
        self.counts = {"readiness": [0, 0], "liveness": [0, 0]}
        self.next_probe = {k: now + (getattr(pod, k).initial_delay if getattr(pod, k) else 0) for k in self.counts}
        self.report(phase="Running", reason="Started", message=f"container started on {self.pod_ip}",
                    ready=pod.readiness is None, live=None, exit_code=None, pod_ip=self.pod_ip, log="",
                    container=self.container, container_id=proc.stdout.strip())  # fmt: skip
        self.event("Normal", f"Started container (image {pod.image}, revision {pod.revision[:12]})",
                   checksum=self.status["checksum"])  # fmt: skip

    def crashed(self, exit_code: int, why: str) -> None:
        """The container ended: report its log, count a restart, back off."""
        log = self.container_log()
        deadline = time.monotonic() + 3
        while not log and time.monotonic() < deadline:  # conmon may not have flushed the last lines yet
            time.sleep(0.2)
            log = self.container_log()
        self.remove_container()
        self.retry_at = time.monotonic() + self.backoff
        self.report(phase="CrashLoopBackOff", reason=why, exit_code=exit_code, ready=False, log=log,
                    restarts=self.status["restarts"] + 1,
                    message=f"container exited with code {exit_code}; restarting in {self.backoff:.0f}s")  # fmt: skip
        self.event("Warning", f"{why}: exit code {exit_code}; last log lines:\n{log[-2000:]}")
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    # ---- probes and services ---------------------------------------------------------------

    async def probe(self, kind: str, spec: Probe) -> None:
        """Run one due probe and act on it as the kubelet does."""
        now = time.monotonic()
        if now < self.next_probe[kind]:
            return
        self.next_probe[kind] = now + spec.period
        passed, detail = await asyncio.to_thread(probes.check, spec, self.pod_ip)
        counts = self.counts[kind]
        counts[:] = [counts[0] + 1, 0] if passed else [0, counts[1] + 1]
        self.report(probes={**self.status["probes"], kind: {"passed": passed, "detail": detail}})
        if kind == "readiness":
            if passed and counts[0] >= spec.success_threshold and not self.status["ready"]:
                self.report(ready=True, reason="Ready", message="readiness probe passed")
                self.event("Normal", f"Ready ({detail})")
            elif (
                not passed
                and (counts[1] >= spec.failure_threshold or not self.status["ready"])
                and (self.status["ready"] or self.status["reason"] != "ReadinessProbeFailed")
            ):
                log = self.container_log()
                message = f"Readiness probe failed: {detail}"
                self.report(ready=False, reason="ReadinessProbeFailed", message=message, log=log)
                self.event("Warning", f"{message}; last log lines:\n{log[-1500:]}")
        else:
            self.report(live=passed or counts[1] < spec.failure_threshold)
            if not passed and counts[1] >= spec.failure_threshold:
                self.event("Warning", f"Liveness probe failed {counts[1]} times: {detail}; restarting the container")
                await asyncio.to_thread(self.crashed, -1, "LivenessProbeFailed")

    def routes(self, pod: PodTemplate) -> list[Route]:
        """ClusterIP Services of the namespace whose selector picks this pod, as relay routes."""
        services = self.api.get(f"/api/v1/namespaces/{self.namespace}/services").get("items") or []
        out = []
        for svc in services:
            spec = svc.get("spec") or {}
            selector = spec.get("selector") or {}
            ip = spec.get("clusterIP") or ""
            if spec.get("type", "ClusterIP") != "ClusterIP" or not selector or ip in ("", "None"):
                continue
            if any(pod.labels.get(k) != v for k, v in selector.items()):
                continue
            if not ipaddress.ip_address(ip).is_loopback:
                raise RuntimeError(f"Service {svc['metadata']['name']} has ClusterIP {ip}, not on loopback:"
                                   " restart the test bed (its service range is on 127/8)")  # fmt: skip
            for port in spec.get("ports") or []:
                target = str(port.get("targetPort", port["port"]))
                target_port = pod.ports.get(target, int(target) if target.isdigit() else 0)
                name = f"{self.namespace}/{svc['metadata']['name']}"
                out.append(Route(name, port.get("name") or "", ip, int(port["port"]), self.pod_ip, target_port))
        return out

    def publish_endpoints(self, routes: list[Route], *, ready: bool) -> None:
        """The EndpointSlice the endpoint controller would write for this pod, ready as the pod is.

        The aggregator only routes to a ClusterIP Service with a ready endpoint for the port; a
        loopback address is not allowed in an IP EndpointSlice, so the pod is named by an FQDN.
        """
        by_service: dict[str, list[Route]] = {}
        for route in routes:
            by_service.setdefault(route.service.split("/", 1)[1], []).append(route)
        wanted = set()
        for service, rs in by_service.items():
            name = f"{service}-testbed-pod"
            wanted.add(name)
            self.api.apply(f"{SLICES}/namespaces/{self.namespace}/endpointslices/{name}", {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": self.namespace, "labels": {
                    "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
                "addressType": "FQDN",
                "endpoints": [{"addresses": [f"{self.status['pod_name']}.pods.testbed.invalid"],
                               "conditions": {"ready": ready}}],
                "ports": [{"name": r.port_name, "port": r.target_port, "protocol": "TCP"} for r in rs],
            })  # fmt: skip
        for name in self.published - wanted:
            self.api.delete(f"{SLICES}/namespaces/{self.namespace}/endpointslices/{name}")
        self.published = wanted

    # ---- the loop --------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: follow the Deployment, the container, its probes, tokens and Services."""
        try:
            deployment = await asyncio.to_thread(
                self.api.get, f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{self.deployment}"
            )
            pod = from_deployment(deployment)
        except ApiError as e:
            if e.status == 404 and self.pod is not None:
                self.event("Normal", "Deployment deleted: stopping the pod")
                await asyncio.to_thread(self.remove_container, self.pod.grace_seconds)
                self.pod = None
            self.report(phase="Pending", reason="NoDeployment" if e.status == 404 else "ApiError", message=str(e),
                        ready=False)  # fmt: skip
            return
        except SpecError as e:
            self.report(phase="Pending", reason="InvalidPodSpec", message=str(e), ready=False)
            return
        now = time.monotonic()
        if self.pod is None or pod.revision != self.pod.revision:
            if self.pod is not None:
                self.event("Normal", f"Template changed (revision {pod.revision[:12]}): replacing the container")
                await asyncio.to_thread(self.remove_container, self.pod.grace_seconds)
            self.pod, self.backoff, self.retry_at = pod, BACKOFF_START, 0.0
            checksum = next((v for k, v in pod.annotations.items() if k.endswith("checksum")), "")
            self.report(revision=pod.revision, image=pod.image, restarts=0, checksum=checksum, pod_name=pod.pod_name,
                        phase="Pending", reason="NewRevision", message="starting the new revision's container",
                        ready=False, live=None, container_id="", probes={})  # fmt: skip
        if not self.running:
            if now >= self.retry_at:
                await asyncio.to_thread(self.start, pod)
        else:
            state = await asyncio.to_thread(podman.run, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                                            self.container, check=False)  # fmt: skip
            status, _, code = state.stdout.strip().partition(" ")
            if status != "running":
                await asyncio.to_thread(self.crashed, int(code or -1), "Error")
            else:
                if now - self.started_at > 60:
                    self.backoff = BACKOFF_START  # ran long enough: the kubelet forgets the back-off
                for kind in ("readiness", "liveness"):
                    spec = getattr(pod, kind)
                    if spec is not None and self.running:
                        await self.probe(kind, spec)
                if self.filler and self.filled and now >= self.filled.refresh_due:
                    self.filled.refresh_due = await asyncio.to_thread(self.filler.refresh_tokens)
                    self.event("Normal", "Refreshed projected ServiceAccount token")
        ready = bool(self.status["ready"]) and self.running
        if self.pod_ip and (now >= self.next_services or ready != self.published_ready):
            self.next_services = now + 2.0
            try:
                routes = await asyncio.to_thread(self.routes, pod)
                await self.proxy.sync(routes)
                await asyncio.to_thread(self.publish_endpoints, routes, ready=ready)
                self.published_ready = ready
                self.report(services=[str(r) for r in routes])
            except (ApiError, RuntimeError, OSError) as e:
                self.report(services=[f"error: {e}"])

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then remove the container and stop relaying."""
        for stale in podman.run("ps", "--all", "--quiet", "--filter", f"label={LABEL}={self.label}",
                                check=False).stdout.split():  # fmt: skip
            podman.run("rm", "--force", stale, check=False)
        (self.root / "events.jsonl").unlink(missing_ok=True)
        self.report(phase="Pending", reason="Starting", message="runner started")
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
            grace = self.pod.grace_seconds if self.pod else 0
            await asyncio.to_thread(self.remove_container, grace)
            await self.proxy.close()
            with contextlib.suppress(ApiError):
                await asyncio.to_thread(self.publish_endpoints, [], ready=False)
            clean(self.root)
            self.report(phase="Stopped", reason="RunnerStopped", ready=False, message="runner stopped")
