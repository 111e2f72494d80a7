"""One way to run Pulumi offline against the test bed, shared by tests and scripts.

Why it looks like this:

* The CLI and the kubernetes provider are our own builds in ``.dev/bin``; nothing may be
  downloaded, so automatic plugin acquisition is off and ``.dev/bin`` leads PATH (the engine
  uses a ``pulumi-resource-<name>`` found on PATH as it is).
* ``pulumi-language-python`` cannot be built here (its Go module is not served), so Python
  programs run *inline* through the Automation API: the SDK hosts its own language server in
  this process and the CLI connects to it (``--client``). Programs are Python callables.
* State lives in a ``file://`` backend inside the caller's folder and a private PULUMI_HOME
  under ``.dev``, so runs never touch ``~/.pulumi`` or a Pulumi Cloud login.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from testbed import DEV_DIR
from testbed.tools import BIN_DIR, PULUMI_TOOLS, require

#: ``PulumiCommand(root=...)`` runs ``<root>/bin/pulumi``; build-tools.sh links it to .dev/bin.
PULUMI_ROOT = DEV_DIR

#: Private PULUMI_HOME (plugin cache, workspace metadata) so ~/.pulumi is never read or written.
PULUMI_HOME = DEV_DIR / "pulumi-home"

#: Passphrase of the passphrase secrets provider; test data only.
DEFAULT_PASSPHRASE = "mcp-testbed-passphrase"

InlineProgram = Callable[[], None]


def pulumi_env(
    backend_dir: Path, *, passphrase: str = DEFAULT_PASSPHRASE, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment variables for any Pulumi invocation against the test bed.

    Usable for the Automation API (``env_vars``) and for running the ``pulumi`` CLI directly
    with ``subprocess`` (merge into ``os.environ``).
    """
    PULUMI_HOME.mkdir(parents=True, exist_ok=True)
    backend_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PULUMI_HOME": str(PULUMI_HOME),
        "PULUMI_BACKEND_URL": backend_url(backend_dir),
        "PULUMI_CONFIG_PASSPHRASE": passphrase,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_CONFIRMATIONS": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "PATH": os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")]),
    }
    if extra:
        env.update(extra)
    return env


def backend_url(backend_dir: Path) -> str:
    """The ``file://`` backend URL for a state folder."""
    return "file://" + str(backend_dir.resolve())


def pulumi_command() -> auto.PulumiCommand:
    """The CLI from .dev/bin, version-checked against the SDK; fails loudly if not built."""
    require(*PULUMI_TOOLS)
    return auto.PulumiCommand(root=str(PULUMI_ROOT))


def workspace_options(
    work_dir: Path,
    *,
    project_name: str,
    backend_dir: Path | None = None,
    passphrase: str = DEFAULT_PASSPHRASE,
    env: Mapping[str, str] | None = None,
) -> auto.LocalWorkspaceOptions:
    """LocalWorkspaceOptions for an inline Python project whose state lives in ``backend_dir``
    (default ``work_dir/state``)."""
    backend = backend_dir or (work_dir / "state")
    work_dir.mkdir(parents=True, exist_ok=True)
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=str(PULUMI_HOME),
        pulumi_command=pulumi_command(),
        project_settings=auto.ProjectSettings(
            name=project_name, runtime="python", backend=auto.ProjectBackend(url=backend_url(backend))
        ),
        env_vars=pulumi_env(backend, passphrase=passphrase, extra=env),
    )


def inline_stack(
    stack_name: str,
    project_name: str,
    program: InlineProgram,
    work_dir: Path,
    *,
    backend_dir: Path | None = None,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> auto.Stack:
    """Create or select a stack running ``program`` inline, with optional plain config values.

    ``config`` maps keys (``key`` or ``project:key``) to values; values that are
    ``auto.ConfigValue`` are set as they are (e.g. secrets).
    """
    stack = auto.create_or_select_stack(
        stack_name=stack_name,
        project_name=project_name,
        program=program,
        opts=workspace_options(work_dir, project_name=project_name, backend_dir=backend_dir, env=env),
    )
    if config:
        stack.set_all_config(
            {k: v if isinstance(v, auto.ConfigValue) else auto.ConfigValue(value=str(v)) for k, v in config.items()}
        )
    return stack
