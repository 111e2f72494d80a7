"""One stack's preview or update, in a process of its own: ``python -m ...fleet.worker '<job json>'``.

A rollout runs each stack in a worker process so that stacks running at once share
nothing (an inline Python program runs inside the worker, and Pulumi's SDK keeps
per-process state), and so that an interrupted rollout can stop each one cleanly: the
worker and the Pulumi CLI it starts form one process group, and SIGINT to that group makes
the CLI cancel as on Ctrl-C (finishing in-flight steps, saving state, releasing the lock).

The worker talks to the rollout through JSON lines on the stdout it was started with;
everything else it or the program prints, and Pulumi's own output, goes to the stack's log.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pulumi import automation as auto
from pulumi.automation import events

from mcp_connector_component.fleet import engine
from mcp_connector_component.fleet.project import Project, load


class Reporter(engine.Watch):
    """An engine watch that also reports each step's start and end to the rollout."""

    def __init__(self, send: Callable[..., None]) -> None:
        super().__init__()
        self.send = send

    def __call__(self, event: events.EngineEvent) -> None:
        """Record, and tell the rollout when a step started or finished."""
        started, done = self.steps_started, self.steps_done
        super().__call__(event)
        if self.steps_started != started and event.resource_pre_event is not None:
            self.send(type="step", phase="start", what=self.current, done=self.steps_done)
        if self.steps_done != done and event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
            what = f"{meta.op.value} {meta.urn.rsplit('::', 1)[-1]}"
            self.send(type="step", phase="done", what=what, done=self.steps_done)


def inline_program(project: Project) -> Callable[[], None]:
    """Run the project's Python entry file as ``pulumi up`` would, inside this process."""
    entry = project.python_entry

    def run() -> None:
        os.chdir(entry.parent)
        if str(entry.parent) not in sys.path:
            sys.path.insert(0, str(entry.parent))
        runpy.run_path(str(entry), run_name="__main__")

    return run


def run(job: dict[str, Any], send: Callable[..., None], log: IO[str]) -> None:
    """Preview or update ``job['stack']``; the last message sent is its result."""
    interrupted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    project = load(Path(job["project_dir"]))
    program = inline_program(project) if job["inline"] else None
    workspace = auto.LocalWorkspace(work_dir=job["work_dir"], program=program)
    reporter = Reporter(send)

    gates: list[engine.Watch] = []
    plan_file = Path(job["log_file"]).with_suffix(".plan.json")

    def operate(stack: auto.Stack) -> None:
        if job["preview"]:
            stack.preview(on_output=log.write, on_event=reporter, color="never", diff=True)
            return
        # Gated on a saved plan: the update may do only what its preview showed (and warned about:
        # the Disconnect's checks refuse a change of identity or discovery drift there too).
        gate = engine.Watch()
        gates.append(gate)
        stack.preview(on_output=log.write, on_event=gate, color="never", diff=True, plan=str(plan_file))
        try:
            stack.up(on_output=log.write, on_event=reporter, color="never", plan=str(plan_file))
        finally:
            plan_file.unlink(missing_ok=True)

    def seen() -> dict[str, Any]:
        """What the summary lists: removed APIServices, and the claims a disconnect or check named."""
        watch = reporter if job["preview"] or not gates else gates[-1]
        return {
            "removed_apiservices": watch.removed_apiservices,
            "claim_notes": watch.hook_messages,
        }

    try:
        stack = auto.Stack.select(job["stack"], workspace)
        try:
            operate(stack)
        except auto.errors.CommandError as e:
            stale = engine.only_stale_locks(e)
            if not stale or interrupted:
                raise
            pids = ", ".join(str(lock.pid) for lock in stale)
            send(type="note", text=f"removed the lock an interrupted run left (pid {pids})")
            stack.cancel()
            operate(stack)
    except auto.errors.CommandError as e:
        send(
            type="result",
            ok=False,
            interrupted=bool(interrupted),
            error="interrupted" if interrupted else engine.error_text(e, reporter),
            changes=dict(reporter.changes),
            new_apiservices=reporter.new_apiservices,
            **seen(),
        )
        return
    send(type="result", ok=True, changes=dict(reporter.changes), new_apiservices=reporter.new_apiservices, **seen())


def main(argv: list[str]) -> int:
    """Entry point: the job is the only argument."""
    job = json.loads(argv[0])
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    log = open(job["log_file"], "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)

    def send(**message: Any) -> None:
        channel.write(json.dumps(message) + "\n")

    try:
        run(job, send, log)
    except Exception as e:  # the rollout shows it as this stack's error; the log has the rest
        import traceback

        traceback.print_exc(file=log)
        send(
            type="result", ok=False, interrupted=False, error=f"{type(e).__name__}: {e}", changes={}, new_apiservices=[]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
