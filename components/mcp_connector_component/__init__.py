"""The Pulumi component that connects an app cluster to a control plane (see ``component``)."""

from mcp_connector_component.args import McpConnectorArgs
from mcp_connector_component.component import TYPE_TOKEN, McpConnector, McpConnectorError
from mcp_connector_component.guard import GUARD_TYPE
from mcp_connector_component.hook import HOOK_NAME, register_disconnect_hook

__all__ = [
    "GUARD_TYPE",
    "HOOK_NAME",
    "TYPE_TOKEN",
    "McpConnector",
    "McpConnectorArgs",
    "McpConnectorError",
    "register_disconnect_hook",
]
