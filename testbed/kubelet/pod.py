"""One Pod bound to the runner's Node, run as the kubelet runs it.

Fills the volumes, runs the container with podman from local storage (host network, its own pod
IP, the pod's user, read-only root when asked, capabilities dropped), polls its probes, restarts
it with the kubelet's back-off after an exit or a liveness failure, and writes what it sees to
the Pod's ``status`` subresource (phase, conditions, containerStatuses, podIP) and to the
runner's status file. Termination is the kubelet's: SIGTERM, the grace period, SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from testbed import podman
from testbed.kubelet import podip, probes
from testbed.kubelet.api import Api, ApiError
from testbed.kubelet.node import HOST_IP, now_rfc3339
from testbed.kubelet.spec import PodTemplate, Probe, SpecError
from testbed.kubelet.volumes import ConfigError, Filled, Filler, clean, expand

#: The environment variable that makes the connector listen on the pod's address only.
BIND_ENV = "MCP_CONNECTOR_BIND_ADDRESS"
#: The kubelet's crash-loop back-off: 10 s doubling up to 5 min.
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
#: Label on every container a runner starts, so a new runner can clean up after a killed one.
LABEL = "io.mcp-connector.testbed-pod"

Report = Callable[[], None]
Event = Callable[..., None]


class PodWorker:
    """Runs one Pod's container and reports its status until the Pod goes."""

    def __init__(self, api: Api, pod: PodTemplate, *, root: Path, container: str, label: str, ip_label: str,
                 report: Report, event: Event) -> None:  # fmt: skip
        self.api, self.pod, self.root = api, pod, root
        self.container, self.label, self.ip_label = container, label, ip_label
        self._report, self._event = report, event
        self.root.mkdir(parents=True, exist_ok=True)
        self.pod_ip = ""
        self.filler: Filler | None = None
        self.filled: Filled | None = None
        self.running = False
        self.ever_started = False
        self.retry_at = 0.0
        self.backoff = BACKOFF_START
        self.started_at = 0.0
        self.started_rfc = ""
        self.start_time = now_rfc3339()
        self.ready_since = self.start_time
        self.last_terminated: dict[str, Any] | None = None
        self.counts: dict[str, list[int]] = {}
        self.next_probe: dict[str, float] = {}
        self.terminating: asyncio.Task[None] | None = None
        self.pushed: dict[str, Any] | None = None
        self.scheduled_at = now_rfc3339()
        checksum = next((v for k, v in pod.annotations.items() if k.endswith("checksum")), "")
        self.status: dict[str, Any] = {
            "name": pod.name, "uid": pod.uid, "node": pod.node_name, "phase": "Pending", "reason": "Scheduled",
            "message": "", "ready": False, "live": None, "restarts": 0, "revision": pod.revision,
            "checksum": checksum, "image": pod.image, "pod_ip": "", "pod_name": pod.name, "container": "",
            "container_id": "", "exit_code": None, "log": "", "probes": {}, "terminating": False,
        }  # fmt: skip

    # ---- reporting -------------------------------------------------------------------------

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """An event about this pod."""
        self._event(kind, f"{self.pod.name}: {message}", pod=self.pod.name, **extra)

    def report(self, **changes: Any) -> None:
        """Update this pod's status (the runner writes status.json) and its Pod's status in the API."""
        if all(self.status.get(k) == v for k, v in changes.items()):
            return
        if "ready" in changes and changes["ready"] != self.status["ready"]:
            self.ready_since = now_rfc3339()
        self.status.update(changes)
        self._report()

    def api_status(self) -> dict[str, Any]:
        """The Pod's status as the kubelet writes it."""
        s, pod = self.status, self.pod
        ready = bool(s["ready"]) and self.running

        def cond(kind: str, ok: bool, since: str, reason: str = "") -> dict[str, Any]:
            c: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                                 "lastTransitionTime": since}  # fmt: skip
            if reason and not ok:
                c["reason"] = reason
                c["message"] = f"containers with unready status: [{pod.container}]"
            return c

        state: dict[str, Any]
        if self.running:
            state = {"running": {"startedAt": self.started_rfc}}
        else:
            state = {"waiting": {"reason": s["reason"] or "ContainerCreating", "message": s["message"][:1000]}}
        container: dict[str, Any] = {
            "name": pod.container, "image": pod.image, "imageID": "", "ready": ready, "started": self.running,
            "restartCount": s["restarts"], "state": state, "lastState": {},
        }  # fmt: skip
        if s["container_id"]:
            container["containerID"] = f"podman://{s['container_id']}"
        if self.last_terminated:
            container["lastState"] = {"terminated": self.last_terminated}
        status: dict[str, Any] = {
            "phase": "Running" if self.ever_started else "Pending",
            "conditions": [
                cond("PodReadyToStartContainers", True, self.start_time),
                cond("Initialized", True, self.start_time),
                cond("Ready", ready, self.ready_since, "ContainersNotReady"),
                cond("ContainersReady", ready, self.ready_since, "ContainersNotReady"),
                cond("PodScheduled", True, self.scheduled_at),
            ],
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}], "startTime": self.start_time,
            "containerStatuses": [container],
        }  # fmt: skip
        if self.pod_ip:
            status["podIP"], status["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
        return status

    def push(self) -> None:
        """Write the Pod's status subresource when it changed (a merge patch: our lists replace the old)."""
        status = self.api_status()
        if status == self.pushed or self.terminating is not None:
            return
        path = f"/api/v1/namespaces/{quote(self.pod.namespace)}/pods/{quote(self.pod.name)}/status"
        try:
            self.api.merge_patch(path, {"metadata": {"uid": self.pod.uid}, "status": status})
            self.pushed = status
        except ApiError as e:
            if e.status != 404:
                raise

    # ---- the container ---------------------------------------------------------------------

    def container_log(self) -> str:
        """The last lines of the container's output (empty when it never ran)."""
        proc = podman.run("logs", "--tail", "40", self.container, check=False, timeout=30)
        return (proc.stdout + proc.stderr).strip()

    def _podman_args(self, filled: Filled) -> list[str]:
        pod = self.pod
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
        """Stop (SIGTERM, ``grace`` seconds, SIGKILL) and remove the container, if any."""
        podman.run("stop", f"--time={grace}", self.container, check=False, timeout=grace + 30)
        podman.run("rm", "--force", "--ignore", self.container, check=False, timeout=30)
        self.running = False

    def start(self) -> None:
        """Fill volumes and start the container; on failure report why and retry later."""
        pod, now = self.pod, time.monotonic()
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
                self.pod_ip = podip.allocate(self.ip_label)
                self.report(pod_ip=self.pod_ip)
            self.filler = Filler(self.api, pod, self.root, pod_ip=self.pod_ip)
            self.filled = self.filler.fill()
            args = self._podman_args(self.filled)
        except (ConfigError, SpecError, ApiError, podip.PodIpError) as e:
            self.retry_at = now + self.backoff
            reason = "CreateContainerConfigError" if isinstance(e, ConfigError | ApiError) else "InvalidPodSpec"
            reason = "RunContainerError" if isinstance(e, podip.PodIpError) else reason
            self.report(phase="Waiting", reason=reason, message=str(e), ready=False, log="")
            self.event("Warning", f"{reason}: {e}")
            return
        proc = podman.run(*args, check=False, timeout=120)
        if proc.returncode != 0:
            self.retry_at = now + self.backoff
            self.report(phase="Waiting", reason="RunContainerError", message=proc.stderr.strip()[-1000:], ready=False)
            self.event("Warning", f"RunContainerError: {proc.stderr.strip()[-500:]}")
            return
        self.running, self.ever_started, self.started_at, self.started_rfc = True, True, now, now_rfc3339()
        self.counts = {"readiness": [0, 0], "liveness": [0, 0]}
        self.next_probe = {k: now + (getattr(pod, k).initial_delay if getattr(pod, k) else 0) for k in self.counts}
        self.report(phase="Running", reason="Started", message=f"container started on {self.pod_ip}",
                    ready=pod.readiness is None, live=None, exit_code=None, log="",
                    container=self.container, container_id=proc.stdout.strip())  # fmt: skip
        self.event("Normal", f"Started container (image {pod.image}, revision {pod.revision[:12]}, IP {self.pod_ip})",
                   checksum=self.status["checksum"])  # fmt: skip

    def crashed(self, exit_code: int, why: str) -> None:
        """The container ended: report its log, count a restart, back off."""
        log = self.container_log()
        deadline = time.monotonic() + 3
        while not log and time.monotonic() < deadline:  # conmon may not have flushed the last lines yet
            time.sleep(0.2)
            log = self.container_log()
        self.remove_container()
        self.last_terminated = {"exitCode": exit_code, "reason": why, "startedAt": self.started_rfc,
                                "finishedAt": now_rfc3339()}  # fmt: skip
        self.retry_at = time.monotonic() + self.backoff
        self.report(phase="CrashLoopBackOff", reason="CrashLoopBackOff" if why == "Error" else why,
                    exit_code=exit_code, ready=False, log=log, restarts=self.status["restarts"] + 1,
                    message=f"container exited with code {exit_code}; restarting in {self.backoff:.0f}s")  # fmt: skip
        self.event("Warning", f"{why}: exit code {exit_code}; last log lines:\n{log[-2000:]}")
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

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
                log = await asyncio.to_thread(self.container_log)
                message = f"Readiness probe failed: {detail}"
                self.report(ready=False, reason="ReadinessProbeFailed", message=message, log=log)
                self.event("Warning", f"{message}; last log lines:\n{log[-1500:]}")
        else:
            self.report(live=passed or counts[1] < spec.failure_threshold)
            if not passed and counts[1] >= spec.failure_threshold:
                self.event("Warning", f"Liveness probe failed {counts[1]} times: {detail}; restarting the container")
                await asyncio.to_thread(self.crashed, -1, "LivenessProbeFailed")

    async def tick(self) -> None:
        """One round: start, watch the container, probe, refresh tokens, then write the Pod's status."""
        if self.terminating is not None:
            return
        now = time.monotonic()
        if not self.running:
            if now >= self.retry_at:
                await asyncio.to_thread(self.start)
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
                    spec = getattr(self.pod, kind)
                    if spec is not None and self.running and self.terminating is None:
                        await self.probe(kind, spec)
                if self.filler and self.filled and now >= self.filled.refresh_due:
                    self.filled.refresh_due = await asyncio.to_thread(self.filler.refresh_tokens)
                    self.event("Normal", "Refreshed projected ServiceAccount token")
        if self.terminating is None:
            await asyncio.to_thread(self.push)

    # ---- the end ---------------------------------------------------------------------------

    def terminate(self, grace: int, *, delete: bool) -> asyncio.Task[None]:
        """Stop the container gracefully in the background; with ``delete``, then delete the Pod (grace 0)."""
        if self.terminating is None:
            self.report(terminating=True, ready=False, reason="Killing",
                        message=f"stopping the container (grace {grace}s)")  # fmt: skip
            self.event("Normal", f"Killing: stopping container with a grace period of {grace}s")
            self.terminating = asyncio.get_running_loop().create_task(self._terminate(grace, delete))
        return self.terminating

    async def _terminate(self, grace: int, delete: bool) -> None:
        await asyncio.to_thread(self.remove_container, grace)
        if self.pod_ip:
            await asyncio.to_thread(podip.release, self.pod_ip)
        clean(self.root)
        if delete:
            path = f"/api/v1/namespaces/{quote(self.pod.namespace)}/pods/{quote(self.pod.name)}"
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.pod.uid}}  # fmt: skip
            try:
                await asyncio.to_thread(self.api.delete, path, body)
            except ApiError as e:
                if e.status != 409:  # 409: a Pod of the same name but another uid; not ours to delete
                    raise
        self.report(phase="Terminated", reason="Killed", message="container stopped", ready=False)
        self.event("Normal", "Stopped" + (" and deleted the Pod" if delete else ""))
