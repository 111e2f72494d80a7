"""How a rollout shows itself: live progress per stack on a terminal, plain lines elsewhere, one summary.

On a terminal ``rich`` draws a line per running stack (spinner, steps, elapsed time); in CI
and pipes every event is one plain line with the stack's name in front, so logs read in
order and grep well. Both end with the same summary table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from rich import box
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED, INTERRUPTED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "interrupted",
)


@dataclass
class StackRun:
    """One stack's part in a rollout."""

    name: str
    wave: int
    state: str = QUEUED
    started: float | None = None
    ended: float | None = None
    steps: int = 0
    current: str = ""
    changes: dict[str, int] = field(default_factory=dict)
    new_apiservices: list[str] = field(default_factory=list)
    removed_apiservices: list[str] = field(default_factory=list)
    #: What the disconnect hook or the update checks said about claims (names, Keep or Release).
    claim_notes: list[str] = field(default_factory=list)
    error: str = ""
    log_file: str = ""

    @property
    def duration(self) -> float | None:
        """Seconds it ran (so far)."""
        if self.started is None:
            return None
        return (self.ended or time.monotonic()) - self.started

    @property
    def changed(self) -> int:
        """Resources created, updated, deleted or replaced (or, in a preview, that would be)."""
        return sum(self.changes.get(op, 0) for op in ("create", "update", "delete", "replace"))

    def change_text(self) -> str:
        """``+2 ~1 -0 +-0``."""
        c = self.changes
        return f"+{c.get('create', 0)} ~{c.get('update', 0)} -{c.get('delete', 0)} +-{c.get('replace', 0)}"


class Display(Protocol):
    """What the rollout tells the person watching."""

    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...
    def wave(self, index: int, total: int, pattern: str, runs: Sequence[StackRun]) -> None: ...
    def started(self, run: StackRun) -> None: ...
    def step(self, run: StackRun, *, done: bool) -> None: ...
    def note(self, run: StackRun | None, text: str) -> None: ...
    def finished(self, run: StackRun) -> None: ...


def _outcome(run: StackRun) -> str:
    if run.state == SUCCEEDED:
        return f"succeeded in {run.duration or 0:.1f}s ({run.change_text()})"
    return f"{run.state} after {run.duration or 0:.1f}s: {run.error}"


class PlainDisplay:
    """One line per event, for CI logs and pipes."""

    def __init__(self, stream: IO[str], operation: str) -> None:
        self.stream = stream
        self.operation = operation

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def wave(self, index: int, total: int, pattern: str, runs: Sequence[StackRun]) -> None:
        """A wave starts."""
        self._line(f"wave {index}/{total} ({pattern}): {', '.join(r.name for r in runs) or 'no stacks'}")

    def started(self, run: StackRun) -> None:
        """A stack started."""
        self._line(f"{run.name}: {self.operation} started")

    def step(self, run: StackRun, *, done: bool) -> None:
        """A step of a stack started (``... ``) or finished (``done [n]``, n steps done so far)."""
        self._line(f"{run.name}: {run.current} done [{run.steps}]" if done else f"{run.name}: {run.current} ...")

    def note(self, run: StackRun | None, text: str) -> None:
        """Anything else worth a line."""
        self._line(f"{run.name}: {text}" if run else text)

    def finished(self, run: StackRun) -> None:
        """A stack is done."""
        self._line(f"{run.name}: {_outcome(run)}")


class RichDisplay:
    """Live progress lines on a terminal."""

    def __init__(self, console: Console, operation: str) -> None:
        self.console = console
        self.operation = operation
        self.progress = Progress(
            SpinnerColumn(finished_text="•"),
            TextColumn("[bold]{task.fields[stack]}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def wave(self, index: int, total: int, pattern: str, runs: Sequence[StackRun]) -> None:
        """A wave starts."""
        self.progress.console.print(f"[bold]wave {index}/{total}[/] ({pattern}): {len(runs)} stack(s)")

    def started(self, run: StackRun) -> None:
        """A stack started."""
        self.tasks[run.name] = self.progress.add_task(f"{self.operation}…", stack=run.name, total=None)

    def step(self, run: StackRun, *, done: bool) -> None:
        """A step of a stack started or finished."""
        self.progress.update(self.tasks[run.name], description=f"{run.steps} done · {run.current}")

    def note(self, run: StackRun | None, text: str) -> None:
        """Anything else worth a line."""
        self.progress.console.print(f"{run.name}: {text}" if run else text)

    def finished(self, run: StackRun) -> None:
        """A stack is done."""
        colour = "green" if run.state == SUCCEEDED else "red"
        self.progress.update(self.tasks[run.name], description=f"[{colour}]{_outcome(run)}", total=1, completed=1)


def summary_rows(runs: Sequence[StackRun], *, preview: bool) -> list[list[str]]:
    """The closing table: stack, wave, result, changes, duration, (new APIServices,) removed APIServices,
    the claims a disconnect or an update check named, error."""
    header = ["stack", "wave", "result", "changes" if preview else "changed", "duration"]
    header += ["new APIServices"] if preview else []
    rows = [[*header, "removed APIServices", "claims", "error"]]
    for run in runs:
        changed = run.change_text() if preview else (str(run.changed) if run.state == SUCCEEDED else "-")
        row = [run.name, str(run.wave), run.state, changed, f"{run.duration:.1f}s" if run.duration is not None else "-"]
        if preview:
            row.append(", ".join(run.new_apiservices) or "-")
        row.append(", ".join(run.removed_apiservices) or "-")
        row.append(" / ".join(run.claim_notes) or "-")
        row.append(run.error + (f" (log: {run.log_file})" if run.error and run.log_file else ""))
        rows.append(row)
    return rows


def summary_table(runs: Sequence[StackRun], *, preview: bool) -> Table:
    """The closing table for a terminal."""
    header, *rows = summary_rows(runs, preview=preview)
    table = Table(title="preview summary" if preview else "rollout summary", box=box.SIMPLE)
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def summary_text(runs: Sequence[StackRun], *, preview: bool) -> str:
    """The closing table for logs: one unwrapped line per stack, cells between ``|``."""
    rows = summary_rows(runs, preview=preview)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])]) + "\n"
