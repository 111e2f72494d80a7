"""The connector's identity: which cluster it speaks for and how it authenticates to the control plane.

The cluster ID and claim namespace label and hold this cluster's claims, and the app cluster
(its kube-system UID) is where the connector is installed: the three are its identity. The control-plane
credential comes in one of four forms; with platform credentials the component makes the
cluster its own namespace and a ServiceAccount token scoped to it, so the connector never
holds the platform credential.
"""

from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mcp_connector.core.access import AccessError
from mcp_connector.core.discovery import ClaimApi
from mcp_connector_component import discovery, scoped
from mcp_connector_component.children import Registrar, kwargs
from mcp_connector_component.credentials import DEFAULT_UPBOUND_HOST, kubeconfig_from_secret_data, upbound_kubeconfig
from mcp_connector_component.errors import McpConnectorError
from mcp_connector_component.validation import PLATFORM, Plain, default_claim_namespace, is_uid


def app_cluster(reg: Registrar, raw: Mapping[str, Any]) -> pulumi.Output[str]:
    """The app cluster the provider points at: its kube-system namespace's UID, read, or given as a value.

    Read in every program run (Pulumi tells a program no destroy from an update), so a program
    whose app cluster is gone gives ``app_cluster_uid`` as a value: then nothing is read.
    """
    if raw.get("app_cluster_uid") is not None:
        name = reg.name
        return pulumi.Output.from_input(raw["app_cluster_uid"]).apply(lambda v: _uid(name, v))
    kube_system = k8s.core.v1.Namespace.get(f"{reg.name}-kube-system", "kube-system", opts=reg.under())
    reg.made.append(kube_system)
    return kube_system.metadata.apply(lambda m: str(m.uid))


def _uid(name: str, value: Any) -> str:
    """``app_cluster_uid`` once known (it may come from another resource's output)."""
    if not is_uid(value):
        raise McpConnectorError(
            f"McpConnector {name}: app_cluster_uid {value!r} must be a UID (the app cluster's kube-system "
            "namespace UID, as the app_cluster_uid output shows it)"
        )
    return str(value)


def cluster_id(raw: Mapping[str, Any], app: pulumi.Output[str]) -> pulumi.Output[str]:
    """cluster_id as given, or the app cluster's kube-system namespace UID."""
    if raw.get("cluster_id") is not None:
        return pulumi.Output.from_input(raw["cluster_id"])
    return app


def claim_namespace(name: str, raw: Mapping[str, Any], cluster: pulumi.Output[str]) -> pulumi.Output[str]:
    """claim_namespace as given, or ``mcp-<cluster ID>``."""
    if raw.get("claim_namespace") is not None:
        return pulumi.Output.from_input(raw["claim_namespace"])
    return cluster.apply(lambda c: default_claim_namespace(name, c))


def secret_where(raw: Mapping[str, Any], plain: Plain) -> str:
    """``namespace/name`` of control_plane_secret, or "" with another credential form."""
    if plain.credential_form != "control_plane_secret":
        return ""
    return f"{plain.names.namespace}/{raw['control_plane_secret']}"


def control_plane_kubeconfig(reg: Registrar, raw: Mapping[str, Any], plain: Plain) -> pulumi.Output[str]:
    """The control-plane kubeconfig, whatever credential form was given (always a secret)."""
    name, form = reg.name, plain.credential_form

    def checked(make: Callable[[Any], Any]) -> Callable[[Any], str]:
        def run(value: Any) -> str:
            try:
                return str(make(value))
            except AccessError as e:
                raise McpConnectorError(f"McpConnector {name}: {e}") from None

        return run

    if form == "token":
        parts = pulumi.Output.all(
            raw.get("host") or DEFAULT_UPBOUND_HOST, raw["account"], raw["control_plane"], raw["token"]
        )
        return pulumi.Output.secret(
            parts.apply(checked(lambda v: upbound_kubeconfig(host=v[0], account=v[1], control_plane=v[2], token=v[3])))
        )
    if form in ("control_plane_kubeconfig", PLATFORM):
        return pulumi.Output.secret(raw[form])
    secret_name = str(raw["control_plane_secret"])
    namespace = plain.names.namespace
    existing = k8s.core.v1.Secret.get(f"{name}-control-plane", f"{namespace}/{secret_name}", opts=reg.under())
    reg.made.append(existing)
    where = f"{namespace}/{secret_name}"
    return pulumi.Output.secret(existing.data.apply(checked(lambda d: kubeconfig_from_secret_data(d, secret=where))))


