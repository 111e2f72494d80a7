"""The two children whose deletion runs the disconnect, and the plan they carry.

Both are component resources with no children and no object in any cluster. What the
hooks need (the control-plane credential, the claim namespace, the cluster ID,
``on_disconnect``) are their inputs, so they live only in Pulumi state, where Pulumi
encrypts the credential like any other secret. Being components makes them immune to
every way a custom resource gets replaced: no provider (replacing the app cluster's
provider leaves them alone), nothing in a cluster to delete out of band, and the engine
never replaces a component as a dependent of a replaced resource.

Why two. The engine deletes a resource's dependents before it, and with
``--target <x> --target-dependents`` it deletes every dependent of ``x``; it runs a
resource's ``before_delete`` hooks *before* it checks ``protect``. So:

- ``Disconnect`` (the hook that keeps or releases) depends on nothing at all, not even
  through its inputs: destroying or replacing any other child, alone or with its
  dependents, never reaches it. Only the whole component going deletes it. Nothing depends
  on it either (Pulumi's Python SDK expands ``depends_on`` a component into its children, and
  it has none), so the engine deletes it in its last round, once the connector's objects are
  gone: keeping and releasing need only the control plane. For the same reason an update
  does not wait for it: its ``before_update`` hook refuses a change of identity or discovery
  drift for the old identity's claims, but other children may be updated alongside.
- ``DisconnectGuard`` depends on every other child and on ``Disconnect``, so the engine
  deletes it first of all. Its hook only checks (reads) that the disconnect can run, so a
  control plane that cannot be reached stops the destroy with everything in place; then
  the engine checks its ``protect``, which it inherits from the McpConnector like every
  child. A failed delete does not stop the engine from going on to ``Disconnect`` (seen with
  the real engine: it skips the guard's other dependencies, not the Disconnect), so the guard
  also has an ``after_delete`` hook, which runs only once the guard is really gone, and the
  disconnect hook refuses to run when this deployment started the guard's delete but never
  finished it: a protected component keeps and releases nothing.

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
#: Type token of the child whose deletion keeps or releases the claims.
DISCONNECT_TYPE = "mcp-connector:index:Disconnect"
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
    #: The app cluster the connector was installed in (its ``kube-system`` namespace's UID); empty in
    #: the state of a guard made before it was recorded.
    app_cluster: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two connectors the same connection: control plane, claim namespace, cluster ID.

        The claims carry these; the app cluster is not on them (a rebuilt cluster may take them
        over with the same cluster ID), so it is compared apart, in ``changes``.
        """
        return (self.control_plane, self.claim_namespace, self.cluster_id)

    def changes(self, new: "DisconnectPlan") -> list[str]:
        """What differs between this identity and ``new``'s, as ``what old -> new`` phrases (no secret).

        An app cluster not recorded on either side is no change: the state of a guard made
        before it was recorded learns it at the next update.
        """
        fields = (
            ("control plane", self.control_plane, new.control_plane),
            ("claim namespace", self.claim_namespace, new.claim_namespace),
            ("cluster ID", self.cluster_id, new.cluster_id),
        )
        changed = [f"{what} {old} -> {now}" for what, old, now in fields if old != now]
        if self.app_cluster and new.app_cluster and self.app_cluster != new.app_cluster:
            changed.append(f"app cluster (kube-system UID) {self.app_cluster} -> {new.app_cluster}")
        return changed


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
        app_cluster=str(inputs.get("appCluster") or ""),
    )


def _props(
    connector: str,
    kubeconfig: pulumi.Input[str],
    control_plane: pulumi.Input[str],
    claim_namespace: pulumi.Input[str],
    cluster_id: pulumi.Input[str],
    on_disconnect: pulumi.Input[str],
    served: Sequence[ClaimResource],
    writer_binding: str,
    app_cluster: pulumi.Input[str],
) -> dict[str, Any]:
    return {
        "connector": connector,
        "kubeconfig": pulumi.Output.secret(kubeconfig),
        "controlPlane": control_plane,
        "claimNamespace": claim_namespace,
        "clusterId": cluster_id,
        "onDisconnect": on_disconnect,
        "served": [c.__dict__ for c in served],
        "writerBinding": writer_binding,
        "appCluster": app_cluster,
    }


class DisconnectGuard(pulumi.ComponentResource):
    """Deleted first of all children: its hook checks that the disconnect can run; protect stops here."""

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
        app_cluster: pulumi.Input[str] = "",
        opts: pulumi.ResourceOptions,
        type_: str = GUARD_TYPE,
        allow_identity_change: pulumi.Input[bool] | None = None,
        update_checks: Mapping[str, Any] | None = None,
    ) -> None:
        props = _props(
            connector,
            kubeconfig,
            control_plane,
            claim_namespace,
            cluster_id,
            on_disconnect,
            served,
            writer_binding,
            app_cluster,
        )
        if allow_identity_change is not None:
            props["allowIdentityChange"] = allow_identity_change
        props.update(update_checks or {})
        super().__init__(type_, name, props, opts)
        self.register_outputs({})


class Disconnect(DisconnectGuard):
    """Deleted only with the whole component: its hook keeps or releases the claims. Holds the same plan."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, type_=DISCONNECT_TYPE, **kwargs)
