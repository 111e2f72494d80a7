// Connect this stack's app cluster to a control plane with McpConnector.
//
// One stack per app cluster, named after the cluster's kubeconfig context:
//   pulumi stack init prod-eu-1
//   pulumi config set claimNamespace mcp-prod-eu-1
//   pulumi config set --secret controlPlaneKubeconfig "$(cat control-plane.kubeconfig)"
//   pulumi config set image <registry>/mcp-connector:0.1.0
// The component provider host registers the disconnect hook whenever it builds an McpConnector,
// so `pulumi destroy --run-program` migrates the claims before the connector goes.
import * as k8s from "@pulumi/kubernetes";
import * as mcp from "@pulumi/mcp-connector";
import * as pulumi from "@pulumi/pulumi";

/** The stack's program: an exported function, so the Automation API can run it inline too. */
export = async () => {
    const config = new pulumi.Config();
    const appCluster = new k8s.Provider("app-cluster", { context: pulumi.getStack() });

    const connector = new mcp.McpConnector(
        "connector",
        {
            claimNamespace: config.require("claimNamespace"),
            controlPlaneKubeconfig: config.requireSecret("controlPlaneKubeconfig"),
            onDisconnect: config.get("onDisconnect") ?? "Keep",
            // No image is published: build it from the Containerfile and push it where the cluster pulls from.
            image: config.get("image") ?? "",
            // `in-cluster`, or `host:port` of a connector running outside the cluster (with caBundle,
            // the PEM CA of its serving certificate), as `make demo` and the e2e tests run it.
            mode: config.get("mode") ?? "in-cluster",
            caBundle: config.get("caBundle") ?? "",
            include: ["*.example.org"],
        },
        { providers: [appCluster] },
    );

    return {
        clusterId: connector.clusterId,
        claimApis: connector.claimApis,
        apiserviceNames: connector.apiserviceNames,
    };
};
