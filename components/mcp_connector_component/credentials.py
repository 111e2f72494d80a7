"""The three ways to give McpConnector control-plane credentials, reduced to one kubeconfig.

The connector reads one kubeconfig file whatever the user gave: an Upbound API
token is turned into a kubeconfig for the Upbound control-plane URL here, a
kubeconfig string is used as it is, and an existing Secret's ``kubeconfig`` key is
read from the app cluster. Parsing and URL rules stay in ``core.access``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from mcp_connector.core.access import AccessError, from_upbound
from mcp_connector_component.kubeconfigs import to_kubeconfig
from mcp_connector_component.manifests import KUBECONFIG_KEY

#: Default Upbound API host, as in Upbound's own connector chart.
DEFAULT_UPBOUND_HOST = "proxy.upbound.io"


def upbound_kubeconfig(*, host: str, account: str, control_plane: str, token: str) -> str:
    """A kubeconfig that reaches an Upbound control plane with an API token."""
    access = from_upbound(host=host, account=account, control_plane=control_plane, token=token)
    return to_kubeconfig(access, name=f"{account}-{control_plane}")


def kubeconfig_from_secret_data(data: Mapping[str, str] | None, *, secret: str) -> str:
    """Return the kubeconfig stored (base64) under ``kubeconfig`` in an existing Secret's data."""
    encoded = (data or {}).get(KUBECONFIG_KEY)
    if not encoded:
        raise AccessError(f"Secret {secret} has no {KUBECONFIG_KEY!r} key holding a control-plane kubeconfig")
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AccessError(f"Secret {secret} key {KUBECONFIG_KEY!r} is not base64 text") from None


__all__ = ["DEFAULT_UPBOUND_HOST", "kubeconfig_from_secret_data", "to_kubeconfig", "upbound_kubeconfig"]
