"""``install`` and ``uninstall``: one cluster connected through a Pulumi stack in the user's backend.

A user who never writes a Pulumi program gets what a program gives: McpConnector's
discovery, its checks, and above all the disconnect hook on ``uninstall``. The program is
inline (the Automation API runs it in this process), so this works with any Pulumi CLI,
whichever language hosts it has. The state lives where the user says (``--backend``,
``PULUMI_BACKEND_URL``; a local folder by default), encrypted by the user's passphrase or
secrets provider (``backend.py``), one stack per app cluster named after the cluster's API
server URL. The install's settings, secrets included, are a secret output of the stack, so
``uninstall`` needs nothing but the claim namespace, on any machine that reaches the backend.

``uninstall`` removes the component from the program and runs ``up``: the hook runs before
the APIServices go, without asking the control plane anything (Keep works when it is
gone). ``--on-disconnect`` first updates what the hook will do, which needs the control
plane. With no install state for the cluster, it looks in the cluster: a connector there
was installed some other way, and it says how to remove it (exit 1); none is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi import automation as auto

from mcp_connector_component import McpConnector, register_disconnect_hook
from mcp_connector_component.fleet import engine, finding
from mcp_connector_component.fleet.backend import StateBackend, StateError
from mcp_connector_component.fleet.backend import resolve as resolve_backend
from mcp_connector_component.fleet.values import ConnectorValues

PROJECT = "mcp-connector-install"
SETTINGS_OUTPUT = "settings"
RESOURCE_NAME = "mcp-connector"
CONNECT_TIMEOUT = 5.0


class InstallError(Exception):
    """Something the user can fix; the message says what, never a secret."""


@dataclass(frozen=True)
class Target:
    """Which app cluster, and where its install state is kept."""

    kubeconfig: str | None = None
    context: str | None = None
    cluster_name: str | None = None
    state_dir: str | None = None
    backend: str | None = None
    secrets_provider: str | None = None


@dataclass(frozen=True)
class Cluster:
    """The app cluster as the kubeconfig names it."""

    kubeconfig_path: Path
    kubeconfig: str
    context: str
    server: str

    @property
    def key(self) -> str:
        """State folder name: readable host and port, plus a hash of the whole URL."""
        parts = urlsplit(self.server)
        readable = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{parts.hostname}-{parts.port or 443}")
        return f"{readable}-{hashlib.sha256(self.server.encode()).hexdigest()[:10]}"

    def describe(self) -> str:
        """``https://host:port (context name)``."""
        return f"{self.server} (context {self.context})"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/mcp-connector`` or ``~/.local/state/mcp-connector``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mcp-connector"


def load_cluster(target: Target) -> Cluster:
    """Read the kubeconfig and find the context's API server; errors name the file and context."""
    path = Path(target.kubeconfig or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or "~/.kube/config")
    path = path.expanduser()
    try:
        text = path.read_text()
        config = yaml.safe_load(text) or {}
    except OSError as e:
        raise InstallError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except yaml.YAMLError:
        raise InstallError(f"kubeconfig {path} is not valid YAML") from None
    context = target.context or config.get("current-context")
    if not context:
        raise InstallError(f"kubeconfig {path} has no current context; give --context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    if context not in contexts:
        raise InstallError(f"kubeconfig {path} has no context {context!r}")
    clusters = {c.get("name"): c.get("cluster") or {} for c in config.get("clusters") or []}
    server = str(clusters.get(contexts[context].get("cluster"), {}).get("server") or "").rstrip("/")
    if not server:
        raise InstallError(f"kubeconfig {path}: context {context!r} has no cluster server URL")
    return Cluster(path, text, context, server)


def check_reachable(cluster: Cluster) -> None:
    """Fail early, with the URL, when nothing answers at the cluster's API server address."""
    parts = urlsplit(cluster.server)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise InstallError(f"cannot reach the app cluster at {cluster.describe()}: {reason}") from None


class Installs:
    """The install stacks of one app cluster in the user's backend, with a local work folder for logs.

    Stacks of every cluster may share one backend (a team's bucket), so a stack's name carries the
    cluster: ``<install name>.<cluster key>``.
    """

    def __init__(self, root: Path, cluster: Cluster, state: StateBackend) -> None:
        self.cluster = cluster
        self.state = state
        self.dir = root / "clusters" / cluster.key

    def stack_name(self, name: str) -> str:
        """The stack of install ``name`` of this cluster."""
        return f"{name}.{self.cluster.key}"

    def options(self) -> auto.LocalWorkspaceOptions:
        """A workspace on the user's backend and secrets provider, whatever the caller's ``pulumi login``."""
        (self.dir / "project").mkdir(parents=True, exist_ok=True)
        return auto.LocalWorkspaceOptions(
            work_dir=str(self.dir / "project"),
            project_settings=auto.ProjectSettings(
                name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=self.state.url)
            ),
            secrets_provider=self.state.secrets_provider,
            env_vars=dict(self.state.env),
        )

    def names(self) -> list[str]:
        """Installs recorded for this cluster (normally one)."""
        workspace = auto.LocalWorkspace(**_workspace_kwargs(self.options()))
        suffix = f".{self.cluster.key}"
        stacks = (s.name.rsplit("/", 1)[-1] for s in workspace.list_stacks())
        return sorted(s.removesuffix(suffix) for s in stacks if s.endswith(suffix))

    def stack(self, name: str, program: Callable[[], None]) -> auto.Stack:
        """Create or select the stack of install ``name`` with ``program``."""
        return auto.create_or_select_stack(
            stack_name=self.stack_name(name), project_name=PROJECT, program=program, opts=self.options()
        )


