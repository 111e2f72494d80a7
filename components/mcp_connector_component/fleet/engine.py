"""What a Pulumi operation did, read from its engine events; and the locks an interrupted one left.

``install``, ``uninstall`` and ``rollout`` all run stacks through the Automation API and
need the same few facts back: how far it got, what it changed (and which APIServices it
adds), the errors in words a person can act on, and what the disconnect hook reported.
Engine messages are what Pulumi prints, with secrets already masked.

A stack operation killed hard (SIGKILL, a lost CI runner) leaves its lock behind in a file
backend, and every later run fails with "the stack is currently locked". A lock whose
process is gone from this very host cannot belong to a live operation, so it is removed
(``pulumi cancel``); any other lock is reported as it is.
"""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pulumi.automation import events

APISERVICE_TYPE = "kubernetes:apiregistration.k8s.io/v1:APIService"
HOOK_PREFIX = "mcp-connector disconnect"
#: The Disconnect's update checks (a change of identity, discovery drift), which name claims too.
_UPDATE_CHECK = re.compile(r"^McpConnector \S+(:| changes its identity)")
#: Operations that count as a change in the summary.
CHANGES = ("create", "update", "delete", "replace")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|<\{%[^%]*%\}>")
_LOCK = re.compile(r"created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\)")
_CREATING = (events.OpType.CREATE, events.OpType.CREATE_REPLACEMENT)


def plain(text: str) -> str:
    """Engine text without colour codes, on one line."""
    return " ".join(_ANSI.sub("", text).split())


@dataclass
class Watch:
    """Collects what an operation reports, from the Automation API's ``on_event`` callback."""

    steps_started: int = 0
    steps_done: int = 0
    current: str = ""
    errors: list[str] = field(default_factory=list)
    hook_messages: list[str] = field(default_factory=list)
    new_apiservices: list[str] = field(default_factory=list)
    removed_apiservices: list[str] = field(default_factory=list)
    changes: Counter[str] = field(default_factory=Counter)

    def __call__(self, event: events.EngineEvent) -> None:
        """Record one engine event."""
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            if meta.op != events.OpType.SAME:
                self.steps_started += 1
                self.current = f"{meta.op.value} {meta.urn.rsplit('::', 1)[-1]}"
            if meta.type == APISERVICE_TYPE and meta.op in _CREATING:
                self.new_apiservices.append(_apiservice_name(meta))
            if meta.type == APISERVICE_TYPE and meta.op == events.OpType.DELETE:
                self.removed_apiservices.append(_apiservice_name(meta, old=True))
        elif event.res_outputs_event is not None:
            if event.res_outputs_event.metadata.op != events.OpType.SAME:
                self.steps_done += 1
        elif event.diagnostic_event is not None:
            diag = event.diagnostic_event
            message = plain(diag.message)
            if diag.severity == "error" and message and not message.startswith("update failed"):
                self.errors.append(message)
            elif HOOK_PREFIX in message or (_UPDATE_CHECK.match(message) and "claim" in message):
                self.hook_messages.append(message)
        elif event.summary_event is not None:
            self.changes = Counter(
                {str(getattr(k, "value", k)): v for k, v in event.summary_event.resource_changes.items()}
            )

    @property
    def changed(self) -> int:
        """Resources created, updated, deleted or replaced."""
        return sum(self.changes.get(op, 0) for op in CHANGES)

    def change_text(self) -> str:
        """``+2 ~1 -0 +-0`` style counts."""
        c = self.changes
        return f"+{c.get('create', 0)} ~{c.get('update', 0)} -{c.get('delete', 0)} +-{c.get('replace', 0)}"


def _apiservice_name(meta: events.StepEventMetadata, *, old: bool = False) -> str:
    state = meta.old if old else meta.new
    inputs: dict[str, Any] = dict(state.inputs) if state is not None and state.inputs else {}
    name = (inputs.get("metadata") or {}).get("name")
    return str(name) if name else meta.urn.rsplit("::", 1)[-1]


def error_text(exc: BaseException, watch: Watch | None = None) -> str:
    """The most useful line of a failed operation: the engine's first error, else the CLI's."""
    if watch is not None and watch.errors:
        return watch.errors[0]
    text = str(exc)
    stderr = text.split(" stderr:", 1)[-1] if " stderr:" in text else text
    lines = [plain(line) for line in stderr.splitlines() if plain(line)]
    for line in lines:
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else type(exc).__name__


@dataclass(frozen=True)
class Lock:
    """One lock named in a "currently locked" error."""

    user: str
    host: str
    pid: int

    def is_stale(self, *, hostname: str | None = None) -> bool:
        """Whether it was made on this host by a process that no longer runs."""
        if self.host != (hostname or socket.gethostname()):
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def locks_in(text: str) -> list[Lock]:
    """The locks a "the stack is currently locked" error lists (empty for any other error)."""
    if "currently locked" not in text:
        return []
    return [Lock(m["user"], m["host"], int(m["pid"])) for m in _LOCK.finditer(text)]


def only_stale_locks(exc: BaseException) -> list[Lock]:
    """The locks of a locked-stack error, if every one of them is stale; else empty."""
    found = locks_in(str(exc))
    return found if found and all(lock.is_stale() for lock in found) else []
