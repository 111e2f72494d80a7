"""Connect this stack's app cluster to an Upbound managed control plane.

One stack per app cluster: `pulumi stack init prod-eu-1`, then
`pulumi config set kubernetes:context prod-eu-1` and the settings below.
"""

import pulumi
import pulumi_kubernetes as k8s

from mcp_connector_component import McpConnector, register_disconnect_hook

# Register the disconnect hook on every run, before anything else: when a connector is
# removed from this program, `pulumi up` deletes it and needs the hook to migrate claims.
register_disconnect_hook()

config = pulumi.Config()
upbound = pulumi.Config("upbound")
cluster = pulumi.Config("kubernetes")
app_cluster = k8s.Provider("app-cluster", kubeconfig=cluster.get("kubeconfig"), context=cluster.get("context"))

connector = McpConnector(
    "mcp-connector",
    {
        "account": upbound.require("account"),
        "control_plane": upbound.require("controlPlane"),
        "token": upbound.require_secret("token"),
        # Upbound's API host; set `upbound:host` for a Space that is not Upbound's cloud.
        "host": upbound.get("host"),
        "claim_namespace": upbound.get("claimNamespace") or pulumi.get_stack(),
        # Platform-wide APIs only; team-specific ones are connected where they are needed.
        "exclude": ["*.experimental.example.org"],
        "on_disconnect": "Keep",
        # No image is published: build it from the Containerfile and push it where the cluster pulls from.
        "image": config.require("image"),
        "replicas": 2,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    },
    opts=pulumi.ResourceOptions(providers={"kubernetes": app_cluster}),
)

pulumi.export("clusterId", connector.cluster_id)
pulumi.export("claimApis", connector.claim_apis)
