package main

import (
	mcp "example.com/pulumi-mcp-connector/sdk/go/mcpconnector"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// connect is the stack's program. It lives apart from main so the Automation API can run it
// inline as well. The component provider host registers the disconnect hook whenever it builds
// an McpConnector, so `pulumi destroy --run-program` migrates the claims before the connector goes.
func connect(ctx *pulumi.Context) error {
	cfg := config.New(ctx, "")
	appCluster, err := kubernetes.NewProvider(ctx, "app-cluster", &kubernetes.ProviderArgs{
		Context: pulumi.String(ctx.Stack()),
	})
	if err != nil {
		return err
	}
	connector, err := mcp.NewMcpConnector(ctx, "connector", &mcp.McpConnectorArgs{
		ClaimNamespace:         pulumi.String(cfg.Require("claimNamespace")),
		ControlPlaneKubeconfig: cfg.RequireSecret("controlPlaneKubeconfig"),
		OnDisconnect:           pulumi.String(orDefault(cfg.Get("onDisconnect"), "Keep")),
		// No image is published: build it from the Containerfile and push it where the cluster pulls from.
		Image: pulumi.String(cfg.Get("image")),
		// `in-cluster`, or `host:port` of a connector running outside the cluster (with caBundle,
		// the PEM CA of its serving certificate), as `make demo` and the e2e tests run it.
		Mode:     pulumi.StringRef(orDefault(cfg.Get("mode"), "in-cluster")),
		CaBundle: pulumi.String(cfg.Get("caBundle")),
		Include:  []string{"*.example.org"},
	}, pulumi.Providers(appCluster))
	if err != nil {
		return err
	}
	ctx.Export("clusterId", connector.ClusterId)
	ctx.Export("claimApis", connector.ClaimApis)
	ctx.Export("apiserviceNames", connector.ApiserviceNames)
	return nil
}

// orDefault is value, or fallback when the stack's config does not set it.
func orDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}
