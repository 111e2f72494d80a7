"""``mcp-connector rollout`` over stacks of the root program against the test bed's app cluster.

Three stacks of (a copy of) the root program, each a connector install of its own: its own
cluster ID, name and namespace, and its own claim API group, since APIService names are
cluster-wide. One local connector serves all three Services (one serving certificate with
each Service's name). The test drives waves, the parallelism limit, a broken stack that
stops the next wave, the re-run that converges, and a preview that shows a new APIService.
A small YAML program checks the path through a real language host (pulumi-language-yaml),
in per-stack working directories.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import connector_fixtures
import pytest
from claims import remove_install
from fault_tools import kill_session
from fleet_fixtures import MCP_CONNECTOR, fleet, fleet_env, output

from testbed import APP_CLUSTER, seed
from testbed.harness import Testbed
from testbed.tools import require, tool_path
from testbed.waiting import LineReader

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: stack → the claim API group it connects (APIService names are cluster-wide).
STACKS = {"dev-1": "k8s.starter.org", "dev-2": "db.example.org", "prod-1": "cache.example.org"}
WAVES = ["--wave", "dev-*", "--wave", "prod-*"]


def pulumi(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([str(tool_path("pulumi")), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"pulumi {' '.join(args[:3])}: {done.stderr}"
    return done.stdout


def row(text: str, stack: str) -> list[str]:
    """The summary table's row of ``stack`` (ASCII table: cells between '|')."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells and cells[0] == stack:
            return cells
    raise AssertionError(f"no summary row for {stack}:\n{text}")


def at(lines: list[str], text: str) -> int:
    """Index of the first line equal to or starting with ``text``."""
    for index, line in enumerate(lines):
        if line.startswith(text):
            return index
    raise AssertionError(f"no line {text!r} in:\n" + "\n".join(lines))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


class Platform:
    """A copy of the root program with one configured stack per entry of STACKS."""

    def __init__(self, testbed: Testbed, tmp_path: Path, connector: connector_fixtures.ConnectorProcess) -> None:
        self.dir = tmp_path / "platform"
        self.dir.mkdir()
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(REPO / name, self.dir / name)
        self.env = fleet_env(tmp_path)
        self.port = connector.port
        for stack, group in STACKS.items():
            testbed.kubectl(APP_CLUSTER, "create", "namespace", f"mcp-{stack}", check=False)
            pulumi(self.env, self.dir, "stack", "init", stack)
            self.set(stack, "claimNamespace", testbed.claim_namespace)
            self.set(stack, "controlPlaneKubeconfig", testbed.control_plane.kubeconfig.read_text(), secret=True)
            self.set(stack, "clusterId", str(uuid.uuid4()))
            self.set(stack, "name", f"mcp-{stack}")
            self.set(stack, "namespace", f"mcp-{stack}")
            self.set(stack, "mode", f"localhost:{connector.port}")
            self.set(stack, "caBundle", connector.ca_bundle.decode())
            self.set(stack, "include", json.dumps([group]))
            pulumi(self.env, self.dir, "config", "set", "-s", stack, "kubernetes:kubeconfig",
                   str(testbed.app_cluster.kubeconfig))  # fmt: skip

    def set(self, stack: str, key: str, value: str, *, secret: bool = False) -> None:
        args = ["config", "set", "-s", stack, *(["--secret"] if secret else []), f"mcp-connector:{key}", "--", value]
        pulumi(self.env, self.dir, *args)

    def rollout(self, *args: str) -> subprocess.CompletedProcess[str]:
        return fleet("rollout", "-C", str(self.dir), "--log-dir", str(self.dir.parent / "logs"), *args, env=self.env)


