"""mcp-connector: a Crossplane control plane's claim APIs, served inside any Kubernetes app cluster."""
