"""Host McpConnector as a Pulumi component provider, so every Pulumi language can use it.

All logic lives in ``mcp_connector_component``; the schema (inputs, outputs and their
documentation) is inferred by the SDK from ``McpConnectorArgs`` and the component's
output annotations. Programs in other languages must still get the disconnect hook
registered: the host registers it whenever it constructs an McpConnector.
"""

from pulumi.provider.experimental import component_provider_host

from mcp_connector_component import McpConnector
from mcp_connector_component.component import PACKAGE

if __name__ == "__main__":
    component_provider_host(components=[McpConnector], name=PACKAGE, version="0.1.0")
