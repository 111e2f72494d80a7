"""Helpers shared by the component e2e suites: stacks and settings (claims on both sides come from claims.py)."""

from __future__ import annotations

import contextlib
import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from claims import (
    CLUSTER_RESOURCE,
    DB_RESOURCE,
    INSTALL_KINDS,
)
from component_stack import Program, Setting, open_stack
from connector_fixtures import SERVICE_NAMESPACE, ConnectorProcess
from pulumi import automation as auto

from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector_component.credentials import to_kubeconfig
from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.kube import kubectl

REPO = Path(__file__).resolve().parents[2]
SEEDED_APISERVICES = [
    "v1alpha1.db.example.org", "v1beta1.db.example.org", "v1alpha1.k8s.starter.org", "v1alpha1.storage.example.org",
]  # fmt: skip
REDIS_APISERVICE = "v1.cache.example.org"
QUEUE_APISERVICE = "v1.messaging.example.org"
BUCKET_XR = REPO / "testbed" / "crossplane" / "bucket" / "xr.yaml"
CLUSTERS, DATABASES = CLUSTER_RESOURCE, DB_RESOURCE
SA = "mcp-e2e-component"
#: Component (and so Service) name in external mode; the connector suite uses "mcp-connector" there.
EXTERNAL_NAME = "mcp-component-e2e"


def token_kubeconfig(testbed: Testbed, token: str, *, url: str | None = None) -> str:
    """A control-plane kubeconfig that authenticates with a bearer token."""
    access = ControlPlaneAccess(
        url=url or testbed.control_plane.apiserver_url,
        token=token,
        ca_pem=testbed.control_plane.ca_cert.read_bytes(),
    )
    return to_kubeconfig(access, name="e2e")


def external_setting(
    testbed: Testbed, connector: ConnectorProcess, cluster_id: str, kubeconfig: str, **args: Any
) -> Setting:
    """The component in external mode, pointing at a local connector (installed in its Service namespace)."""
    return Setting(
        app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
        name=EXTERNAL_NAME,
        args={
            "claim_namespace": testbed.claim_namespace,
            "control_plane_kubeconfig": kubeconfig,
            "cluster_id": cluster_id,
            "namespace": SERVICE_NAMESPACE,
            "mode": f"localhost:{connector.port}",
            "ca_bundle": connector.ca_bundle.decode(),
            **args,
        },
    )


@contextlib.contextmanager
def stack_for(tmp_path: Path, program: Program, name: str = "e2e") -> Iterator[auto.Stack]:
    """The stack, destroyed (with the hook) and removed at the end whatever happened."""
    stack = open_stack(tmp_path / "pulumi", program, name)
    try:
        yield stack
    finally:
        program.setting.connect = True
        program.setting.protect = False  # a test that failed while protected must not leave the stack
        try:
            stack.destroy(run_program=True, on_output=log)
        except auto.errors.CommandError:
            # The program itself fails (e.g. the control plane is unreachable): remove the
            # component from the program instead, which still runs the hook on its children.
            program.setting.connect = False
            with contextlib.suppress(auto.errors.CommandError):
                stack.up(on_output=log)
        if _resources_left(stack):
            # Neither could remove it: delete what it made in the app cluster by its labels, or the
            # next test's SSA meets this stack's field manager (conflicts, duplicate Service ports).
            names = [program.setting.name, *program.setting.others]
            remove_component_objects(tmp_path, program.setting.app_kubeconfig, names)
        with contextlib.suppress(auto.errors.CommandError):
            stack.workspace.remove_stack(name, force=True)


def _resources_left(stack: auto.Stack) -> bool:
    """Whether the stack's state still holds resources other than the stack itself and its providers."""
    try:
        resources = stack.export_stack().deployment.get("resources") or []
    except auto.errors.CommandError:
        return True
    return any(not str(r.get("type", "")).startswith(("pulumi:pulumi:Stack", "pulumi:providers:")) for r in resources)


#: What a component makes in the app cluster (external and in-cluster mode, and its ``<name>-served`` ConfigMap).
COMPONENT_KINDS = INSTALL_KINDS + ",configmaps"


def remove_component_objects(tmp_path: Path, app_kubeconfig: str, names: list[str]) -> None:
    """Delete the objects of the components ``names`` (their instance label) from the app cluster."""
    kubeconfig = tmp_path / "cleanup-kubeconfig"
    kubeconfig.write_text(app_kubeconfig)
    for name in names:
        kubectl(
            kubeconfig, "delete", COMPONENT_KINDS, "--all-namespaces", "--ignore-not-found", "--wait=false",
            "-l", f"app.kubernetes.io/instance={name}", check=False,
        )  # fmt: skip


def app_objects(testbed: Testbed) -> list[str]:
    """The external-mode component's objects in the app cluster (its instance label), by kind and name."""
    kinds = "secrets,serviceaccounts,services,rolebindings,clusterroles,clusterrolebindings,apiservices"
    found = testbed.kubectl(
        APP_CLUSTER, "get", kinds, "-A", "-l", f"app.kubernetes.io/instance={EXTERNAL_NAME}", "-o", "name"
    ).stdout
    return sorted(found.split())


def log(line: str) -> None:
    sys.stdout.write(line)


def changes(preview: auto.PreviewResult) -> dict[str, int]:
    """The preview's counts without the unchanged resources."""
    counts = {str(getattr(k, "value", k)): v for k, v in preview.change_summary.items()}
    counts.pop("same", None)
    return counts


def preview_destroy(stack: auto.Stack) -> auto.PreviewResult:
    """``pulumi preview --destroy --run-program`` (``destroy --preview-only``).

    The test bed's PULUMI_SKIP_CONFIRMATIONS reads as ``--yes``, which the CLI refuses next to
    ``--preview-only``; a preview needs no confirmation, so it is left out for this command.
    """
    env = stack.workspace.env_vars
    skip = env.pop("PULUMI_SKIP_CONFIRMATIONS", None)
    try:
        return stack.preview_destroy(run_program=True, on_output=log)
    finally:
        if skip is not None:
            env["PULUMI_SKIP_CONFIRMATIONS"] = skip


def as_token(testbed: Testbed, token: str, method: str, path: str, body: object = None) -> int:
    """The HTTP status the control plane answers a request made with ``token``."""
    context = ssl.create_default_context(cafile=str(testbed.control_plane.ca_cert))
    request = urllib.request.Request(
        testbed.control_plane.apiserver_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