def connector_kubeconfig(
    reg: Registrar,
    plain: Plain,
    apis: tuple[ClaimApi, ...],
    access_kubeconfig: pulumi.Output[str],
    namespace: pulumi.Output[str],
) -> tuple[pulumi.Output[str], scoped.Fence | None]:
    """The credential the connector's pods get, and the write fence when it is a scoped one."""
    if plain.credential_form == PLATFORM:
        # The connector gets a token scoped to this cluster's namespace, never the platform credential.
        return _scoped_identity(reg, apis, access_kubeconfig, namespace)
    if plain.credential_form == "control_plane_kubeconfig":
        inline = discovery.static_for_connector(reg.name, "control_plane_kubeconfig")
        return pulumi.Output.secret(access_kubeconfig.apply(inline)), None
    return access_kubeconfig, None


def _scoped_identity(
    reg: Registrar, apis: tuple[ClaimApi, ...], platform: pulumi.Output[str], namespace_name: pulumi.Output[str]
) -> tuple[pulumi.Output[str], scoped.Fence]:
    """This cluster's namespace and identity in the control plane; returns the connector's kubeconfig."""
    name = reg.name
    provider = k8s.Provider(f"{name}-control-plane", kubeconfig=platform, opts=reg.under())
    names = scoped.ScopedNames(namespace=namespace_name, base=name)

    def opts(**options: Any) -> pulumi.ResourceOptions:
        return reg.child(provider=provider, **options)

    # Never deleted: it holds the claims, which Keep and Release both leave in place.
    namespace = k8s.core.v1.Namespace(
        f"{name}-claim-namespace", opts=opts(retain_on_delete=True), **kwargs(scoped.namespace(names))
    )
    inside = [namespace]
    account = k8s.core.v1.ServiceAccount(
        f"{name}-cp-sa", opts=opts(depends_on=inside), **kwargs(scoped.service_account(names))
    )
    role = k8s.rbac.v1.Role(f"{name}-cp-role", opts=opts(depends_on=inside), **kwargs(scoped.role(names, apis)))
    binding = k8s.rbac.v1.RoleBinding(
        f"{name}-cp-role", opts=opts(depends_on=[role, account]), **kwargs(scoped.role_binding(names))
    )
    discovery_name = namespace_name.apply(names.discovery_role)
    discovery_role = k8s.rbac.v1.ClusterRole(
        f"{name}-cp-discovery", opts=opts(), **kwargs(scoped.discovery_role(names, discovery_name))
    )
    discovery_binding = k8s.rbac.v1.ClusterRoleBinding(
        f"{name}-cp-discovery",
        opts=opts(depends_on=[discovery_role, account]),
        **kwargs(scoped.discovery_binding(names, discovery_name)),
    )
    token_secret = k8s.core.v1.Secret(
        f"{name}-cp-token",
        opts=opts(depends_on=[account], additional_secret_outputs=["data"]),
        **kwargs(scoped.token_secret(names)),
    )
    reg.made += [provider, namespace, account, role, binding, discovery_role, discovery_binding, token_secret]
    made = pulumi.Output.all(platform, namespace_name, token_secret.metadata, token_secret.data, binding.metadata)
    kubeconfig: pulumi.Output[str] = made.apply(lambda v: discovery.scoped_kubeconfig(name, v[0], v[1], v[2], v[3]))
    fence = scoped.Fence(role_binding=scoped.ScopedNames.role)
    return pulumi.Output.secret(kubeconfig), fence