def _workspace_kwargs(opts: auto.LocalWorkspaceOptions) -> dict[str, Any]:
    return {
        "work_dir": opts.work_dir,
        "project_settings": opts.project_settings,
        "secrets_provider": opts.secrets_provider,
        "env_vars": opts.env_vars,
    }


class Program:
    """The install's inline program: McpConnector in the target cluster, or (no values) nothing."""

    def __init__(self, values: ConnectorValues | None, cluster: Cluster | None) -> None:
        self.values = values
        self.cluster = cluster

    def __call__(self) -> None:
        register_disconnect_hook()  # unconditionally: removing the connector must run the hook
        if self.values is None or self.cluster is None:
            return
        provider = k8s.Provider(
            "app-cluster",
            kubeconfig=pulumi.Output.secret(self.cluster.kubeconfig),
            context=self.cluster.context,
        )
        args: dict[str, Any] = dict(self.values.component_args())
        for key in ("token", "control_plane_kubeconfig"):
            if key in args:
                args[key] = pulumi.Output.secret(args[key])
        connector = McpConnector(
            RESOURCE_NAME,
            args,  # type: ignore[arg-type]
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
        )
        pulumi.export("clusterId", connector.cluster_id)
        pulumi.export("apiserviceNames", connector.apiservice_names)
        pulumi.export("controlPlaneNamespace", connector.control_plane_namespace)
        # In the state, encrypted: what uninstall (on this machine or another) needs to know.
        pulumi.export(SETTINGS_OUTPUT, pulumi.Output.secret(json.dumps(self.values.to_json())))


class Output:
    """Where Pulumi's own output goes: stderr with --verbose, else a log file in the state folder."""

    def __init__(self, log_file: Path, verbose: bool) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        self._file = log_file.open("w")
        self.verbose = verbose

    def __call__(self, line: str) -> None:
        self._file.write(line)
        self._file.flush()
        if self.verbose:
            sys.stderr.write(line)

    def close(self) -> None:
        """Close the log file."""
        self._file.close()


def _up(stack: auto.Stack, out: Output, watch: engine.Watch) -> auto.UpResult:
    """``up``, removing a lock that an interrupted earlier run left behind (once)."""
    try:
        return stack.up(on_output=out, on_event=watch, color="never")
    except auto.errors.CommandError as e:
        stale = engine.only_stale_locks(e)
        if not stale:
            raise
        pids = ", ".join(str(lock.pid) for lock in stale)
        sys.stderr.write(f"removing the lock an interrupted run left (pid {pids}, no longer running)\n")
        stack.cancel()
        return stack.up(on_output=out, on_event=watch, color="never")


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 1


def _installs(target: Target, cluster: Cluster) -> Installs:
    """The cluster's installs in the backend the user named (raises StateError)."""
    root = Path(target.state_dir) if target.state_dir else default_state_dir()
    state = resolve_backend(backend=target.backend, secrets_provider=target.secrets_provider, state_dir=root)
    return Installs(root, cluster, state)


def install(values: ConnectorValues, *, target: Target, verbose: bool = False) -> int:
    """Connect the target cluster (or update its install); returns the exit status."""
    try:
        cluster = load_cluster(target)
        installs = _installs(target, cluster)
        check_reachable(cluster)
    except (InstallError, StateError) as e:
        return _fail(str(e))
    name = target.cluster_name or values.claim_namespace or "default"
    try:
        others = [s for s in installs.names() if s != name]
    except auto.errors.CommandError as e:
        return _fail(f"cannot read the install state in {installs.state.describe()}: {engine.error_text(e)}")
    if others:
        return _fail(
            f"cluster {cluster.describe()} is already connected as {others[0]!r} (one connector per cluster); "
            f"run 'mcp-connector uninstall' for it first, or give --cluster-name {others[0]}"
        )
    sys.stderr.write(
        f"Connecting {cluster.describe()} to claim namespace {values.claim_namespace!r}"
        f" (install {name!r}, state in {installs.state.describe()})\n"
    )
    watch = engine.Watch()
    out = Output(installs.dir / "logs" / f"{name}-install.log", verbose)
    try:
        stack = installs.stack(name, Program(values, cluster))
        result = _up(stack, out, watch)
    except auto.errors.CommandError as e:
        return _fail(f"install failed: {engine.error_text(e, watch)} (Pulumi's output: {out.log_file})")
    finally:
        out.close()
    outputs = {k: v.value for k, v in result.outputs.items()}
    apiservices = outputs.get("apiserviceNames") or []
    print(f"connected: cluster ID {outputs.get('clusterId')}, claim namespace {outputs.get('controlPlaneNamespace')}")
    print(f"APIServices ({len(apiservices)}): {', '.join(apiservices) or 'none yet'}")
    print(f"changes: {watch.change_text()}")
    return 0


