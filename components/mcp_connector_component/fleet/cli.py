"""``mcp-connector install | uninstall | render | rollout``: the fleet commands' flags and help.

Registered as ``mcp_connector.commands`` entry points, so ``mcp-connector <command>`` finds
them when this package is installed; each function takes the arguments after the command
name and returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_connector_component.fleet import render as rendering
from mcp_connector_component.fleet.commandline import CommandParser, UsageError, fail
from mcp_connector_component.fleet.values import ConnectorValues, ValuesError, resolve


def _parsed(p: CommandParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """``argv`` parsed, or the exit status when there is nothing left to do (0 help shown, 2 bad input)."""
    try:
        args = p.parse(argv)
    except UsageError as e:
        return fail(p.prog, str(e), usage=True)
    return 0 if args is None else args


def _control_plane_arguments(p: CommandParser) -> None:
    """The positional arguments ``install`` and ``render`` share."""
    p.add_argument("control_plane", metavar="control-plane", help="name of the control plane")
    p.add_argument(
        "claim_namespace", metavar="claim-namespace", help="control-plane namespace for this cluster's claims"
    )


def _installation_namespace_flag(p: CommandParser, text: str) -> None:
    """``-n``: where the connector is installed (``render``/``install`` create it there, ``uninstall`` finds it).

    ``$MCP_CONNECTOR_NAMESPACE`` is its default, as for Upbound's ``up ctp connector``.
    """
    p.add_argument(
        "-n",
        "--installation-namespace",
        default=os.environ.get("MCP_CONNECTOR_NAMESPACE") or None,
        metavar="NAMESPACE",
        help=text,
    )


def _values_flags(p: CommandParser) -> None:
    """The flags ``install`` and ``render`` share (Upbound's names where they exist)."""
    p.add_argument(
        "--token", metavar="TOKEN", help="Upbound API token (with --account); stored encrypted, never printed"
    )
    p.add_argument("--account", metavar="ACCOUNT", help="Upbound account (organization) of the control plane")
    p.add_argument(
        "--control-plane-secret",
        metavar="NAME",
        help="existing Secret in the installation namespace whose 'kubeconfig' key reaches the control plane",
    )
    p.add_argument("--control-plane-kubeconfig", metavar="FILE", help="kubeconfig file for the control plane")
    _installation_namespace_flag(p, "namespace for the connector (default $MCP_CONNECTOR_NAMESPACE, else kube-system)")
    p.add_argument(
        "--cluster-id",
        metavar="ID",
        help="this cluster's ID in the control plane (default: UID of its kube-system namespace)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set values (repeatable; a.b=c,d=e)")
    p.add_argument("-f", "--file", action="append", default=[], metavar="values.yaml", help="values file (repeatable)")


def _values(
    prog: str, args: argparse.Namespace, *, claim_namespace: str | None, control_plane: str | None
) -> ConnectorValues:
    kubeconfig_text = None
    if args.control_plane_kubeconfig:
        try:
            kubeconfig_text = Path(args.control_plane_kubeconfig).read_text()
        except OSError as e:
            raise ValuesError(
                [f"--control-plane-kubeconfig: cannot read {args.control_plane_kubeconfig}: {e.strerror}"]
            ) from None
    flags: dict[str, Any] = {
        "claim_namespace": claim_namespace,
        "control_plane": control_plane,
        "token": args.token,
        "account": args.account,
        "control_plane_secret": args.control_plane_secret,
        "control_plane_kubeconfig": kubeconfig_text,
        "namespace": args.installation_namespace,
        "cluster_id": args.cluster_id,
        "on_disconnect": getattr(args, "on_disconnect", None),
    }
    return resolve(files=args.file, sets=args.set, flags=flags)


def _report_values_error(prog: str, error: ValuesError) -> int:
    for problem in error.problems:
        sys.stderr.write(f"error: {problem}\n")
    sys.stderr.write(f"See '{prog} --help' for usage.\n")
    return 2


# ---------------------------------------------------------------------------------------------- render

RENDER = "mcp-connector render"


def render_parser() -> CommandParser:
    """``render``'s flags and help."""
    p = CommandParser(
        prog=RENDER,
        usage=f"{RENDER} <control-plane> <claim-namespace> [flags]",
        description=(
            "Print the manifests that connect a cluster to a control plane, for kubectl apply, Argo CD or Flux.\n\n"
            "The same objects McpConnector creates, from the same values as 'install'. The connector keeps one\n"
            "APIService per claim API current itself (--manage-apiservices); they belong to its ClusterRole, so\n"
            "deleting the manifests removes them. Claims stay in the control plane (Keep). The output holds the\n"
            "control-plane credentials unless --control-plane-secret names an existing Secret."
        ),
        examples=(
            "  # Connect through an existing Secret holding the control-plane kubeconfig\n"
            "  mcp-connector render my-ctp team-a --control-plane-secret ctp-kubeconfig | kubectl apply -f -\n\n"
            "  # Same values file as helm or 'up ctp connector install', one file per object\n"
            "  mcp-connector render my-ctp team-a -f connector-values.yaml --output-dir clusters/dev-1/connector\n\n"
            "  # A connector running outside the cluster at connector.example.com:8443\n"
            "  mcp-connector render my-ctp team-a --control-plane-secret ctp --set mode=connector.example.com:8443"
        ),
    )
    _control_plane_arguments(p)
    _values_flags(p)
    p.add_argument(
        "--name", metavar="NAME", default=rendering.NAME, help="name of the connector's objects (default mcp-connector)"
    )
    p.add_argument("--create-namespace", action="store_true", help="include the installation namespace")
    p.add_argument("-o", "--output-dir", metavar="DIR", help="write one file per object into DIR instead of stdout")
    return p


def render(argv: Sequence[str]) -> int:
    """``mcp-connector render``."""
    args = _parsed(render_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        values = _values(RENDER, args, claim_namespace=args.claim_namespace, control_plane=args.control_plane)
        docs = rendering.objects(values, name=args.name, create_namespace=args.create_namespace)
    except ValuesError as e:
        return _report_values_error(RENDER, e)
    except ValueError as e:  # ManifestError, AccessError: messages name the value's key, not a secret
        return fail(RENDER, str(e), usage=True)
    if args.output_dir:
        for path in rendering.write_folder(Path(args.output_dir), docs):
            print(path)
    else:
        sys.stdout.write(rendering.to_yaml(docs))
    if values.credential_form() != "control_plane_secret":
        sys.stderr.write(
            "note: the output holds the control-plane credentials in a Secret; keep it out of git "
            "(or use --control-plane-secret)\n"
        )
    return 0


# ---------------------------------------------------------------------------------------------- install

INSTALL = "mcp-connector install"
UNINSTALL = "mcp-connector uninstall"


def _cluster_flags(p: CommandParser) -> None:
    p.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig of the app cluster (default $KUBECONFIG or ~/.kube/config)"
    )
    p.add_argument(
        "--context", metavar="NAME", help="kubeconfig context of the app cluster (default: its current context)"
    )
    p.add_argument(
        "--cluster-name",
        metavar="NAME",
        help="name of this install (its Pulumi stack); default: the claim namespace",
    )
    p.add_argument(
        "--backend",
        metavar="URL",
        help="Pulumi backend for the install state, shared by a team (s3://, azblob://, gs://, file://, "
        "https://; default $PULUMI_BACKEND_URL, else a folder in --state-dir)",
    )
    p.add_argument(
        "--secrets-provider",
        metavar="PROVIDER",
        help="encrypts the state's secrets: awskms://, azurekeyvault://, gcpkms://, hashivault:// or passphrase "
        "(default: passphrase from $PULUMI_CONFIG_PASSPHRASE or $PULUMI_CONFIG_PASSPHRASE_FILE; never stored)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where logs, and the state without --backend, are kept "
        "(default $MCP_CONNECTOR_STATE_DIR or ~/.local/state/mcp-connector)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show Pulumi's output")


def install_parser() -> CommandParser:
    """``install``'s flags and help."""
    p = CommandParser(
        prog=INSTALL,
        usage=f"{INSTALL} <control-plane> <claim-namespace> [flags]",
        description=(
            "Connect an app cluster to a control plane: the control plane's claim APIs are served in the cluster.\n\n"
            "Underneath is a Pulumi stack of McpConnector (one per cluster), so 'uninstall' runs the same disconnect\n"
            "hook as 'pulumi destroy'. Running install again updates it. The state goes to your backend (--backend or\n"
            "PULUMI_BACKEND_URL; a folder on this machine otherwise), encrypted with PULUMI_CONFIG_PASSPHRASE(_FILE)\n"
            "or --secrets-provider; share both with your team and any of you can update or uninstall it."
        ),
        examples=(
            "  # Connect the current context's cluster to an Upbound control plane\n"
            '  mcp-connector install my-ctp team-a --account my-org --token "$UP_TOKEN"\n\n'
            "  # A control plane reached through a kubeconfig kept in a Secret of the app cluster\n"
            "  mcp-connector install my-ctp team-a --control-plane-secret ctp-kubeconfig --context dev-1\n\n"
            "  # Helm-style values (mcp.*, upbound.*, spaces.controlPlane.*, clusterID)\n"
            "  mcp-connector install my-ctp team-a -f connector-values.yaml --set clusterID=dev-1\n\n"
            "  # State in the team's bucket, secrets encrypted with its KMS key\n"
            "  mcp-connector install my-ctp team-a --control-plane-secret ctp --backend s3://team-state \\\n"
            "      --secrets-provider awskms://alias/mcp-connector"
        ),
    )
    _control_plane_arguments(p)
    _values_flags(p)
    p.add_argument("--on-disconnect", choices=("Keep", "Release"), help="what uninstall does to claims (default Keep)")
    _cluster_flags(p)
    return p


def uninstall_parser() -> CommandParser:
    """``uninstall``'s flags and help."""
    p = CommandParser(
        prog=UNINSTALL,
        usage=f"{UNINSTALL} <claim-namespace> [flags]",
        description=(
            "Disconnect an app cluster installed with 'mcp-connector install'.\n\n"
            "The disconnect hook runs first: claims stay in the control plane with their labels (Keep), or are\n"
            "released as ordinary control-plane claims (--on-disconnect Release). Claims are never deleted.\n"
            "With no install state for the cluster in the backend, the cluster itself is checked: a connector\n"
            "installed another way is named with how to remove it (exit 1); no connector at all is a no-op."
        ),
        examples=(
            "  # Disconnect the current context's cluster, keeping its claims for a later reconnect\n"
            "  mcp-connector uninstall team-a\n\n"
            "  # Hand the claims over to the control plane for good\n"
            "  mcp-connector uninstall team-a --on-disconnect Release --context dev-1\n\n"
            "  # From another machine: the team's backend and passphrase\n"
            "  PULUMI_CONFIG_PASSPHRASE_FILE=~/.config/mcp/passphrase mcp-connector uninstall team-a --backend s3://team-state"
        ),
    )
    p.add_argument(
        "claim_namespace", metavar="claim-namespace", help="control-plane namespace of this cluster's claims"
    )
    p.add_argument("--on-disconnect", choices=("Keep", "Release"), help="override what happens to the claims")
    _installation_namespace_flag(
        p, "namespace of the connector, checked against the install (default $MCP_CONNECTOR_NAMESPACE)"
    )
    _cluster_flags(p)
    return p


def install(argv: Sequence[str]) -> int:
    """``mcp-connector install``."""
    args = _parsed(install_parser(), argv)
    if isinstance(args, int):
        return args
    from mcp_connector_component.fleet import installing

    try:
        values = _values(INSTALL, args, claim_namespace=args.claim_namespace, control_plane=args.control_plane)
    except ValuesError as e:
        return _report_values_error(INSTALL, e)
    return installing.install(values, target=_target(args), verbose=args.verbose)


def uninstall(argv: Sequence[str]) -> int:
    """``mcp-connector uninstall``."""
    args = _parsed(uninstall_parser(), argv)
    if isinstance(args, int):
        return args
    from mcp_connector_component.fleet import installing

    return installing.uninstall(
        args.claim_namespace,
        target=_target(args),
        on_disconnect=args.on_disconnect,
        installation_namespace=args.installation_namespace,
        verbose=args.verbose,
    )


def _target(args: argparse.Namespace) -> Any:
    from mcp_connector_component.fleet.installing import Target

    return Target(
        kubeconfig=args.kubeconfig,
        context=args.context,
        cluster_name=args.cluster_name,
        state_dir=args.state_dir or os.environ.get("MCP_CONNECTOR_STATE_DIR"),
        backend=args.backend,
        secrets_provider=args.secrets_provider,
    )


# ---------------------------------------------------------------------------------------------- rollout

ROLLOUT = "mcp-connector rollout"


def rollout_parser() -> CommandParser:
    """``rollout``'s flags and help."""
    p = CommandParser(
        prog=ROLLOUT,
        usage=f"{ROLLOUT} [flags]",
        description=(
            "Preview or update every stack of a Pulumi program (one stack per app cluster), in waves.\n\n"
            "Stacks run in the order of the --wave patterns; a failure in a wave stops the later waves. Within a\n"
            "wave at most --parallel stacks run at once, each in a working directory of its own. Re-running after\n"
            "a failure or an interruption picks up where it stopped."
        ),
        examples=(
            "  # What would change on every stack, with the APIServices each would add\n"
            "  mcp-connector rollout --preview\n\n"
            "  # dev first, then staging, then production, two clusters at a time\n"
            "  mcp-connector rollout --wave 'dev-*' --wave 'staging-*' --wave 'prod-*' --parallel 2\n\n"
            "  # Only the EU production stacks, of the program in ./platform\n"
            "  mcp-connector rollout -C platform --stack 'prod-eu-*'"
        ),
    )
    p.add_argument("--preview", action="store_true", help="only preview: show each stack's changes, change nothing")
    p.add_argument(
        "-s",
        "--stack",
        action="append",
        default=[],
        metavar="PATTERN",
        help="stacks to include (repeatable; default all)",
    )
    p.add_argument(
        "--wave", action="append", default=[], metavar="PATTERN", help="one wave of stacks, in order (repeatable)"
    )
    p.add_argument(
        "-p", "--parallel", type=int, default=1, metavar="N", help="stacks at once within a wave (default 1)"
    )
    p.add_argument("-C", "--cwd", default=".", metavar="DIR", help="folder of the program's Pulumi.yaml (default .)")
    p.add_argument(
        "--inline",
        choices=("auto", "always", "never"),
        default="auto",
        help="run a Python program in-process via the Automation API (auto: when pulumi-language-python is missing)",
    )
    p.add_argument("--log-dir", metavar="DIR", help="where each stack's Pulumi output goes (default: a temp folder)")
    return p


def rollout(argv: Sequence[str]) -> int:
    """``mcp-connector rollout``."""
    args = _parsed(rollout_parser(), argv)
    if isinstance(args, int):
        return args
    from mcp_connector_component.fleet import rolling

    if args.parallel < 1:
        return fail(ROLLOUT, "--parallel must be at least 1", usage=True)
    return rolling.main(
        project_dir=Path(args.cwd),
        preview=args.preview,
        stacks=args.stack,
        waves=args.wave,
        parallel=args.parallel,
        inline=args.inline,
        log_dir=Path(args.log_dir) if args.log_dir else None,
    )
