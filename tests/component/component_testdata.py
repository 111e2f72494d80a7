"""Shared test data for the component tests (imported by conftest and the tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_connector.core.discovery import ClaimApi, ClaimVersion

KUBE_SYSTEM_UID = "5f0c3c56-8d0e-4c38-9d7b-2a4f7d1c0001"

CLAIM_APIS = (
    ClaimApi(
        group="db.example.org",
        kind="PostgreSQLInstance",
        plural="postgresqlinstances",
        singular="postgresqlinstance",
        list_kind="PostgreSQLInstanceList",
        versions=(ClaimVersion("v1alpha1"), ClaimVersion("v1beta1", storage=True)),
    ),
    ClaimApi(
        group="k8s.starter.org",
        kind="KubernetesCluster",
        plural="kubernetesclusters",
        singular="kubernetescluster",
        list_kind="KubernetesClusterList",
        versions=(ClaimVersion("v1alpha1", storage=True),),
    ),
)

CP_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: cp, cluster: {server: "https://cp.example:6443"}}]
users: [{name: cp, user: {token: cp-secret-token}}]
contexts: [{name: cp, context: {cluster: cp, user: cp}}]
current-context: cp
"""

SECRET_SIG = "4dabf18193072939515e22adb298388d"


def is_secret(value: object) -> bool:
    """True for a value the engine would receive marked secret."""
    return isinstance(value, dict) and SECRET_SIG in value


def reveal(value: object) -> object:
    """Strip secret markers (recursively) to look at the plain value."""
    if is_secret(value):
        return reveal(value["value"])  # type: ignore[index]
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def plain_parts(value: object) -> list[str]:
    """Every string reachable without passing through a secret marker (what a diff would show)."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_parts(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_parts(v)]
    return [value] if isinstance(value, str) else []


@dataclass
class Registered:
    """One resource the program registered (or read)."""

    typ: str
    name: str
    inputs: dict[str, Any]
    read_id: str | None


@dataclass
class Rendered:
    """Everything one program run produced."""

    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None

    def of_type(self, typ: str) -> list[Registered]:
        """Resources of one type token (``kubernetes:core/v1:Secret``), reads excluded."""
        return [r for r in self.resources if r.typ == typ and r.read_id is None]

    def one(self, typ: str, name: str | None = None) -> Registered:
        """The single resource of ``typ`` (and logical ``name``)."""
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"{typ} {name}: {[r.name for r in found]}"
        return found[0]

    def k8s_names(self, typ: str) -> list[str]:
        """``metadata.name`` of every resource of ``typ``."""
        return sorted(r.inputs["metadata"]["name"] for r in self.of_type(typ))


Render = Callable[..., Rendered]
