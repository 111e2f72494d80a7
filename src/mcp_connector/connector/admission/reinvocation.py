"""Reinvocation of the mutating phase, as k8s.io/apiserver's reinvoker and its contexts do it.

The mutating plugins (MutatingAdmissionPolicy, then mutating webhooks) run once; when any of
them changed the object, the whole phase runs once more, and each plugin then reinvokes only
what has ``reinvocationPolicy: IfNeeded`` and ran before a change (its own, or another
plugin's since its last pass). One ``Pass`` per request, one ``Plugin`` per plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_UNSET = object()


@dataclass
class Pass:
    """The request's reinvocation state (``admission.ReinvocationContext``)."""

    is_reinvoke: bool = False
    should_reinvoke: bool = False


@dataclass
class Plugin:
    """One plugin's reinvocation state (its ``reinvokeContext``)."""

    last_output: Any = _UNSET
    previously_invoked: set[str] = field(default_factory=set)
    reinvoke: set[str] = field(default_factory=set)

    def begin(self, state: Pass, obj: Any) -> None:
        """At the start of the plugin's pass: on reinvocation, another plugin's change counts."""
        if state.is_reinvoke and self.last_output is not _UNSET and self.last_output != obj:
            self.require_previous()

    def end(self, obj: Any) -> None:
        """At the end of the plugin's pass: remember what it handed on."""
        self.last_output = obj

    def skip(self, state: Pass, key: str) -> bool:
        """On reinvocation, everything not marked for it is skipped."""
        return state.is_reinvoke and key not in self.reinvoke

    def changed(self, state: Pass) -> None:
        """The object changed: what ran before with IfNeeded runs again."""
        self.require_previous()
        state.should_reinvoke = True

    def invoked(self, key: str, if_needed: bool) -> None:
        """``key`` ran; with IfNeeded it is a candidate for reinvocation."""
        if if_needed:
            self.previously_invoked.add(key)

    def require_previous(self) -> None:
        """Mark every IfNeeded invocation so far for reinvocation."""
        self.reinvoke |= self.previously_invoked
        self.previously_invoked = set()
