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
from testbed.tools import tool_path

#: Longest a single CLI command may take (an up that waits on a stuck resource fails, not hangs).
COMMAND_TIMEOUT = 600


@dataclass
class CliProject:
    """A program folder with its own state, run by the real CLI."""

    dir: Path
    python: bool
    env: dict[str, str] = field(default_factory=dict)
    await_deployments: bool = True

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
            shutil.copytree(source, project, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__", "venv"))
        else:
            project.mkdir(parents=True)
            for name in files:
                shutil.copy2(source / name, project / name)
        runtime = yaml_runtime(project / "Pulumi.yaml")
        return cls(
            dir=project,
            python=runtime == "python",
            env={**os.environ, **pulumi_env(work / "state"), **(env or {})},
            await_deployments=await_deployments,
        )

    def command(self, args: Sequence[str]) -> list[str]:
        """The argv that runs ``pulumi <args>`` for this project."""
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
