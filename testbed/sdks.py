"""Prepare the TypeScript and Go examples: McpConnector's SDK generated from the provider host, deps, checks.

What a user does once per project with ``pulumi package add ../../provider``, done with the
parts this machine has: the real CLI reads the schema off the component provider host
(``pulumi package get-schema`` on the executable plugin ``pulumi-resource-mcp-connector``), and
Pulumi's own code generators at the CLI's version write the SDK (``pulumi-sdkgen``, built by
``make tools``; ``pulumi package gen-sdk`` hands generation to ``pulumi-language-nodejs`` and
``pulumi-language-go``, whose Go modules are not served). Then the pinned dependencies are
installed (``npm ci`` from ``package-lock.json``; Go modules from ``go.sum``) and the programs
are type-checked (``tsc --noEmit``, ``go vet``) and built (``tsc`` into ``bin/``).

    python -m testbed.sdks [typescript] [go]     # default: both; make examples runs it
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from testbed import REPO_ROOT
from testbed.pulumi_env import pulumi_env
from testbed.tools import PROVIDER_PLUGIN, SDK_TOOLS, require, tool_path

EXAMPLES = {"typescript": REPO_ROOT / "examples" / "typescript", "go": REPO_ROOT / "examples" / "go"}
#: Where each language's project keeps the generated SDK (as ``pulumi package add`` does).
SDK_DIR = Path("sdks") / "mcp-connector"
#: The compiled TypeScript program the inline runner serves (tsconfig.json's outDir).
TS_PROGRAM = Path("bin") / "index.js"
#: Longest any one preparation step may take (npm ci and a cold go vet download and compile).
STEP_TIMEOUT = 900


def _env(scratch: Path) -> dict[str, str]:
    """The test bed's offline Pulumi settings (``pulumi_env``; its state in ``scratch``), Go and npm quiet."""
    return {
        **os.environ,
        **pulumi_env(scratch / "state"),
        "GOFLAGS": "-mod=readonly",
        "GOTOOLCHAIN": "local",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def _run(args: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str]) -> str:
    """Run one step; a failure names the step, its folder and its output."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    if done.returncode != 0:
        command = " ".join(map(str, args))
        output = done.stdout[-4000:] + done.stderr[-4000:]
        raise RuntimeError(f"{command} failed in {cwd} (exit {done.returncode}):\n{output}")
    return done.stdout


def provider_schema(env: Mapping[str, str]) -> str:
    """The component package's schema, as the real CLI reads it from the provider host."""
    with tempfile.TemporaryDirectory() as scratch:
        return _run(["pulumi", "package", "get-schema", tool_path(PROVIDER_PLUGIN)], cwd=Path(scratch), env=env)


def generate_sdk(project: Path, language: str, schema: Path, env: Mapping[str, str]) -> None:
    """Write the SDK for ``language`` ("nodejs" or "go") into the project's ``sdks/mcp-connector``."""
    out = project / SDK_DIR
    shutil.rmtree(out, ignore_errors=True)
    _run([tool_path("pulumi-sdkgen"), "-language", language, "-schema", schema, "-out", out], cwd=project, env=env)


def prepare_typescript(project: Path, schema: Path, env: Mapping[str, str]) -> None:
    """SDK, ``npm ci`` (the SDK's own postinstall compiles it), ``tsc --noEmit``, then ``tsc``."""
    generate_sdk(project, "nodejs", schema, env)
    _run(["npm", "ci"], cwd=project, env=env)
    _run(["npx", "--no-install", "tsc", "--noEmit"], cwd=project, env=env)
    _run(["npx", "--no-install", "tsc"], cwd=project, env=env)
    if not (project / TS_PROGRAM).is_file():
        raise RuntimeError(f"tsc wrote no {TS_PROGRAM} in {project}")


def prepare_go(project: Path, schema: Path, env: Mapping[str, str]) -> None:
    """SDK, then ``go vet`` (which downloads the modules go.sum pins and compiles the program)."""
    generate_sdk(project, "go", schema, env)
    _run(["go", "vet", "./..."], cwd=project, env=env)


PREPARE = {"typescript": prepare_typescript, "go": prepare_go}


def prepare(languages: Sequence[str]) -> None:
    """Prepare the named examples in place (their generated and installed files are git-ignored)."""
    require(*SDK_TOOLS)
    with tempfile.TemporaryDirectory() as scratch:
        env = _env(Path(scratch))
        schema = Path(scratch) / "schema.json"
        schema.write_text(provider_schema(env))
        for language in languages:
            PREPARE[language](EXAMPLES[language], schema, env)
            print(f"[examples] {language}: SDK generated, dependencies installed, checked", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m testbed.sdks", description=__doc__.split("\n")[0])
    parser.add_argument("languages", nargs="*", metavar="{go,typescript}", help="default: all")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    unknown = sorted(set(options.languages) - set(EXAMPLES))
    if unknown:
        parser.error(f"unknown language(s) {', '.join(unknown)}: expected {' or '.join(sorted(EXAMPLES))}")
    prepare(options.languages or sorted(EXAMPLES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
