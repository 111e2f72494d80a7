"""A Pulumi program folder, and a working directory of its own for each stack a rollout runs at once.

Pulumi keeps the selected stack of a project in a workspace file keyed by the path of the
project's ``Pulumi.yaml``; the Automation API selects a stack (``pulumi stack select``)
whenever it opens one, and parallel selections in one folder overwrite each other's file.
Every later command names its stack (``--stack``), but the shared file is still written
concurrently. So each stack gets its own folder holding a copy of ``Pulumi.yaml`` that
points back at the real program: ``main`` (absolute, which Pulumi allows) and
``stackConfigDir`` (relative, which Pulumi joins onto the folder) lead to the original
program and its ``Pulumi.<stack>.yaml`` files, and a relative ``virtualenv`` is made
absolute. Config written during a run (e.g. a new secrets salt) lands in the original
stack file. The program itself runs from its own folder, as with a plain ``pulumi up``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ProjectError(Exception):
    """The folder holds no usable Pulumi project."""


@dataclass(frozen=True)
class Project:
    """A ``Pulumi.yaml`` and what it says."""

    file: Path
    settings: dict[str, Any]

    @property
    def dir(self) -> Path:
        """The folder of ``Pulumi.yaml``."""
        return self.file.parent

    @property
    def name(self) -> str:
        """The project name."""
        return str(self.settings.get("name") or "")

    @property
    def runtime(self) -> str:
        """The runtime's name (``python``, ``yaml``, ``nodejs``, ...)."""
        runtime = self.settings.get("runtime")
        return str(runtime.get("name") if isinstance(runtime, dict) else runtime or "")

    @property
    def main(self) -> Path:
        """The program's entry: its folder (or file), as Pulumi resolves ``main``."""
        return (self.dir / str(self.settings.get("main") or ".")).resolve()

    @property
    def python_entry(self) -> Path:
        """The file a Python program starts from (``__main__.py`` of a folder)."""
        return self.main / "__main__.py" if self.main.is_dir() else self.main

    @property
    def config_dir(self) -> Path:
        """Where the ``Pulumi.<stack>.yaml`` files are."""
        return (self.dir / str(self.settings.get("stackConfigDir") or ".")).resolve()


def load(folder: Path) -> Project:
    """Read ``Pulumi.yaml`` (or ``.yml``) in ``folder``."""
    for name in ("Pulumi.yaml", "Pulumi.yml"):
        path = (folder / name).resolve()
        if path.is_file():
            try:
                settings = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                raise ProjectError(f"{path} is not valid YAML") from None
            if not isinstance(settings, dict) or not settings.get("name") or not settings.get("runtime"):
                raise ProjectError(f"{path} needs a name and a runtime")
            return Project(path, settings)
    raise ProjectError(f"no Pulumi.yaml in {folder.resolve()} (give the program's folder with -C)")


def stack_folder(project: Project, stack: str, root: Path) -> Path:
    """A working directory for ``stack`` whose ``Pulumi.yaml`` leads back to ``project``."""
    folder = root / stack.replace("/", "_")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    settings = dict(project.settings)
    settings["main"] = str(project.main)
    settings["stackConfigDir"] = os.path.relpath(project.config_dir, folder)
    runtime = settings.get("runtime")
    if isinstance(runtime, dict) and isinstance(runtime.get("options"), dict):
        options = dict(runtime["options"])
        venv = options.get("virtualenv")
        if isinstance(venv, str) and not os.path.isabs(venv):
            options["virtualenv"] = str((project.dir / venv).resolve())
        settings["runtime"] = {**runtime, "options": options}
    (folder / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return folder
