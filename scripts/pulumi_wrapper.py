"""Run the real Pulumi CLI on the root program's local stack, by hand: ``scripts/pulumi <args>``.

The Python language plugin cannot be built here, so the root program (``__main__.py``)
runs the way the Automation API runs inline programs: this process hosts the SDK's own
language server (``pulumi.automation._server.LanguageServer``) on 127.0.0.1 and the CLI
connects to it with ``--client=<addr> --exec-kind auto.inline``. That is only added to
commands that run the program (up, preview, destroy/refresh with ``--run-program``);
every other command passes straight through.

It also sets what a local run needs and a person should not have to remember: the file
backend under ``.dev/pulumi-state``, a development passphrase (unless
PULUMI_CONFIG_PASSPHRASE is set), ``.dev/bin`` first on PATH, no plugin downloads, and the
stack ``local`` (created on first use) unless ``--stack``/``-s`` is given.
"""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc  # type: ignore[import-untyped]
from pulumi.automation._server import LanguageServer
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import language_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from testbed import DEV_DIR  # noqa: E402
from testbed.pulumi_env import DEFAULT_PASSPHRASE, pulumi_env  # noqa: E402
from testbed.tools import tool_path  # noqa: E402

STACK = os.environ.get("MCP_PULUMI_STACK", "local")
STATE_DIR = DEV_DIR / "pulumi-state"
PROGRAM = REPO_ROOT / "__main__.py"
#: Commands that always run the program, and those that do with --run-program.
RUNS_PROGRAM = {"up", "update", "preview", "pre"}
RUNS_PROGRAM_IF_ASKED = {"destroy", "down", "refresh"}
#: Commands that know nothing about stacks.
STACKLESS = {"version", "about", "login", "logout", "whoami", "plugin", "help", "gen-completion", "--help", "-h"}


def runs_program(args: list[str]) -> bool:
    """Whether the CLI will ask for the program with these arguments."""
    if not args:
        return False
    command = args[0]
    if command in RUNS_PROGRAM:
        return True
    asked = any(a == "--run-program" or a == "--run-program=true" for a in args)
    return command in RUNS_PROGRAM_IF_ASKED and asked


def _has_stack(args: list[str]) -> bool:
    return any(a in ("-s", "--stack") or a.startswith("--stack=") for a in args)


def environment() -> dict[str, str]:
    """The process environment plus the local-stack settings (the caller's own values win)."""
    env = dict(os.environ)
    local = pulumi_env(STATE_DIR, passphrase=os.environ.get("PULUMI_CONFIG_PASSPHRASE", DEFAULT_PASSPHRASE))
    for key, value in local.items():
        if key == "PATH" or key not in env:
            env[key] = value
    env["PULUMI_DEBUG_COMMANDS"] = "true"  # as the Automation API does for --client/--exec-kind
    return env


def _program() -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")


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
    pulumi = str(tool_path("pulumi"))
    if args and args[0] not in STACKLESS and not _has_stack(args):
        _ensure_stack(pulumi, env)
    server = None
    if runs_program(args):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=_GRPC_CHANNEL_OPTIONS)
        language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageServer(_program), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        args += [f"--client=127.0.0.1:{port}", "--exec-kind", "auto.inline"]
    # Ctrl-C reaches the CLI too; it cancels cleanly and still needs our language server meanwhile.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = subprocess.Popen([pulumi, *args], cwd=REPO_ROOT, env=env)
        signal.signal(signal.SIGINT, previous)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue
    finally:
        signal.signal(signal.SIGINT, previous)
        if server is not None:
            server.stop(0)


if __name__ == "__main__":
    raise SystemExit(main())
