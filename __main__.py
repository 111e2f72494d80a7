"""The platform program: one stack per app cluster, configured by stack config.

``pulumi up`` connects the cluster named by ``kubernetes:kubeconfig``/``kubernetes:context``
to the control plane named by the ``mcp-connector:*`` keys; ``pulumi destroy
--run-program`` disconnects it, running the disconnect hook first. Set
``mcp-connector:connect false`` (or delete the McpConnector from a program like this)
and ``pulumi up`` to disconnect while keeping the stack; the hook runs then too,
because this program registers it unconditionally.

Config (``mcp-connector:`` prefix): credentials as one of ``platformKubeconfig`` (secret;
the component makes this cluster's own control-plane namespace and a token scoped to it),
``token`` (secret, with ``account`` + ``controlPlane``, optional ``host``),
``controlPlaneKubeconfig`` (secret) or ``controlPlaneSecret``; ``claimNamespace``
(required unless ``platformKubeconfig``); optional ``clusterId``, ``namespace``, ``image``,
``replicas``, ``mode`` (``in-cluster`` or ``host:port``), ``caBundle``, ``claimApis``,
``include``/``exclude`` (JSON lists), ``onDisconnect`` (Keep|Release), ``allowIdentityChange``,
``name`` (default ``mcp-connector``), ``connect`` (default true).
"""

import pulumi
import pulumi_kubernetes as k8s

from mcp_connector_component import McpConnector, McpConnectorArgs, register_disconnect_hook


def main() -> None:
    """Connect (or, with ``connect: false``, disconnect) this stack's app cluster."""
    # Always, even when nothing is connected: deleting a connector needs the hook registered.
    register_disconnect_hook()
    config = pulumi.Config("mcp-connector")
    if not config.get_bool("connect", True):
        return
    args: McpConnectorArgs = {}
    for key, arg in (
        ("claimNamespace", "claim_namespace"),
        ("account", "account"),
        ("controlPlane", "control_plane"),
        ("host", "host"),
        ("controlPlaneSecret", "control_plane_secret"),
        ("clusterId", "cluster_id"),
        ("appClusterUid", "app_cluster_uid"),
        ("namespace", "namespace"),
        ("image", "image"),
        ("mode", "mode"),
        ("caBundle", "ca_bundle"),
        ("onDisconnect", "on_disconnect"),
    ):
        value = config.get(key)
        if value is not None:
            args[arg] = value  # type: ignore[literal-required]
    for key, arg in (
        ("token", "token"),
        ("controlPlaneKubeconfig", "control_plane_kubeconfig"),
        ("platformKubeconfig", "platform_kubeconfig"),
    ):
        secret = config.get_secret(key)
        if secret is not None:
            args[arg] = secret  # type: ignore[literal-required]
    for key, arg in (("include", "include"), ("exclude", "exclude"), ("claimApis", "claim_apis")):
        patterns = config.get_object(key)
        if patterns is not None:
            args[arg] = [str(p) for p in patterns]  # type: ignore[literal-required]
    replicas = config.get_int("replicas")
    if replicas is not None:
        args["replicas"] = replicas
    allow = config.get_bool("allowIdentityChange")
    if allow is not None:
        args["allow_identity_change"] = allow

    cluster = pulumi.Config("kubernetes")
    provider = k8s.Provider(
        "app-cluster",
        kubeconfig=cluster.get("kubeconfig"),
        context=cluster.get("context"),
    )
    connector = McpConnector(
        config.get("name") or "mcp-connector",
        args,
        opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
    )
    pulumi.export("clusterId", connector.cluster_id)
    pulumi.export("appClusterUid", connector.app_cluster_uid)
    pulumi.export("claimApis", connector.claim_apis)
    pulumi.export("apiserviceNames", connector.apiservice_names)
    pulumi.export("controlPlaneNamespace", connector.control_plane_namespace)


main()
