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
from pulumi.provider.experimental.analyzer import ComponentDefinition, PropertyType
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.provider import ConstructResult
from pulumi.provider.server import ComponentInitError, main

from mcp_connector_component import McpConnector
from mcp_connector_component.component import PACKAGE

VERSION = "0.1.0"


class McpConnectorProvider(ComponentProvider):
    """The SDK's component provider, with integer inputs as integers and errors as their message.

    Numbers cross the wire as doubles, and the SDK hands a component ``2.0`` for an
    ``integer`` input such as ``replicas``; the schema says which inputs are integers, so
    whole numbers are turned back into ``int`` here. The SDK also sends the Python stack of
    any exception raised while a component is constructed; McpConnector's errors
    (``pulumi.RunError``) already name the argument or the control plane and the cause, so
    they go to the engine as an invalid-argument error with that message alone.
    """

    def map_inputs(self, inputs: Any, component_def: ComponentDefinition) -> Any:
        mapped = dict(super().map_inputs(inputs, component_def))
        for schema_name, prop in component_def.inputs.items():
            py_name = component_def.inputs_mapping[schema_name]
            value = mapped.get(py_name)
            if prop.type == PropertyType.INTEGER and isinstance(value, float) and value.is_integer():
                mapped[py_name] = int(value)
        return mapped

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