#: What to do about a connector found without install state, by its ``managed-by`` label.
_HOW_TO_REMOVE = {
    "pulumi": "it was installed by 'mcp-connector install' with another state backend, or by a Pulumi program: "
    "run uninstall with the backend it was installed with (--backend or PULUMI_BACKEND_URL, with its passphrase "
    "or --secrets-provider), or 'pulumi destroy --run-program' on the program's stack",
    "mcp-connector-render": "it was applied from 'mcp-connector render' manifests: delete them "
    "('kubectl delete -f', or remove them from your GitOps repository)",
    "Helm": "it was installed with Helm (Upbound's chart): 'up ctp connector uninstall' or 'helm uninstall'",
}


def _not_installed_here(installs: Installs) -> int:
    """No state for this cluster: look in the cluster, so a connector installed elsewhere is never missed."""
    cluster, where = installs.cluster, installs.state.describe()
    try:
        found = finding.look(cluster.kubeconfig_path, cluster.context)
    except finding.LookError as e:
        return _fail(
            f"no mcp-connector install for {cluster.describe()} in {where}, and the cluster could not be "
            f"checked for a connector installed another way: {e}"
        )
    if not found:
        print(f"nothing to uninstall: no mcp-connector install for {cluster.describe()} in {where}, "
              "and no connector in the cluster")  # fmt: skip
        return 0
    hints = [_HOW_TO_REMOVE[m] for m in found.managed_by if m in _HOW_TO_REMOVE] or [_HOW_TO_REMOVE["pulumi"]]
    return _fail(
        f"no mcp-connector install for {cluster.describe()} in {where}, but the cluster runs a connector: "
        f"{found.describe()}. Nothing was changed. " + "; or ".join(hints)
    )


def _settings(stack: auto.Stack) -> ConnectorValues | None:
    """The install's settings from its state (None when the install never finished)."""
    output = stack.outputs().get(SETTINGS_OUTPUT)
    return ConnectorValues.from_json(json.loads(output.value)) if output is not None else None


def uninstall(
    claim_namespace: str,
    *,
    target: Target,
    on_disconnect: str | None = None,
    installation_namespace: str | None = None,
    verbose: bool = False,
) -> int:
    """Disconnect the target cluster through its install's stack; without one, look in the cluster."""
    try:
        cluster = load_cluster(target)
        installs = _installs(target, cluster)
        names = installs.names()
    except (InstallError, StateError) as e:
        return _fail(str(e))
    except auto.errors.CommandError as e:
        return _fail(f"cannot read the install state: {engine.error_text(e)}")
    name = target.cluster_name or claim_namespace
    if not names:
        return _not_installed_here(installs)
    if name not in names:
        return _fail(
            f"cluster {cluster.describe()} is connected as {names[0]!r}, not {name!r}; give --cluster-name {names[0]}"
        )
    try:
        check_reachable(cluster)
    except InstallError as e:
        return _fail(str(e))
    program = Program(None, None)
    watch = engine.Watch()
    out = Output(installs.dir / "logs" / f"{name}-uninstall.log", verbose)
    try:
        stack = installs.stack(name, program)
        settings = _settings(stack)
        if settings is not None and settings.claim_namespace != claim_namespace:
            return _fail(
                f"install {name!r} connects claim namespace {settings.claim_namespace!r}, not {claim_namespace!r}"
            )
        if settings is not None and installation_namespace and installation_namespace != settings.namespace:
            return _fail(f"install {name!r} is in namespace {settings.namespace!r}, not {installation_namespace!r}")
        if on_disconnect and settings is None:
            return _fail(f"install {name!r} never finished, so its disconnect cannot be changed; uninstall without "
                         "--on-disconnect (it runs what the install had set, Keep by default)")  # fmt: skip
        if on_disconnect and settings is not None and on_disconnect != (settings.on_disconnect or "Keep"):
            sys.stderr.write(f"setting on-disconnect to {on_disconnect} before disconnecting\n")
            program.values, program.cluster = replace(settings, on_disconnect=on_disconnect), cluster
            _up(stack, out, engine.Watch())
            program.values, program.cluster = None, None
        sys.stderr.write(f"Disconnecting {cluster.describe()} (install {name!r}); the disconnect hook runs first\n")
        _up(stack, out, watch)
    except auto.errors.CommandError as e:
        return _fail(
            f"uninstall failed: {engine.error_text(e, watch)} (Pulumi's output: {out.log_file}); re-run to finish"
        )
    finally:
        out.close()
    for message in watch.hook_messages:
        print(message)
    stack.workspace.remove_stack(installs.stack_name(name))
    print(f"disconnected: {watch.change_text()}")
    return 0
