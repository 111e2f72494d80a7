"""Running the fleet commands (``mcp-connector install | uninstall | render | rollout``) as a user would.

Each call runs the real console script in a child process with the test bed's offline Pulumi
settings (CLI and kubernetes provider from .dev/bin, private PULUMI_HOME, no plugin
downloads) and returns the finished process; nothing here skips or retries.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from testbed import REPO_ROOT
from testbed.pulumi_env import pulumi_env

MCP_CONNECTOR = REPO_ROOT / ".venv" / "bin" / "mcp-connector"


def fleet_env(work: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment plus the offline Pulumi settings, with state under ``work``."""
    env = {**os.environ, **pulumi_env(work / "pulumi-state", extra=extra)}
    env["PATH"] = os.pathsep.join([str(REPO_ROOT / ".venv" / "bin"), env["PATH"]])
    return env


def fleet(
    *args: str, env: Mapping[str, str], input: str | None = None, timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``mcp-connector <args>``; never raises on a non-zero exit (tests look at it)."""
    return subprocess.run(
        [str(MCP_CONNECTOR), *args],
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def output(done: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr together, for assertions and failure messages."""
    return f"--- exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def lines_of(text: str, prefix: str) -> Sequence[str]:
    """Lines starting with ``prefix``."""
    return [line for line in text.splitlines() if line.startswith(prefix)]
