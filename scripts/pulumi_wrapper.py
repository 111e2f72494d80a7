"""Run the real Pulumi CLI on the root program's local stack, by hand: ``scripts/pulumi <args>``.

The Python language plugin cannot be built here, so the root program (``__main__.py``)
is served from this process by ``testbed.pulumi_program`` (the SDK's own language server,
as the Automation API runs inline programs); the CLI and engine are the real ones.

It also sets what a local run needs and a person should not have to remember: the file
backend under ``.dev/pulumi-state``, a development passphrase (unless
PULUMI_CONFIG_PASSPHRASE is set), ``.dev/bin`` first on PATH, no plugin downloads, and the
stack ``local`` (created on first use) unless ``--stack``/``-s`` is given. Nothing that changes
what a command does: the arguments reach the CLI as typed, and the test bed's
``PULUMI_SKIP_CONFIRMATIONS`` is left out (it turns every command into ``--yes``, which
``destroy --preview-only`` refuses), so ``up`` and ``destroy`` ask or want ``--yes`` as anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from testbed import DEV_DIR  # noqa: E402
from testbed.pulumi_env import DEFAULT_PASSPHRASE, pulumi_env  # noqa: E402
from testbed.pulumi_program import run  # noqa: E402
from testbed.tools import tool_path  # noqa: E402

STACK = os.environ.get("MCP_PULUMI_STACK", "local")
STATE_DIR = DEV_DIR / "pulumi-state"
#: Test-bed settings that change what a command does; a person's command runs as typed.
CHANGES_COMMANDS = frozenset({"PULUMI_SKIP_CONFIRMATIONS"})
#: Commands that know nothing about stacks.
STACKLESS = {"version", "about", "login", "logout", "whoami", "plugin", "help", "gen-completion", "--help", "-h"}


def _has_stack(args: list[str]) -> bool:
    return any(a in ("-s", "--stack") or a.startswith("--stack=") for a in args)


def environment() -> dict[str, str]:
    """The process environment plus the local-stack settings (the caller's own values win)."""
    env = dict(os.environ)
    local = pulumi_env(STATE_DIR, passphrase=os.environ.get("PULUMI_CONFIG_PASSPHRASE", DEFAULT_PASSPHRASE))
    for key, value in local.items():
        if key in CHANGES_COMMANDS:
            continue
        if key == "PATH" or key not in env:
            env[key] = value
    return env


def _ensure_stack(pulumi: str, env: dict[str, str]) -> None:
    """Select the local stack, creating it the first time."""
    done = subprocess.run(
        [pulumi, "stack", "select", "--create", STACK, "--non-interactive"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(done.returncode)


def main(argv: list[str] | None = None) -> int:
    """Run ``pulumi <argv>`` for the root program; returns the CLI's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = environment()
    if args and args[0] not in STACKLESS and not _has_stack(args):
        _ensure_stack(str(tool_path("pulumi")), env)
    return run(REPO_ROOT, args, env)


if __name__ == "__main__":
    raise SystemExit(main())
