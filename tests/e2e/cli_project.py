"""A Pulumi project folder run through the real ``pulumi`` CLI, as a person runs it.

``CliProject.copy_of(folder, ...)`` copies a program (an example, the root program, test
data) into the test's own folder, with its own ``file://`` backend, so runs never write
stack files into the repository. ``run`` starts the CLI as a child process:

* YAML programs: plain ``pulumi <args>``; the engine starts ``pulumi-language-yaml`` and the
  plugins it needs from ``.dev/bin`` (the kubernetes provider, and the McpConnector provider
  host as ``pulumi-resource-mcp-connector``).
* Python programs: ``python -m testbed.pulumi_program -- <args>``, which serves the folder's
  ``__main__.py`` to the CLI with the SDK's own language server (no ``pulumi-language-python``
  here); the CLI and engine are the same.
* TypeScript and Go programs (prepared by ``make examples``): the same, with the Node.js SDK's
  language server around the compiled program (``testbed/inline/pulumi_program.js``) or a Go
  main built beside the program (``testbed/inline/inline_driver.go``, in place of ``main.go``).

A failed command fails the test with the CLI's output; nothing is retried or skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed import REPO_ROOT
from testbed.pulumi_env import pulumi_env
from testbed.sdks import SDK_DIR, TS_PROGRAM
from testbed.tools import tool_path

#: Longest a single CLI command may take (an up that waits on a stuck resource fails, not hangs).
COMMAND_TIMEOUT = 600
#: Serves a compiled TypeScript program to the CLI (the Node.js SDK's inline language server).
NODE_RUNNER = REPO_ROOT / "testbed" / "inline" / "pulumi_program.js"
#: A Go main that serves a program's ``connect`` function to the CLI; replaces the example's main.go.
GO_DRIVER = REPO_ROOT / "testbed" / "inline" / "inline_driver.go"
#: The runner a Go project copy is built into.
GO_RUNNER = "run"


def _ready_typescript(project: Path) -> None:
    """A TypeScript copy runs as ``make examples`` left it: its SDK, node_modules and bin/ are there."""
    for needed in (SDK_DIR, Path("node_modules"), TS_PROGRAM):
        if not (project / needed).exists():
            raise AssertionError(f"{project.name} has no {needed}: run make examples first")


def _ready_go(project: Path) -> None:
    """Build the Go copy's runner: the example's program with the inline driver instead of main.go."""
    if not (project / SDK_DIR).is_dir():
        raise AssertionError(f"{project.name} has no {SDK_DIR}: run make examples first")
    (project / "main.go").unlink()
    shutil.copy2(GO_DRIVER, project / GO_DRIVER.name)
    built = subprocess.run(
        ["go", "build", "-o", GO_RUNNER, "."],
        cwd=project,
        env={**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if built.returncode != 0:
        raise AssertionError(f"go build of the Go example's runner failed:\n{built.stdout}{built.stderr}")


#: Runtimes whose programs run inline: how a fresh copy becomes runnable.
INLINE_RUNNERS = {"nodejs": _ready_typescript, "go": _ready_go}


@dataclass
class CliProject:
    """A program folder with its own state, run by the real CLI."""

    dir: Path
    runtime: str
    env: dict[str, str] = field(default_factory=dict)
    await_deployments: bool = True

    @property
    def python(self) -> bool:
        """Whether the program is Python (served by ``testbed.pulumi_program``)."""
        return self.runtime == "python"

    @classmethod
    def copy_of(
        cls,
        source: Path,
        work: Path,
        *,
        files: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        await_deployments: bool = True,
    ) -> CliProject:
        """Copy ``source`` (or only ``files`` of it) to ``work/project``; state goes to ``work/state``."""
        project = work / "project"
        if files is None:
            shutil.copytree(
                source,
                project,
                ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__", "venv"),
                symlinks=True,
            )
        else:
            project.mkdir(parents=True)
            for name in files:
                shutil.copy2(source / name, project / name)
        runtime = yaml_runtime(project / "Pulumi.yaml")
        if runtime in INLINE_RUNNERS:
            INLINE_RUNNERS[runtime](project)
        return cls(
            dir=project,
            runtime=runtime,
            env={**os.environ, **pulumi_env(work / "state"), **(env or {})},
            await_deployments=await_deployments,
        )

    def command(self, args: Sequence[str]) -> list[str]:
        """The argv that runs ``pulumi <args>`` for this project."""
        if self.runtime == "nodejs":
            return ["node", str(NODE_RUNNER), str(self.dir), str(self.dir / TS_PROGRAM), "--", *args]
        if self.runtime == "go":
            return [str(self.dir / GO_RUNNER), *args]
        if not self.python:
            return [str(tool_path("pulumi")), *args]
        runner = [sys.executable, "-m", "testbed.pulumi_program", "--project", str(self.dir)]
        if not self.await_deployments:
            runner.append("--no-await-deployments")
        return [*runner, "--", *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        merge_stderr: bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``pulumi <args>``; by default stdout and stderr together in ``.stdout``; fails the test on error."""
        env = dict(self.env)
        env["PULUMI_CLI"] = str(tool_path("pulumi"))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        done = subprocess.run(
            self.command(args),
            cwd=self.dir,
            env=env,
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + (done.stderr or "")
        sys.stdout.write(f"$ pulumi {' '.join(args)}\n{output}\n")  # shown by pytest on failure
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} exited with {done.returncode}:\n{output[-6000:]}")
        return done

    def init_stack(self, name: str, config: Mapping[str, str], secrets: Mapping[str, str] | None = None) -> None:
        """Create the stack and set its config; secrets go through stdin, never the command line."""
        self.run("stack", "init", name, "--non-interactive")
        for key, value in config.items():
            self.run("config", "set", key, "--", value)
        for key, value in (secrets or {}).items():
            self.run("config", "set", "--secret", key, input=value)

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs (secrets shown)."""
        result: dict[str, Any] = json.loads(
            self.run("stack", "output", "--json", "--show-secrets", merge_stderr=False).stdout
        )
        return result


def yaml_runtime(pulumi_yaml: Path) -> str:
    """The runtime name a Pulumi.yaml declares (``runtime: x`` or ``runtime: {name: x}``)."""
    runtime = yaml.safe_load(pulumi_yaml.read_text())["runtime"]
    return str(runtime["name"] if isinstance(runtime, dict) else runtime)
