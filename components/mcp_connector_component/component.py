"""McpConnector: connect one app cluster to a Crossplane control plane, declaratively.

The component discovers the control plane's claim APIs while the program runs (so
``pulumi preview`` shows ``+ APIService`` when a claim API appears), then registers
every child inside that discovery step: if the control plane cannot be reached or
refuses the credentials, the program fails with the URL and the cause and nothing
is created or changed in the app cluster. This module only wires the steps, each in
its own module: ``validation`` (the arguments), ``identity`` (cluster ID, claim
namespace, control-plane credentials), ``discovery`` (what the program reads from
the control plane), ``children`` (the objects registered); the disconnect behaviour
is ``hook``'s.

No ``from __future__ import annotations`` here: the provider host reads the output
annotations below as real types to publish the schema.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from mcp_connector.core.discovery import ClaimApi
from mcp_connector_component import children, discovery, identity
from mcp_connector_component.args import McpConnectorArgs
from mcp_connector_component.errors import McpConnectorError
from mcp_connector_component.hook import register_disconnect_hook
from mcp_connector_component.validation import DEFAULT_NAMESPACE, pinned_claim_apis, validate

#: Package name of the provider host; the type token below must agree with what the host publishes.
PACKAGE = "mcp-connector"
TYPE_TOKEN = f"{PACKAGE}:index:McpConnector"

__all__ = [
    "DEFAULT_NAMESPACE",
    "PACKAGE",
    "TYPE_TOKEN",
    "McpConnector",
    "McpConnectorError",
    "claim_api_names",
    "pinned_claim_apis",
]


def claim_api_names(apis: Sequence[ClaimApi]) -> list[str]:
    """``group/version/Kind`` for every served version of ``apis``."""
    return [f"{a.group}/{v.name}/{a.kind}" for a in apis for v in a.versions]


class McpConnector(pulumi.ComponentResource):
    """Connects an app cluster to a Crossplane control plane: the control plane's claim APIs are served
    in the app cluster through the aggregation layer. Deleting it runs the disconnect hook
    (`on_disconnect`) before the APIServices go; run `pulumi destroy --run-program`."""

    cluster_id: pulumi.Output[str]
    """The cluster ID this cluster's claims are labelled with in the control plane."""

    app_cluster_uid: pulumi.Output[str]
    """The app cluster the connector is installed in: its `kube-system` namespace's UID. Part of the
    connection's identity; give it as `app_cluster_uid` to disconnect an app cluster that is gone."""

    claim_apis: pulumi.Output[list[str]]
    """Claim APIs served in the app cluster, as `group/version/Kind`."""

    apiservice_names: pulumi.Output[list[str]]
    """Names of the APIService objects, `<version>.<group>`."""

    control_plane_namespace: pulumi.Output[str]
    """The control-plane namespace the claims are stored in."""

    def __init__(self, name: str, args: McpConnectorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raw: Mapping[str, Any] = args
        plain = validate(name, raw)  # before registering anything: a bad argument changes nothing
        super().__init__(TYPE_TOKEN, name, None, opts)
        register_disconnect_hook()
        reg = children.Registrar(parent=self, name=name)

        kubeconfig = identity.control_plane_kubeconfig(reg, raw, plain)
        app_cluster = identity.app_cluster(reg, raw)
        reg.app_cluster = app_cluster
        cluster_id = identity.cluster_id(raw, app_cluster)
        claim_namespace = identity.claim_namespace(name, raw, cluster_id)

        # Known even when the credential is not (a preview with a token from another resource's
        # output): then the children are built from pinned claim_apis, or the program says why not.
        found: pulumi.Output[discovery.Found] = pulumi.Output.from_input(
            discovery.claim_apis(self, name, plain, identity.secret_where(raw, plain), kubeconfig)
        )
        apis: pulumi.Output[tuple[ClaimApi, ...]] = found.apply(lambda f: f[1])

        def build(selected: tuple[ClaimApi, ...]) -> pulumi.Output[children.Registered]:
            """Register every child; runs only once discovery succeeded.

            The Disconnect first; the others once the engine has answered its registration, which
            it does after the Disconnect's ``before_update`` hook: a change of identity or discovery
            drift that the hook refuses leaves every other child (the guard's plan included) as it was.
            """
            first = children.disconnect(reg, raw, plain, selected, kubeconfig, cluster_id, claim_namespace, app_cluster)

            def after(_: str) -> children.Registered:
                connector, fence = identity.connector_kubeconfig(reg, plain, selected, kubeconfig, claim_namespace)
                conn = children.Connection(
                    selected, kubeconfig, connector, cluster_id, claim_namespace, fence, app_cluster
                )
                return children.register(reg, raw, plain, conn)

            return first.urn.apply(after)

        registered: pulumi.Output[children.Registered] = apis.apply(build)
        built: pulumi.Output[list[str]] = registered.apply(lambda r: r.apiservice_names)
        children.served_marker(reg, plain, registered)
        if plain.pinned is None:
            report: pulumi.Output[None] = pulumi.Output.all(kubeconfig, cluster_id, claim_namespace, found).apply(
                lambda v: discovery.report_unconnected(self, name, v[0], v[1], v[2], v[3][0], v[3][1])
            )
            self._report = report

        self.cluster_id = cluster_id
        self.app_cluster_uid = app_cluster
        self.claim_apis = apis.apply(lambda found: claim_api_names(found))
        self.apiservice_names = built
        self.control_plane_namespace = claim_namespace
        self.register_outputs(
            {
                "cluster_id": self.cluster_id,
                "app_cluster_uid": self.app_cluster_uid,
                "claim_apis": self.claim_apis,
                "apiservice_names": self.apiservice_names,
                "control_plane_namespace": self.control_plane_namespace,
            }
        )
