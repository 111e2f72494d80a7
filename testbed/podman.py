"""Running the connector image with podman, the way this machine allows.

Tested here (TESTBED-NOTES, "Containers without a registry"): crun refuses the hybrid cgroup
layout, runc with cgroupfs works; without explicit ulimits podman asks for a higher
RLIMIT_NOFILE than the sandbox allows. Images only ever come from local storage (``make
image``): nothing is pulled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from typing import Any

from testbed import REPO_ROOT

#: podman's global flags for this machine.
GLOBAL_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
#: Per-container limits the sandbox accepts.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def image_ref() -> str:
    """The reference ``make image`` tags its build with: ``localhost/mcp-connector:<version>``."""
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"localhost/mcp-connector:{version}"


class PodmanError(RuntimeError):
    """podman is missing or failed; the message says what to run or what it said."""


def command(*args: str) -> list[str]:
    """The full podman command line for ``args``."""
    podman = shutil.which("podman")
    if podman is None:
        raise PodmanError("podman is not installed: run bash scripts/install-image-tools.sh (Debian packages)")
    return [podman, *GLOBAL_FLAGS, *args]


def run(
    *args: str, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run podman; with ``check`` a non-zero exit raises PodmanError with its stderr."""
    proc = subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, check=False, input=input)
    if check and proc.returncode != 0:
        raise PodmanError(f"podman {' '.join(args[:3])} ... failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def image_exists(ref: str) -> bool:
    """Whether ``ref`` is in local container storage."""
    return run("image", "exists", ref, check=False).returncode == 0


def inspect_image(ref: str) -> dict[str, Any]:
    """``podman image inspect`` of one image."""
    found: list[dict[str, Any]] = json.loads(run("image", "inspect", ref).stdout)
    return found[0]
