"""Run the real Pulumi CLI on a Python program folder, serving the program from this process.

``pulumi-language-python`` cannot be built here (its Go module is not served), so the CLI
cannot start a Python program itself. The Python SDK ships the language server the
Automation API uses for inline programs (``pulumi.automation._server.LanguageServer``):
this module hosts it on 127.0.0.1 around the folder's ``__main__.py`` and passes the CLI
``--client=<addr> --exec-kind auto.inline``, only for commands that run the program (up,
preview, and destroy/refresh with ``--run-program``). Everything else about the run is the
real CLI and engine: stack config, state, plugins, resource hooks.

    python -m testbed.pulumi_program [--project DIR] [--no-await-deployments] -- <pulumi args>

``--no-await-deployments`` adds ``pulumi.com/skipAwait: "true"`` to every Deployment, Service
and APIService the program declares (a stack transform registered before the program runs),
for a program whose pods the test bed does not run: Pulumi would otherwise wait for ready pods,
endpoints and Available APIServices that never come.
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pulumi
from pulumi.automation._server import LanguageServer
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import language_pb2_grpc

from testbed.tools import tool_path

#: Commands that always run the program, and those that do with --run-program.
RUNS_PROGRAM = {"up", "update", "preview", "pre"}
RUNS_PROGRAM_IF_ASKED = {"destroy", "down", "refresh"}
SKIP_AWAIT = "pulumi.com/skipAwait"


def runs_program(args: Sequence[str]) -> bool:
    """Whether the CLI will ask for the program with these arguments."""
    if not args:
        return False
    command = args[0]
    if command in RUNS_PROGRAM:
        return True
    asked = any(a in ("--run-program", "--run-program=true") for a in args)
    return command in RUNS_PROGRAM_IF_ASKED and asked


#: What waits for the connector's pods: the Deployment, its Service's endpoints and the APIServices.
AWAITS_PODS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:core/v1:Service",
    "kubernetes:apiregistration.k8s.io/v1:APIService",
}


def _skip_await_deployments(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    if args.type_ not in AWAITS_PODS:
        return None
    props: dict[str, Any] = dict(args.props)
    metadata = dict(props.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), SKIP_AWAIT: "true"}
    props["metadata"] = metadata
    # No options back (the engine keeps them): Pulumi's Python SDK 3.272 cannot return the options
    # of a resource with a replacement_trigger (README Known limits).
    return pulumi.ResourceTransformResult(props=props, opts=None)  # type: ignore[arg-type]


def program_of(main: Path, *, await_deployments: bool = True) -> Any:
    """The inline program: runs ``main`` as ``__main__``, as the Python language host would."""

    def program() -> None:
        if not await_deployments:
            pulumi.runtime.register_resource_transform(_skip_await_deployments)
        runpy.run_path(str(main), run_name="__main__")

    return program


def run(
    project: Path,
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    await_deployments: bool = True,
) -> int:
    """Run ``pulumi <args>`` in ``project`` with its ``__main__.py`` served here; the CLI's exit code."""
    args = list(args)
    server = None
    if runs_program(args):
        program = program_of(project / "__main__.py", await_deployments=await_deployments)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=_GRPC_CHANNEL_OPTIONS)
        language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageServer(program), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        args += [f"--client=127.0.0.1:{port}", "--exec-kind", "auto.inline"]
    environment = dict(os.environ if env is None else env)
    environment["PULUMI_DEBUG_COMMANDS"] = "true"  # as the Automation API does for --client/--exec-kind
    # Ctrl-C reaches the CLI too; it cancels cleanly and still needs our language server meanwhile.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = subprocess.Popen([str(tool_path("pulumi")), *args], cwd=project, env=environment)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m testbed.pulumi_program", description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="program folder (default: here)")
    parser.add_argument("--no-await-deployments", action="store_true", help="skipAwait on every Deployment")
    parser.add_argument("pulumi_args", nargs=argparse.REMAINDER, help="-- then the pulumi command")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    pulumi_args = options.pulumi_args[1:] if options.pulumi_args[:1] == ["--"] else options.pulumi_args
    return run(options.project.resolve(), pulumi_args, await_deployments=not options.no_await_deployments)


if __name__ == "__main__":
    raise SystemExit(main())
