"""An inline Pulumi program around McpConnector for the e2e tests, runnable in-process or as a child.

The tests change what the program declares between operations (credentials, on_disconnect,
whether the component exists) through a ``Setting``; the same program can be run by a
separate process (``python component_stack.py destroy <work_dir> <setting.json>``) so a test
can kill it in the middle of the disconnect hook without killing pytest.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import pulumi  # noqa: E402
import pulumi_kubernetes as k8s  # noqa: E402
from pulumi import automation as auto  # noqa: E402

from mcp_connector_component import McpConnector, register_disconnect_hook  # noqa: E402
from testbed.pulumi_env import inline_stack  # noqa: E402

PROJECT = "mcp-connector-e2e"
SECRET_ARGS = ("token", "control_plane_kubeconfig")


@dataclass
class Setting:
    """What the program declares: the component's args, or nothing (``connect=False``)."""

    app_kubeconfig: str  # contents of the app cluster's kubeconfig
    args: dict[str, Any] = field(default_factory=dict)
    name: str = "mcp-connector"
    connect: bool = True
    #: Earlier names of the component (``aliases``), for renames that keep its children.
    aliases: list[str] = field(default_factory=list)
    #: More McpConnectors in the same program: name -> args.
    others: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Pass control_plane_kubeconfig through a Secret the program creates, so previews see it unknown.
    late_credentials: bool = False
    #: ``protect`` on the McpConnector (its children inherit it).
    protect: bool = False
    #: A claim (manifest) the program creates through the app cluster with ``depends_on=[connector]``.
    claim_after: dict[str, Any] | None = None

    def save(self, path: Path) -> None:
        """Write for a child process."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Setting:
        """Read what ``save`` wrote."""
        return cls(**json.loads(path.read_text()))


class Program:
    """The inline program; reads ``self.setting`` each time the engine runs it."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting

    def __call__(self) -> None:
        register_disconnect_hook()  # unconditionally, as every program using McpConnector must
        s = self.setting
        if not s.connect:
            return
        provider = k8s.Provider("app-cluster", kubeconfig=s.app_kubeconfig)

        def secret_args(args: dict[str, Any]) -> Any:
            return {k: pulumi.Output.secret(v) if k in SECRET_ARGS else v for k, v in args.items()}

        opts = pulumi.ResourceOptions(
            providers={"kubernetes": provider}, aliases=[pulumi.Alias(name=a) for a in s.aliases], protect=s.protect
        )
        args = secret_args(s.args)
        if s.late_credentials:
            source = k8s.core.v1.Secret(
                "late-credentials",
                metadata={"namespace": "default"},
                string_data={"kubeconfig": args["control_plane_kubeconfig"]},
                opts=pulumi.ResourceOptions(provider=provider),
            )
            # An output of another resource: unknown in a preview until that resource exists.
            args["control_plane_kubeconfig"] = pulumi.Output.secret(
                source.id.apply(lambda _: s.args["control_plane_kubeconfig"])
            )
        connector = McpConnector(s.name, args, opts=opts)
        for name, args in s.others.items():
            McpConnector(name, secret_args(args), opts=pulumi.ResourceOptions(providers={"kubernetes": provider}))
        if s.claim_after is not None:
            manifest = s.claim_after
            on_app = pulumi.ResourceOptions(provider=provider)
            namespace = k8s.core.v1.Namespace(
                "claim-namespace", metadata={"name": manifest["metadata"]["namespace"]}, opts=on_app
            )
            k8s.apiextensions.CustomResource(
                "claim",
                api_version=manifest["apiVersion"],
                kind=manifest["kind"],
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=pulumi.ResourceOptions(provider=provider, depends_on=[connector, namespace]),
            )
        pulumi.export("clusterId", connector.cluster_id)
        pulumi.export("appClusterUid", connector.app_cluster_uid)
        pulumi.export("claimApis", connector.claim_apis)
        pulumi.export("apiserviceNames", connector.apiservice_names)
        pulumi.export("controlPlaneNamespace", connector.control_plane_namespace)


def open_stack(work_dir: Path, program: Program, stack_name: str = "e2e") -> auto.Stack:
    """Create or select the stack; state lives in ``work_dir/state`` (file backend)."""
    return inline_stack(stack_name, PROJECT, program, work_dir)


def main(argv: list[str]) -> int:
    """Child-process entry: ``destroy <work_dir> <setting.json> [stack]`` with run_program."""
    command, work_dir, setting_file = argv[:3]
    stack_name = argv[3] if len(argv) > 3 else "e2e"
    program = Program(Setting.load(Path(setting_file)))
    stack = open_stack(Path(work_dir), program, stack_name)
    if command == "destroy":
        stack.destroy(run_program=True, on_output=print)
    elif command == "up":
        stack.up(on_output=print)
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
