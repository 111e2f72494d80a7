"""scripts/pulumi (testbed.pulumi_program) hosts the program only when needed; the hook registers once per run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest

from mcp_connector_component import HOOK_NAME, register_disconnect_hook

REPO = Path(__file__).resolve().parents[2]


def _wrapper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pulumi_wrapper", REPO / "scripts" / "pulumi_wrapper.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pulumi_wrapper", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "hosts"),
    [
        (["up"], True),
        (["up", "--yes"], True),
        (["preview", "--diff"], True),
        (["destroy"], False),
        (["destroy", "--run-program"], True),
        (["destroy", "--run-program=true", "--yes"], True),
        (["refresh", "--run-program"], True),
        (["refresh"], False),
        (["stack", "output"], False),
        (["config", "set", "x", "y"], False),
        ([], False),
    ],
)
def test_wrapper_hosts_the_program_only_when_the_cli_runs_it(args: list[str], hosts: bool) -> None:
    _wrapper()  # puts the repo root, and so the testbed package, on sys.path
    from testbed.pulumi_program import runs_program

    assert runs_program(args) is hosts


def test_hook_registers_once_per_program_run() -> None:
    seen: list[Any] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return (args.name, dict(args.inputs))

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
            return {}, None

    for _ in range(2):
        pulumi.runtime.set_mocks(Mocks())

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def program() -> None:
            first, second = register_disconnect_hook(), register_disconnect_hook()
            assert first is second and first.name == HOOK_NAME
            seen.append(first)

        program()
    assert seen[0] is not seen[1], "a new program run (new engine) gets its own registration"
