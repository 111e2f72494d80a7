"""Host McpConnector as a Pulumi component provider, so every Pulumi language can use it.

All logic lives in ``mcp_connector_component``; the schema (inputs, outputs and their
documentation) is inferred by the SDK from ``McpConnectorArgs`` and the component's
output annotations. Programs in other languages must still get the disconnect hook
registered: the host registers it whenever it constructs an McpConnector.

The engine starts this file through ``PulumiPlugin.yaml`` (the Python language host), or
directly as an executable plugin (the test bed's ``pulumi-resource-mcp-connector``); either
way it is given the engine's address and prints the port it serves on.
"""

import sys
from typing import Any

import pulumi
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.provider import ConstructResult
from pulumi.provider.server import ComponentInitError, main

from mcp_connector_component import McpConnector
from mcp_connector_component.component import PACKAGE

VERSION = "0.1.0"


class McpConnectorProvider(ComponentProvider):
    """The SDK's component provider, reporting McpConnector's own errors by their message alone.

    The SDK sends the Python stack of any exception raised while a component is constructed.
    McpConnector's errors (``pulumi.RunError``) already name the argument or the control plane
    and the cause, so they go to the engine as an invalid-argument error with that message.
    """

    def construct(
        self, name: str, resource_type: str, inputs: Any, options: pulumi.ResourceOptions | None = None
    ) -> ConstructResult:
        try:
            return super().construct(name, resource_type, inputs, options)
        except ComponentInitError as e:
            if isinstance(e.inner, pulumi.RunError):
                # An empty list, not None: with None the SDK fails to build the gRPC status.
                raise pulumi.InputPropertiesError(str(e.inner), []) from None
            raise


if __name__ == "__main__":
    main(McpConnectorProvider([McpConnector], PACKAGE, version=VERSION), sys.argv[1:])
