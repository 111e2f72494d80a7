"""How to reach a control plane: URL, credentials and trust, from a kubeconfig or Upbound settings.

Credentials live in fields hidden from ``repr`` so that logging an access object, or an
exception that holds one, never shows a token or key. Pure: parsing only, no I/O.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import yaml


class AccessError(ValueError):
    """Control-plane settings that cannot work; the message names what is wrong, never a secret."""


@dataclass(frozen=True)
class ControlPlaneAccess:
    """Everything needed to call one control plane."""

    url: str
    token: str | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    #: An HTTP(S) proxy to reach the control plane through (kubeconfig ``proxy-url``).
    proxy_url: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith("https://") and not self.url.startswith("http://"):
            raise AccessError(f"control-plane URL {self.url!r} must start with https://")
        if (self.client_cert_pem is None) != (self.client_key_pem is None):
            raise AccessError(f"control plane {self.url}: a client certificate needs its key, and back")


def upbound_url(*, host: str, account: str, control_plane: str) -> str:
    """Return the Kubernetes API URL of an Upbound managed control plane."""
    missing = [n for n, v in (("host", host), ("account", account), ("control plane", control_plane)) if not v]
    if missing:
        raise AccessError(f"Upbound control plane needs {', '.join(missing)}")
    host = host.removeprefix("https://").rstrip("/")
    return f"https://{host}/v1/controlPlanes/{account}/{control_plane}/k8s"


def from_upbound(*, host: str, account: str, control_plane: str, token: str) -> ControlPlaneAccess:
    """Access an Upbound control plane with an API token."""
    url = upbound_url(host=host, account=account, control_plane=control_plane)
    if not token.strip():
        raise AccessError(f"control plane {url}: the token is empty")
    return ControlPlaneAccess(url=url, token=token.strip())


def _data_or_file(entry: dict[str, Any], key: str) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        with open(entry[key], "rb") as f:
            return f.read()
    return None


def _named(items: Any, name: str, kind: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(kind) or {})
    raise AccessError(f"kubeconfig has no {kind} named {name!r}")


def from_kubeconfig(text: str, *, context: str | None = None) -> ControlPlaneAccess:
    """Access the cluster a kubeconfig's (current or named) context points at.

    Supports what a service can use unattended: bearer tokens (inline or file), client
    certificates and CA data. ``exec`` and ``auth-provider`` plugins are refused by name.
    """
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AccessError(f"the control-plane kubeconfig is not valid YAML (line {_line(e)})") from None
    if not isinstance(config, dict):
        raise AccessError("the control-plane kubeconfig is not a kubeconfig document")
    context_name = context or config.get("current-context")
    if not context_name:
        raise AccessError("the control-plane kubeconfig has no current-context; name one")
    ctx = _named(config.get("contexts"), context_name, "context")
    cluster = _named(config.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(config.get("users"), ctx.get("user", ""), "user") if ctx.get("user") else {}
    url = str(cluster.get("server") or "").rstrip("/")
    if not url:
        raise AccessError(f"kubeconfig context {context_name!r} has a cluster without a server URL")
    for plugin in ("exec", "auth-provider"):
        if plugin in user:
            raise AccessError(f"control plane {url}: kubeconfig user {plugin!r} plugins are not supported")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            token = f.read().strip()
    return ControlPlaneAccess(
        url=url,
        token=token or None,
        ca_pem=_data_or_file(cluster, "certificate-authority"),
        client_cert_pem=_data_or_file(user, "client-certificate"),
        client_key_pem=_data_or_file(user, "client-key"),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        proxy_url=cluster.get("proxy-url"),
    )


def _line(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return str(mark.line + 1) if mark is not None else "?"
