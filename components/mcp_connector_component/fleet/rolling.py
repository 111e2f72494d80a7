"""``rollout``: preview or update the stacks of one program, wave after wave, a few at a time.

The plan (which stack in which wave) is pure and decided before anything runs. Each stack
runs in a worker process (``worker``) in a working directory of its own (``project``);
the rollout only schedules, shows progress and sums up. A failed wave stops the ones after
it; an interrupt (Ctrl-C, SIGTERM) asks every running stack to cancel as Pulumi does on
Ctrl-C, starts nothing new, and a second interrupt stops them outright. Stacks keep
nothing from a rollout but their Pulumi state, so running it again continues.

Python programs run where ``pulumi-language-python`` is missing (``--inline auto``): the
worker then runs the program file in-process through the Automation API's inline-program
path, which needs only the CLI and the SDK. With the language host present, Pulumi runs
the program exactly as ``pulumi up`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
from pulumi import automation as auto
from rich.console import Console

from mcp_connector_component.fleet import progress
from mcp_connector_component.fleet.progress import StackRun
from mcp_connector_component.fleet.project import Project, ProjectError, load, stack_folder

WORKER = "mcp_connector_component.fleet.worker"
LANGUAGE_HOST = "pulumi-language-python"


def kill_session(sid: int, *, rounds: int = 20) -> None:
    """SIGKILL every process of session ``sid`` (a worker leads its own), plugins included.

    A process group is not enough: the Pulumi CLI starts each plugin in a process group of its
    own, and a ``killpg`` left them running as orphans. They stay in the worker's session even
    once their parent is gone, and what one forks meanwhile is found by the next round.
    """
    for _ in range(rounds):
        members = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                    members.append(process)
        if not members:
            return
        for process in members:
            with contextlib.suppress(psutil.Error):
                process.kill()


class PlanError(ValueError):
    """The stack selection or the waves cannot be run as given."""


def plan(
    stacks: Sequence[str], *, select: Sequence[str] = (), waves: Sequence[str] = ()
) -> list[tuple[str, list[str]]]:
    """``[(wave pattern, stacks)]`` in order. Each stack joins the first wave it matches.

    Selected stacks that match no wave are an error rather than silently left out.
    """
    chosen = [s for s in stacks if not select or any(fnmatch.fnmatchcase(s, p) for p in select)]
    if not chosen:
        raise PlanError(f"no stack matches {', '.join(select)}" if select else "the program has no stacks")
    if not waves:
        return [("*", chosen)]
    out: list[tuple[str, list[str]]] = []
    left = list(chosen)
    for pattern in waves:
        members = [s for s in left if fnmatch.fnmatchcase(s, pattern)]
        left = [s for s in left if s not in members]
        out.append((pattern, members))
    if left:
        raise PlanError(f"stacks in no wave: {', '.join(left)} (add a wave, e.g. --wave '*', or narrow --stack)")
    return out


def language_host_available() -> bool:
    """Whether the Python language host is installed (on PATH or beside the ``pulumi`` CLI)."""
    if shutil.which(LANGUAGE_HOST):
        return True
    cli = shutil.which("pulumi")
    return cli is not None and (Path(cli).resolve().parent / LANGUAGE_HOST).exists()


def use_inline(project: Project, choice: str) -> bool:
    """Whether to run the program in-process; raises PlanError when that cannot work."""
    if choice == "never":
        return False
    if project.runtime != "python":
        if choice == "always":
            raise PlanError(f"--inline runs Python programs only; {project.file} is {project.runtime!r}")
        return False
    if not project.python_entry.is_file():
        raise PlanError(f"--inline: no program file at {project.python_entry}")
    return choice == "always" or not language_host_available()


class Rollout:
    """Runs a plan and keeps every stack's StackRun current for the display."""

    def __init__(
        self,
        project: Project,
        waves: list[tuple[str, list[str]]],
        *,
        preview: bool,
        parallel: int,
        inline: bool,
        work_root: Path,
        log_dir: Path,
        display: progress.Display,
    ) -> None:
        self.project = project
        self.waves = waves
        self.preview = preview
        self.parallel = parallel
        self.inline = inline
        self.work_root = work_root
        self.log_dir = log_dir
        self.display = display
        self.runs = [StackRun(name=s, wave=i + 1) for i, (_, members) in enumerate(waves) for s in members]
        self.interrupts = 0
        self._running: dict[str, asyncio.subprocess.Process] = {}

    def interrupt(self) -> None:
        """First time: cancel running stacks as Ctrl-C would, start no more. Then: kill them."""
        self.interrupts += 1
        first = self.interrupts == 1
        self.display.note(None, "interrupted: cancelling running stacks" if first else "stopping now")
        for proc in self._running.values():
            if first:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
            else:
                kill_session(proc.pid)

    async def run(self) -> None:
        """Every wave in order, stopping after a wave with a failure or on interrupt."""
        halted = ""
        for index, (pattern, _) in enumerate(self.waves, start=1):
            runs = [r for r in self.runs if r.wave == index]
            if halted or self.interrupts:
                for r in runs:
                    r.state, r.error = progress.SKIPPED, "rollout interrupted" if self.interrupts else halted
                continue
            self.display.wave(index, len(self.waves), pattern, runs)
            limit = asyncio.Semaphore(self.parallel)
            await asyncio.gather(*(self._when_free(limit, r) for r in runs))
            failed = [r.name for r in runs if r.state != progress.SUCCEEDED]
            if failed:
                halted = f"wave {index} failed ({', '.join(failed)})"

    async def _when_free(self, limit: asyncio.Semaphore, r: StackRun) -> None:
        async with limit:
            if self.interrupts:
                r.state, r.error = progress.SKIPPED, "rollout interrupted"
                return
            await self._stack(r)

    async def _stack(self, r: StackRun) -> None:
        r.state, r.started = progress.RUNNING, time.monotonic()
        log_file = self.log_dir / f"{r.name.replace('/', '_')}.log"
        log_file.write_text("")
        r.log_file = str(log_file)
        job = {
            "project_dir": str(self.project.dir),
            "stack": r.name,
            "work_dir": str(stack_folder(self.project, r.name, self.work_root)),
            "preview": self.preview,
            "inline": self.inline,
            "log_file": str(log_file),
        }
        self.display.started(r)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER,
            json.dumps(job),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._running[r.name] = proc
        result: dict[str, object] | None = None
        assert proc.stdout is not None
        async for raw in proc.stdout:
            message = json.loads(raw)
            if message["type"] == "step":
                r.steps, r.current = int(message["done"]), str(message["what"])
                self.display.step(r, done=message["phase"] == "done")
            elif message["type"] == "note":
                self.display.note(r, str(message["text"]))
            elif message["type"] == "result":
                result = message
        code = await proc.wait()
        del self._running[r.name]
        r.ended = time.monotonic()
        if result is None:
            r.state, r.error = progress.FAILED, f"worker exited with status {code} and no result"
        else:
            r.changes = {str(k): int(v) for k, v in dict(result.get("changes") or {}).items()}  # type: ignore[call-overload]
            r.new_apiservices = [str(a) for a in result.get("new_apiservices") or []]  # type: ignore[attr-defined]
            r.removed_apiservices = [str(a) for a in result.get("removed_apiservices") or []]  # type: ignore[attr-defined]
            r.claim_notes = [str(a) for a in result.get("claim_notes") or []]  # type: ignore[attr-defined]
            if result.get("ok"):
                r.state = progress.SUCCEEDED
            else:
                r.state = progress.INTERRUPTED if result.get("interrupted") else progress.FAILED
                r.error = str(result.get("error") or "")
        self.display.finished(r)


