"""The control-plane side of one app cluster's connection: its own namespace and an identity scoped to it.

Given platform (admin) credentials for the control plane, McpConnector does not hand
them to the connector. It creates the cluster's claim namespace and a ServiceAccount
whose Role covers exactly the served claim (and namespaced XR) kinds and the Secrets of
that namespace, plus a ClusterRole to read the XRDs and CRDs discovery needs, and gives
the connector only that ServiceAccount's token. A cluster's connector can then neither
read nor write another cluster's claims or connection Secrets.

Pure builders of the objects, as plain dicts in the Kubernetes JSON shape (values may be
Outputs), like ``manifests`` for the app cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mcp_connector.core.discovery import ClaimApi

RawObject = dict[str, Any]

#: The API verbs the connector uses on claims. No ``deletecollection``: an app-side
#: deletecollection is a scoped list and one delete per claim (never another cluster's).
CLAIM_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
#: The verbs on a claim's ``status``: it is read with the claim and written only when an app user
#: who may write ``<plural>/status`` in the app cluster does (as for a local CRD).
STATUS_VERBS = ["get", "update", "patch"]
#: The claim namespace's Secrets, read only: the connection Secrets it copies (``get``) and a
#: metadata-only ``list``/``watch`` naming the ones that change. RBAC can narrow neither by name
#: (the names are hashes of the users' names, made after install) nor by label.
SECRET_VERBS = ["get", "list", "watch"]
#: What discovery and the connector's catalog read cluster-wide (definitions, no claims, no Secrets).
DISCOVERY_RULES: list[RawObject] = [
    {
        "apiGroups": ["apiextensions.crossplane.io"],
        "resources": ["compositeresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
]
TOKEN_KEY = "token"
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"


@dataclass(frozen=True)
class ScopedNames:
    """Names of the control-plane objects of one connection (``namespace`` may be an Output)."""

    namespace: Any
    #: The McpConnector's name, for labels and the cluster-scoped names.
    base: str

    service_account = "mcp-connector"
    role = "mcp-connector"
    token_secret = "mcp-connector-token"

    def discovery_role(self, namespace: str) -> str:
        """The ClusterRole (and binding) for discovery: one per claim namespace, since it is cluster-scoped."""
        return f"mcp-connector:{namespace}:discovery"


@dataclass(frozen=True)
class Fence:
    """The RoleBinding (in the claim namespace) that grants the connector's access, taken away first on disconnect."""

    role_binding: str


def _meta(names: ScopedNames, name: Any, *, namespaced: bool = True) -> RawObject:
    meta: RawObject = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "mcp-connector", "app.kubernetes.io/managed-by": "pulumi"},
    }
    if namespaced:
        meta["namespace"] = names.namespace
    return meta


def namespace(names: ScopedNames) -> RawObject:
    """The cluster's claim namespace (the component never deletes it: it holds the claims)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(names, names.namespace, namespaced=False)}


def service_account(names: ScopedNames) -> RawObject:
    """The connector's identity in the control plane."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(names, names.service_account)}


def claim_rules(apis: Iterable[ClaimApi]) -> list[RawObject]:
    """The connector's verbs on exactly the served kinds and their status; read on its Secrets and events."""
    by_group: dict[str, set[str]] = {}
    for api in apis:
        by_group.setdefault(api.group, set()).add(api.plural)
    rules: list[RawObject] = []
    for group, plurals in sorted(by_group.items()):
        rules.append({"apiGroups": [group], "resources": sorted(plurals), "verbs": CLAIM_VERBS})
        rules.append({"apiGroups": [group], "resources": sorted(f"{p}/status" for p in plurals), "verbs": STATUS_VERBS})
    rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": SECRET_VERBS})
    rules.append({"apiGroups": [""], "resources": ["events"], "verbs": ["list"]})
    return rules


def role(names: ScopedNames, apis: Iterable[ClaimApi]) -> RawObject:
    """What the connector may do in its claim namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(names, names.role),
        "rules": claim_rules(apis),
    }


def _subjects(names: ScopedNames) -> list[RawObject]:
    return [{"kind": "ServiceAccount", "name": names.service_account, "namespace": names.namespace}]


def role_binding(names: ScopedNames) -> RawObject:
    """Grants the Role to the connector's ServiceAccount; the disconnect removes it first to stop writes."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(names, names.role),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": _subjects(names),
    }


def discovery_role(names: ScopedNames, name: Any) -> RawObject:
    """Read access to XRDs and CRDs, so the connector and the disconnect can discover claim APIs."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(names, name, namespaced=False),
        "rules": DISCOVERY_RULES,
    }


def discovery_binding(names: ScopedNames, name: Any) -> RawObject:
    """Grants the discovery ClusterRole to the connector's ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(names, name, namespaced=False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": _subjects(names),
    }


def token_secret(names: ScopedNames) -> RawObject:
    """A long-lived token for the ServiceAccount; deleting this Secret revokes it."""
    metadata = _meta(names, names.token_secret)
    metadata["annotations"] = {SERVICE_ACCOUNT_NAME_ANNOTATION: names.service_account}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "kubernetes.io/service-account-token"}