@pytest.fixture
def platform(testbed: Testbed, pulumi_tools: None, tmp_path: Path) -> Iterator[Platform]:
    sans = [a for stack in STACKS for a in ("--tls-san", f"mcp-{stack}.mcp-{stack}.svc")]
    connector = connector_fixtures.start_connector(testbed, extra_args=sans)
    made = Platform(testbed, tmp_path, connector)
    try:
        yield made
    finally:
        for stack in STACKS:  # disconnect every stack through the program itself (the hook runs)
            made.set(stack, "connect", "false")
        done = made.rollout()
        connector.stop()
        seed.delete_claim_api(testbed.control_plane.kubeconfig, seed.REDIS_CACHE)
        for stack in STACKS:
            if done.returncode != 0:
                # The disconnect failed (asserted below): what the stack left must not meet the next test's
                # server-side apply (field-manager conflicts on APIServices nobody serves).
                remove_install(testbed, f"mcp-{stack}")
            testbed.kubectl(APP_CLUSTER, "delete", "namespace", f"mcp-{stack}", "--wait=false", check=False)
        assert done.returncode == 0, output(done)


@pytest.mark.timeout(1500)
def test_rollout_waves_halt_rerun_preview_interrupt(platform: Platform, testbed: Testbed) -> None:
    """One platform through its life: a broken wave, the fix, a preview, Ctrl-C, a killed worker, convergence."""
    platform.set("dev-2", "mode", "not-a-mode")  # deliberately broken

    first = platform.rollout(*WAVES, "--parallel", "2")
    assert first.returncode == 1, output(first)
    lines = first.stdout.splitlines()
    assert lines[0] == "wave 1/2 (dev-*): dev-1, dev-2"
    started_both = max(at(lines, "dev-1: up started"), at(lines, "dev-2: up started"))
    assert started_both < min(at(lines, "dev-1: succeeded"), at(lines, "dev-2: failed")), "both ran at once"
    assert not [line for line in lines if line.startswith(("prod-1:", "wave 2/2"))], "wave 2 never started"
    assert row(first.stdout, "dev-1")[2] == "succeeded"
    failed = row(first.stdout, "dev-2")
    # The error is the last column (the summary lists removed APIServices and the claims named before it).
    assert failed[2] == "failed" and "mode 'not-a-mode' must be" in failed[-1] and "dev-2.log" in failed[-1]
    assert row(first.stdout, "prod-1")[2:4] == ["skipped", "-"]
    assert "wave 1 failed (dev-2)" in row(first.stdout, "prod-1")[-1]

    platform.set("dev-2", "mode", f"localhost:{platform.port}")
    second = platform.rollout(*WAVES, "--parallel", "1")
    assert second.returncode == 0, output(second)
    lines = second.stdout.splitlines()
    assert at(lines, "dev-1: succeeded") < at(lines, "dev-2: up started"), "one at a time"
    assert at(lines, "dev-2: succeeded") < at(lines, "wave 2/2 (prod-*): prod-1") < at(lines, "prod-1: up started")
    assert row(second.stdout, "dev-1")[2:4] == ["succeeded", "0"], "dev-1 was already done"
    assert int(row(second.stdout, "dev-2")[3]) > 0 and int(row(second.stdout, "prod-1")[3]) > 0
    connector_fixtures.wait_available(testbed, ["v1alpha1.k8s.starter.org", "v1beta1.db.example.org"])
    service = testbed.kubectl_json(APP_CLUSTER, "get", "apiservice", "v1beta1.db.example.org")["spec"]["service"]
    assert (service["name"], service["namespace"]) == ("mcp-dev-2", "mcp-dev-2")

    seed.apply_claim_api(testbed.control_plane.kubeconfig, seed.REDIS_CACHE)
    preview = platform.rollout("--preview", "--parallel", "3")
    assert preview.returncode == 0, output(preview)
    prod = row(preview.stdout, "prod-1")
    # +1: the APIService; ~2: the guard's and the Disconnect's plans now list the new claim kind too; +-1: the
    # served marker lists its APIService, and pulumi-kubernetes replaces a ConfigMap whose data changes.
    assert (prod[3], prod[5]) == ("+1 ~2 -0 +-1", "v1.cache.example.org"), preview.stdout
    assert row(preview.stdout, "dev-1")[3] == "+0 ~0 -0 +-0" and row(preview.stdout, "dev-1")[5] == "-"
    assert testbed.kubectl(APP_CLUSTER, "get", "apiservice", "v1.cache.example.org", check=False).returncode != 0, (
        "a preview changes nothing"
    )

    command = [str(MCP_CONNECTOR), "rollout", "-C", str(platform.dir)]
    # Ctrl-C in the middle: running stacks cancel as Pulumi does, nothing new starts. (Every stack
    # has work: the disconnect plan changes, and prod-1 still has the new APIService to create.)
    for stack in STACKS:
        platform.set(stack, "onDisconnect", "Release")
    with subprocess.Popen(
        [*command, *WAVES, "--parallel", "2"], env=platform.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        reader = LineReader(proc.stdout)
        reader.wait_for(lambda line: line.startswith("dev-") and line.endswith(" ..."), timeout=120, what="a step")
        proc.send_signal(signal.SIGINT)
        reader.wait_for(lambda line: line.startswith("| prod-1 "), timeout=300, what="the summary's last row")
        assert proc.wait(timeout=60) == 130
    out = "\n".join(reader.lines)
    results = {stack: row(out, stack)[2] for stack in STACKS}
    assert results["prod-1"] == "skipped" and "interrupted" in row(out, "prod-1")[-1]
    assert set(results.values()) <= {"succeeded", "interrupted", "skipped"}, out

    # A worker killed outright (a lost CI runner): its stack stays locked until the re-run clears it.
    with subprocess.Popen(
        [*command, "--stack", "prod-1"], env=platform.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        assert proc.stdout is not None
        reader = LineReader(proc.stdout)
        reader.wait_for(lambda line: line.startswith("prod-1: ") and line.endswith(" ..."), timeout=120, what="a step")
        (worker,) = _children(proc.pid)
        kill_session(worker)  # the worker leads its session; its Pulumi plugins have groups of their own
        reader.wait_for(lambda line: line.startswith("| prod-1 "), timeout=120, what="the summary row")
        assert proc.wait(timeout=60) == 1
    assert "worker exited with status -9" in row("\n".join(reader.lines), "prod-1")[-1]

    rerun = platform.rollout(*WAVES, "--parallel", "2")
    assert rerun.returncode == 0, output(rerun)
    assert "prod-1: removed the lock an interrupted run left" in rerun.stdout, output(rerun)
    again = platform.rollout("--preview", "--parallel", "3")
    assert again.returncode == 0, output(again)
    for stack in STACKS:
        assert row(again.stdout, stack)[3] == "+0 ~0 -0 +-0", f"{stack} did not converge:\n{again.stdout}"


@pytest.mark.timeout(300)
def test_yaml_program_through_its_language_host(tmp_path: Path) -> None:
    require("pulumi", "pulumi-language-yaml")
    program = tmp_path / "echo"
    program.mkdir()
    (program / "Pulumi.yaml").write_text(
        "name: fleet-echo\nruntime: yaml\nconfig:\n  message:\n    type: string\noutputs:\n  echo: ${message}\n"
    )
    env = fleet_env(tmp_path)
    for stack in ("a-1", "a-2"):
        pulumi(env, program, "stack", "init", stack)
        pulumi(env, program, "config", "set", "-s", stack, "message", f"hello {stack}")
    done = fleet("rollout", "-C", str(program), "--parallel", "2", env=env)
    assert done.returncode == 0, output(done)
    assert "in-process" not in done.stderr, "a YAML program runs in its language host"
    for stack in ("a-1", "a-2"):
        assert row(done.stdout, stack)[2] == "succeeded"
        assert pulumi(env, program, "stack", "output", "echo", "-s", stack).strip() == f"hello {stack}"
    assert sorted(p.name for p in program.iterdir()) == [
        "Pulumi.a-1.yaml",
        "Pulumi.a-2.yaml",
        "Pulumi.yaml",
    ], "stack config stays with the program; nothing else is written there"