def list_stacks(project: Project) -> list[str]:
    """The program's stacks, as its backend knows them."""
    workspace = auto.LocalWorkspace(work_dir=str(project.dir))
    return sorted(s.name.rsplit("/", 1)[-1] for s in workspace.list_stacks())


def main(
    *,
    project_dir: Path,
    preview: bool,
    stacks: Sequence[str],
    waves: Sequence[str],
    parallel: int,
    inline: str,
    log_dir: Path | None,
    console: Console | None = None,
) -> int:
    """Run a rollout; returns 0 when every stack succeeded, 1 otherwise, 130 when interrupted."""
    console = console or Console(stderr=False)
    err = Console(stderr=True)
    try:
        project = load(project_dir)
        run_inline = use_inline(project, inline)
        names = list_stacks(project)
        waves_plan = plan(names, select=stacks, waves=waves)
    except (ProjectError, PlanError) as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        return 2
    except auto.errors.CommandError as e:
        from mcp_connector_component.fleet.engine import error_text

        err.print(f"error: cannot list the stacks of {project_dir}: {error_text(e)}", markup=False, highlight=False)
        return 1
    if run_inline and inline == "auto":
        err.print(
            f"note: {LANGUAGE_HOST} not found; running {project.python_entry.name} in-process (Automation API inline)",
            markup=False,
            highlight=False,
        )
    key = hashlib.sha256(str(project.dir).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"mcp-connector-rollout-{os.getuid()}" / key
    logs = log_dir or root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    operation = "preview" if preview else "up"
    terminal = console.is_terminal
    display: progress.Display = (
        progress.RichDisplay(console, operation) if terminal else progress.PlainDisplay(console.file, operation)
    )
    rollout = Rollout(
        project,
        waves_plan,
        preview=preview,
        parallel=parallel,
        inline=run_inline,
        work_root=root / "stacks",
        log_dir=logs,
        display=display,
    )

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, rollout.interrupt)
        await rollout.run()

    with display:
        asyncio.run(go())
    if terminal:
        console.print(progress.summary_table(rollout.runs, preview=preview))
    else:
        console.file.write(progress.summary_text(rollout.runs, preview=preview))
    if rollout.interrupts:
        return 130
    return 0 if all(r.state == progress.SUCCEEDED for r in rollout.runs) else 1
