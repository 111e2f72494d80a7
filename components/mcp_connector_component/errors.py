"""The component's one error type, so every module reports the same way (no traceback, names what is wrong)."""

import pulumi


class McpConnectorError(pulumi.RunError):
    """Arguments that cannot work, or a control plane that cannot be used; printed without a traceback."""
