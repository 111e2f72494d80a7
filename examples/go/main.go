// Command connect-app-clusters-go connects this stack's app cluster to a control plane.
//
// One stack per app cluster, named after the cluster's kubeconfig context:
//
//	pulumi stack init prod-eu-1
//	pulumi config set claimNamespace mcp-prod-eu-1
//	pulumi config set --secret controlPlaneKubeconfig "$(cat control-plane.kubeconfig)"
//	pulumi config set image <registry>/mcp-connector:0.1.0
package main

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

func main() {
	pulumi.Run(connect)
}
