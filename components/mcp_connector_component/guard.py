"""The disconnect guard: the child whose deletion runs the disconnect hook, and what it carries.

The guard is a component resource with no children and no object in any cluster. What
the hook needs (the control-plane credential, the claim namespace, the cluster ID,
``on_disconnect``) are its inputs, so they live only in Pulumi state, where Pulumi
encrypts the credential like any other secret. Being a component also makes it immune
to every way a custom resource gets replaced: it has no provider (replacing the app
cluster's provider leaves it alone), nothing in a cluster to delete out of band, and the
engine never replaces a component as a dependent of a replaced resource. So its delete
hook runs when the connection itself goes away, not when one of its parts is renewed.

It depends on every other child of McpConnector, so the engine deletes it first: the
credentials, RBAC, Service, Deployment and APIServices all outlive the hook, and a hook
that fails stops the delete with everything still in place.

No ``from __future__ import annotations``: the provider host may read this module's
annotations as real types.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from mcp_connector import upstream
from mcp_connector.core.discovery import ClaimApi

#: Type token of the guard; a component of this package, so it needs no provider of its own.
GUARD_TYPE = "mcp-connector:index:DisconnectGuard"
KEEP = "Keep"
RELEASE = "Release"
ON_DISCONNECT = (KEEP, RELEASE)


@dataclass(frozen=True)
class ClaimResource:
    """One claim (or XR) kind to migrate, addressed by a served version."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def resource(self) -> str:
        """``plural.group``."""
        return f"{self.plural}.{self.group}"

    def list_path(self, namespace: str) -> upstream.ApiPath:
        """The control-plane path listing this kind in ``namespace``."""
        return upstream.api_path("apis", self.group, self.version, "namespaces", namespace, self.plural)

    @classmethod
    def of(cls, api: ClaimApi) -> "ClaimResource":
        """Address ``api`` by its preferred version."""
        return cls(api.group, api.preferred_version.name, api.plural, api.kind)


@dataclass(frozen=True)
class DisconnectPlan:
    """What the hook needs, as the guard's inputs hold it."""

    kubeconfig: str = field(repr=False)
    control_plane: str
    claim_namespace: str
    cluster_id: str
    on_disconnect: str
    #: The kinds connected at the last update: searched even if the control plane no longer lists them.
    served: tuple[ClaimResource, ...] = ()
    #: The McpConnector the guard belongs to, for messages.
    connector: str = ""
    #: The RoleBinding (in the claim namespace) that lets the connector write, when the component
    #: made the connector's identity: the disconnect removes it before releasing, so no claim is
    #: created behind its back. Empty for credentials given as they are (Upbound tokens).
    writer_binding: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two connectors the same connection: control plane, claim namespace, cluster ID."""
        return (self.control_plane, self.claim_namespace, self.cluster_id)


class PlanError(ValueError):
    """The guard's stored inputs do not hold a usable plan."""


def plan_from_inputs(inputs: Mapping[str, Any]) -> DisconnectPlan:
    """Read the plan back from the guard's inputs (plain values, secrets already revealed)."""
    missing = [k for k in ("kubeconfig", "controlPlane", "claimNamespace", "clusterId") if not inputs.get(k)]
    if missing:
        raise PlanError(f"the disconnect guard's stored inputs lack {', '.join(missing)}")
    served = inputs.get("served") or []
    if isinstance(served, str):
        served = json.loads(served)
    return DisconnectPlan(
        kubeconfig=str(inputs["kubeconfig"]),
        control_plane=str(inputs["controlPlane"]),
        claim_namespace=str(inputs["claimNamespace"]),
        cluster_id=str(inputs["clusterId"]),
        on_disconnect=str(inputs.get("onDisconnect") or KEEP),
        served=tuple(ClaimResource(**dict(c)) for c in served),
        connector=str(inputs.get("connector") or ""),
        writer_binding=str(inputs.get("writerBinding") or ""),
    )


class DisconnectGuard(pulumi.ComponentResource):
    """Runs the disconnect hook when deleted; holds the plan in Pulumi state only."""

    def __init__(
        self,
        name: str,
        *,
        connector: str,
        kubeconfig: pulumi.Input[str],
        control_plane: pulumi.Input[str],
        claim_namespace: pulumi.Input[str],
        cluster_id: pulumi.Input[str],
        on_disconnect: pulumi.Input[str],
        served: Sequence[ClaimResource],
        writer_binding: str = "",
        opts: pulumi.ResourceOptions,
    ) -> None:
        props: dict[str, Any] = {
            "connector": connector,
            "kubeconfig": pulumi.Output.secret(kubeconfig),
            "controlPlane": control_plane,
            "claimNamespace": claim_namespace,
            "clusterId": cluster_id,
            "onDisconnect": on_disconnect,
            "served": [c.__dict__ for c in served],
            "writerBinding": writer_binding,
        }
        super().__init__(GUARD_TYPE, name, props, opts)
        self.register_outputs({})
