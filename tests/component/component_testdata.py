"""Shared test data for the component tests (imported by conftest and the tests)."""

from __future__ import annotations

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
