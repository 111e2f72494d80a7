"""``rollout``'s pure parts: the wave plan, the per-stack working directory, engine events, stale locks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml
from pulumi.automation import events

from mcp_connector_component.fleet import engine
from mcp_connector_component.fleet.progress import FAILED, SUCCEEDED, StackRun, summary_text
from mcp_connector_component.fleet.project import ProjectError, load, stack_folder
from mcp_connector_component.fleet.rolling import PlanError, kill_session, plan, use_inline
from testbed.waiting import eventually

STACKS = ["dev-1", "dev-2", "prod-eu-1", "prod-us-1", "staging-1"]


def test_waves_in_order_first_match_wins() -> None:
    assert plan(STACKS, waves=["dev-*", "staging-*", "prod-*"]) == [
        ("dev-*", ["dev-1", "dev-2"]),
        ("staging-*", ["staging-1"]),
        ("prod-*", ["prod-eu-1", "prod-us-1"]),
    ]
    assert plan(STACKS, waves=["*-1", "*"]) == [
        ("*-1", ["dev-1", "prod-eu-1", "prod-us-1", "staging-1"]),
        ("*", ["dev-2"]),
    ]
    assert plan(STACKS) == [("*", STACKS)]
    assert plan(STACKS, select=["prod-*"], waves=["prod-eu-*", "prod-us-*"]) == [
        ("prod-eu-*", ["prod-eu-1"]),
        ("prod-us-*", ["prod-us-1"]),
    ]


def test_plan_refuses_to_leave_stacks_out() -> None:
    with pytest.raises(PlanError, match="stacks in no wave: staging-1"):
        plan(STACKS, waves=["dev-*", "prod-*"])
    with pytest.raises(PlanError, match="no stack matches qa-"):
        plan(STACKS, select=["qa-*"])
    with pytest.raises(PlanError, match="no stacks"):
        plan([])


def test_stack_folder_leads_back_to_the_program(tmp_path: Path) -> None:
    program = tmp_path / "platform"
    (program / "config").mkdir(parents=True)
    (program / "__main__.py").write_text("")
    (program / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "p",
                "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}},
                "stackConfigDir": "config",
                "config": {"mcp-connector:claimNamespace": "team-a"},
            }
        )
    )
    project = load(program)
    folder = stack_folder(project, "dev-1", tmp_path / "work")
    copied = yaml.safe_load((folder / "Pulumi.yaml").read_text())
    assert copied["main"] == str(program.resolve())
    assert (folder / copied["stackConfigDir"]).resolve() == (program / "config").resolve()
    assert copied["runtime"]["options"]["virtualenv"] == str((program / ".venv").resolve())
    assert copied["config"] == {"mcp-connector:claimNamespace": "team-a"}
    assert stack_folder(project, "dev-2", tmp_path / "work") != folder, "one folder per stack"


def test_inline_choice(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: yaml\n")
    assert use_inline(load(tmp_path), "auto") is False
    with pytest.raises(PlanError, match="Python programs only"):
        use_inline(load(tmp_path), "always")
    with pytest.raises(ProjectError, match=r"no Pulumi\.yaml"):
        load(tmp_path / "missing")


def _event(kind: str, body: dict) -> events.EngineEvent:
    return events.EngineEvent.from_json({"sequence": 1, "timestamp": 1, kind: body})


def _step(op: str, typ: str, name: str, inputs: dict | None = None) -> dict:
    urn = f"urn:pulumi:dev::p::{typ}::{name}"
    return {"metadata": {"op": op, "urn": urn, "type": typ, "provider": "", "new": {"type": typ, "urn": urn,
            "inputs": inputs or {}, "outputs": {}}}}  # fmt: skip


def test_watch_counts_steps_and_finds_new_apiservices() -> None:
    watch = engine.Watch()
    watch(_event("resourcePreEvent", _step("create", engine.APISERVICE_TYPE, "c-v1.cache.example.org",
                                          {"metadata": {"name": "v1.cache.example.org"}})))  # fmt: skip
    watch(_event("resourcePreEvent", _step("same", "kubernetes:core/v1:Service", "c-service")))
    watch(_event("resOutputsEvent", _step("create", engine.APISERVICE_TYPE, "c-v1.cache.example.org")))
    watch(_event("diagnosticEvent", {"message": "mcp-connector disconnect: Keep: 1 claim(s)\n", "color": "never",
                                     "severity": "info"}))  # fmt: skip
    watch(_event("diagnosticEvent", {"message": "\x1b[31mcannot discover claim APIs\x1b[0m", "color": "raw",
                                     "severity": "error"}))  # fmt: skip
    watch(_event("summaryEvent", {"maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": {"create": 1,
                                  "same": 7}, "PolicyPacks": {}}))  # fmt: skip
    assert (watch.steps_started, watch.steps_done, watch.changed) == (1, 1, 1)
    assert watch.new_apiservices == ["v1.cache.example.org"]
    assert watch.hook_messages == ["mcp-connector disconnect: Keep: 1 claim(s)"]
    gone = _step("delete", engine.APISERVICE_TYPE, "c-v1.old.example.org")
    gone["metadata"]["old"] = {**gone["metadata"].pop("new"), "inputs": {"metadata": {"name": "v1.old.example.org"}}}
    watch(_event("resourcePreEvent", gone))
    drift = "McpConnector c: the control plane no longer offers x.y (...) claims in it: Widget a/w"
    watch(_event("diagnosticEvent", {"message": drift, "color": "never", "severity": "warning"}))
    assert watch.removed_apiservices == ["v1.old.example.org"] and watch.hook_messages[-1] == drift
    assert engine.error_text(RuntimeError("x"), watch) == "cannot discover claim APIs"
    assert watch.change_text() == "+1 ~0 -0 +-0"


def test_error_text_from_the_cli_when_the_engine_said_nothing() -> None:
    error = RuntimeError("\n code: 255\n stdout: \n stderr: error: no stack named 'x' found\n")
    assert engine.error_text(error) == "no stack named 'x' found"


def test_only_locks_of_dead_processes_on_this_host_are_stale() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    text = (
        "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete "
        f"the lock file with `pulumi cancel`.\n  file:///s/.pulumi/locks/x.json: created by root@{host} "
        f"(pid {dead.stdout.strip()}) at 2026-11-28T00:00:00Z"
    )
    assert engine.only_stale_locks(RuntimeError(text)) == [engine.Lock("root", host, int(dead.stdout))]
    assert engine.only_stale_locks(RuntimeError(text.replace(dead.stdout.strip(), str(os.getpid())))) == []
    assert engine.only_stale_locks(RuntimeError(text.replace(f"@{host} ", "@elsewhere "))) == []
    assert engine.only_stale_locks(RuntimeError("error: conflict")) == []


def test_summary_table_names_failures_and_logs() -> None:
    ok = StackRun("dev-1", 1, state=SUCCEEDED, started=0.0, ended=2.0, changes={"create": 3})
    bad = StackRun("dev-2", 1, state=FAILED, started=0.0, ended=1.0, error="boom " * 40, log_file="/tmp/dev-2.log")
    text = summary_text([ok, bad], preview=False)
    lines = text.splitlines()
    assert len(lines) == 4, "one line per stack, never wrapped"
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in lines[2:])}
    assert rows["dev-1"] == ["dev-1", "1", "succeeded", "3", "2.0s", "-", "-", ""]
    assert rows["dev-2"] == ["dev-2", "1", "failed", "-", "1.0s", "-", "-", ("boom " * 40) + " (log: /tmp/dev-2.log)"]
    run = StackRun(
        "p", 2, state=SUCCEEDED, new_apiservices=["v1.a.b"], removed_apiservices=["v1.c.d"],
        claim_notes=["mcp-connector disconnect (preview): Keep: 1 claim(s) would stay: Widget a/w"],
    )  # fmt: skip
    cells = [c.strip() for c in summary_text([run], preview=True).splitlines()[2].split("|")]
    assert cells[6:9] == ["v1.a.b", "v1.c.d", run.claim_notes[0]]


def test_a_second_interrupt_kills_the_whole_session_plugins_included() -> None:
    """The Pulumi CLI starts each plugin in a process group of its own: a ``killpg`` missed them."""
    plugin = "import time; time.sleep(600)"
    cli = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {plugin!r}], process_group=0)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", cli], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert worker.stdout is not None
    with worker.stdout:
        plugin_pid = int(worker.stdout.readline())
    assert os.getpgid(plugin_pid) not in (worker.pid, os.getpgid(0)), "the plugin leads a group of its own"
    assert os.getsid(plugin_pid) == worker.pid

    kill_session(worker.pid)

    assert worker.wait(timeout=10) == -9

    def plugin_gone() -> bool:  # or a zombie its new parent has yet to reap
        try:
            return psutil.Process(plugin_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    eventually(plugin_gone, timeout=10, what="the plugin to be killed")
