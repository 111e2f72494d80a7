"""The ``mcp-connector`` command (also the container entrypoint): ``mcp-connector serve [flags]``.

options → validate (every error, with flag names) → config → run; exit status 2 for bad
flags, 1 when the clusters cannot be used, so a crash-looping pod says which.

The fleet commands (``install``, ``uninstall``, ``render``, ``rollout``) need Pulumi and the
component's manifest builders, which this package (and the image) must not carry. They live
in the component package, which registers them under the ``mcp_connector.commands`` entry
point group; this module only looks them up by name, like ``git`` or ``kubectl`` plugins,
and says which package to install when one is missing.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

import uvloop

from mcp_connector.connector import config, logs, memory, options, server

#: Entry point group under which other packages add subcommands: ``name = "module:function"``,
#: where the function takes the arguments after the command name and returns an exit status.
COMMANDS_GROUP = "mcp_connector.commands"
#: Commands the component package provides, so their absence gets a useful message.
COMPONENT_COMMANDS = ("install", "uninstall", "render", "rollout")
COMPONENT_PACKAGE = "mcp-connector-component"

USAGE = """\
Serve a Crossplane control plane's claim APIs inside a Kubernetes app cluster, and connect clusters.

Usage:
  mcp-connector <command> [flags]

Commands:
  serve       Run the connector (the aggregated API server)
  install     Connect an app cluster to a control plane (a Pulumi stack kept on this machine)
  uninstall   Disconnect an app cluster; runs the disconnect hook
  render      Print the manifests that connect a cluster, for kubectl apply, Argo CD or Flux
  rollout     Preview or update the stacks of a Pulumi program, in waves

Use "mcp-connector <command> --help" for more information about a command.
"""

Command = Callable[[list[str]], int]


def plugin(name: str) -> Command | None:
    """The subcommand ``name`` registered by an installed package, or None."""
    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name == name:
            command: Command = entry.load()
            return command
    return None


def serve(args: Sequence[str]) -> int:
    """``mcp-connector serve``: validate every flag, build the config, run until stopped."""
    opts = options.parse(args)
    problems = options.validate(opts)
    if problems:
        for problem in problems:
            print(f"mcp-connector serve: {problem}", file=sys.stderr)
        return 2
    logs.setup(opts.get("log-level") or "info")
    memory.give_back_large_blocks()
    try:
        cfg = config.build(opts)
        # uvloop: the event loop on libuv, a measured share of the connector's CPU per request (bench/).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(server.run(cfg))
    except config.ConfigError as e:
        print(f"mcp-connector serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        (sys.stdout if args else sys.stderr).write(USAGE)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "serve":
        return serve(rest)
    command = plugin(name)
    if command is not None:
        return command(rest)
    if name in COMPONENT_COMMANDS:
        print(
            f'error: "mcp-connector {name}" needs the {COMPONENT_PACKAGE} package (it brings Pulumi and the '
            f"McpConnector component): pip install {COMPONENT_PACKAGE}",
            file=sys.stderr,
        )
        return 1
    print(
        f'error: unknown command "{name}" for "mcp-connector"\nRun "mcp-connector --help" for usage.', file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
