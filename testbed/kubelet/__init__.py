"""A pod runner for the test bed: plays the kubelet (and scheduler, kube-proxy) for a Deployment's pods.

``python -m testbed.kubelet start --namespace kube-system --deployment mcp-connector`` runs it
in the background (``stop``, ``status`` likewise); tests use ``PodRunner``. See ``runner.py``.
Start it before ``pulumi up``: Pulumi awaits the Deployment, which becomes Available only when
the runner has run its pods and reported them ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import REPO_ROOT, STATE_DIR
from testbed.kubelet.runner import pod_root
from testbed.waiting import eventually


@dataclass(frozen=True)
class PodRunner:
    """A background runner for one Deployment: read its status, wait on it, stop it.

    ``status()`` describes the newest pod at its top level (phase, reason, message, ready, live,
    restarts, revision, pod_ip, pod_name, container, exit_code, log, probes) and every pod under
    ``pods`` (the same keys plus ``terminating``); ``pods()`` and ``wait_pods()`` read those.
    """

    namespace: str
    deployment: str
    root: Path

    @classmethod
    def start(cls, namespace: str, deployment: str, *, state_dir: Path = STATE_DIR) -> PodRunner:
        """Start a runner in its own session (stopping a previous one) and wait for its first status."""
        root = pod_root(namespace, deployment, state_dir)
        runner = cls(namespace, deployment, root)
        runner.stop()
        root.mkdir(parents=True, exist_ok=True)
        (root / "status.json").unlink(missing_ok=True)
        env = {**os.environ, "MCP_TESTBED_DIR": str(state_dir), "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "testbed.kubelet", "run", "--namespace", namespace, "--deployment", deployment]
        # Detached through sh (as the test bed starts its servers): never a child of a long-lived pytest.
        out = subprocess.run(
            ["/bin/sh", "-c", 'log=$1; shift; "$@" </dev/null >"$log" 2>&1 & echo $!', "sh", str(root / "runner.log"),
             *command],
            capture_output=True, text=True, check=True, env=env, cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
        (root / "pid").write_text(out.stdout.strip())
        eventually(lambda: runner.pid() is not None and (root / "status.json").exists(), timeout=60,
                   what=f"pod runner to start (log: {runner.log()[-1500:]})")  # fmt: skip
        return runner

    @classmethod
    def attach(cls, namespace: str, deployment: str, *, state_dir: Path = STATE_DIR) -> PodRunner:
        """A handle on the runner of ``namespace/deployment`` (running or not), e.g. one started by the CLI."""
        return cls(namespace, deployment, pod_root(namespace, deployment, state_dir))

    @classmethod
    @contextlib.contextmanager
    def running(cls, namespace: str, deployment: str, *, state_dir: Path = STATE_DIR) -> Iterator[PodRunner]:
        """A runner for the ``with`` block (start it before ``pulumi up``, which awaits the pods); stopped after."""
        runner = cls.start(namespace, deployment, state_dir=state_dir)
        try:
            yield runner
        finally:
            runner.stop()

    def pid(self) -> int | None:
        """The runner's pid if it is still running."""
        try:
            pid = int((self.root / "pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            return None
        return pid if b"testbed.kubelet" in cmdline else None

    def status(self) -> dict[str, Any]:
        """The runner's last reported status (status.json)."""
        data: dict[str, Any] = json.loads((self.root / "status.json").read_text())
        return data

    def events(self) -> list[dict[str, Any]]:
        """Every event reported since the runner started."""
        path = self.root / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def pods(self) -> list[dict[str, Any]]:
        """Every pod the runner runs or is stopping (``name``, ``ready``, ``revision``, ``terminating``, ...)."""
        pods: list[dict[str, Any]] = self.status().get("pods") or []
        return pods

    def ready_pods(self) -> list[dict[str, Any]]:
        """The pods that are ready and not terminating."""
        return [p for p in self.pods() if p["ready"] and not p["terminating"]]

    def wait_pods(
        self, check: Callable[[list[dict[str, Any]]], bool], *, timeout: float = 120, what: str = ""
    ) -> list[dict[str, Any]]:
        """Wait until ``check(pods)`` holds, e.g. ``lambda ps: sum(p["ready"] for p in ps) == 2``."""
        status = self.wait(lambda s: check(s.get("pods") or []), timeout=timeout, what=what or "pods")
        pods: list[dict[str, Any]] = status.get("pods") or []
        return pods

    def container_log(self, pod: str | None = None) -> str:
        """The container's own output: of ``pod`` (a Pod name), else of the newest pod (empty when none ran)."""
        from testbed import podman

        status = self.status()
        container = status.get("container", "")
        if pod is not None:
            container = next((p["container"] for p in status.get("pods") or [] if p["name"] == pod), "")
        if not container:
            return ""
        proc = podman.run("logs", container, check=False)
        return proc.stdout + proc.stderr

    def log(self) -> str:
        """The runner's own output."""
        path = self.root / "runner.log"
        return path.read_text() if path.exists() else ""

    def wait(self, check: Callable[[dict[str, Any]], bool], *, timeout: float = 60, what: str = "") -> dict[str, Any]:
        """Wait until ``check(status)`` holds; the failure shows the last status and the runner's log."""

        def ready() -> dict[str, Any] | None:
            if self.pid() is None:
                raise AssertionError(f"pod runner exited; its log:\n{self.log()[-3000:]}")
            status = self.status()
            return status if check(status) else None

        try:
            found = eventually(ready, timeout=timeout, every=0.3, what=what or "pod status")
        except AssertionError as e:
            status = self.status() if (self.root / "status.json").exists() else {}
            raise AssertionError(f"{e}\nstatus: {json.dumps(status, indent=1)[-3000:]}") from None
        assert found is not None
        return found

    def stop(self, timeout: float = 150) -> None:
        """Stop the runner; it stops its containers first (each within its pod's grace period)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        eventually(lambda: self.pid() is None, timeout=timeout, what="pod runner to stop")
