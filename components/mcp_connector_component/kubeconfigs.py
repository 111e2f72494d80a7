"""Control-plane kubeconfigs as platform teams have them, read with the ``kubernetes`` package's loader.

Real kubeconfigs run exec plugins (EKS, GKE), point at token and certificate files, name a
TLS server name or go through a proxy. Discovery and the disconnect hook run where those
work (the machine that runs the Pulumi program), so they load the kubeconfig as kubectl
would, with the ``kubernetes`` package. The connector runs in a pod that has neither the
plugin nor the files: it gets the same access inlined as static data, or the program fails
saying why, before anything is created.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader

from mcp_connector.core.access import AccessError, ControlPlaneAccess


@dataclass(frozen=True)
class Loaded:
    """A kubeconfig's access, and why it cannot be given to a pod as it is (None when it can)."""

    access: ControlPlaneAccess
    not_static: str | None


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _user(config: dict[str, Any]) -> dict[str, Any]:
    """The user entry of the current context (for telling plugins from static credentials)."""
    context_name = config.get("current-context")
    context = next((c.get("context") or {} for c in config.get("contexts") or [] if c.get("name") == context_name), {})
    return next((u.get("user") or {} for u in config.get("users") or [] if u.get("name") == context.get("user")), {})


def load(text: str) -> Loaded:
    """Load a kubeconfig's current context: run its exec plugin, read its files, keep TLS name and proxy."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        raise AccessError("the control-plane kubeconfig is not valid YAML") from None
    if not isinstance(config, dict):
        raise AccessError("the control-plane kubeconfig is not a kubeconfig document")
    user = _user(config)
    not_static = None
    if "exec" in user:
        not_static = f"its user runs the exec plugin {str((user['exec'] or {}).get('command', '?'))!r}"
    elif "auth-provider" in user:
        not_static = f"its user uses the auth provider {str((user['auth-provider'] or {}).get('name', '?'))!r}"
    with tempfile.TemporaryDirectory(prefix="mcp-kubeconfig-") as folder:
        settings = Configuration()
        try:
            loader = KubeConfigLoader(config_dict=config, temp_file_path=folder)  # type: ignore[no-untyped-call]
            loader.load_and_set(settings)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, KeyError, TypeError) as e:
            raise AccessError(f"the control-plane kubeconfig cannot be used: {_first_line(e)}") from None
        token = (settings.api_key or {}).get("BearerToken", "")
        if not_static is not None and not token and not settings.cert_file:
            raise AccessError(f"the control-plane kubeconfig gave no credential: {not_static} and it produced none")
        access = ControlPlaneAccess(
            url=str(settings.host).rstrip("/"),
            token=token.removeprefix("Bearer ").strip() or None,
            ca_pem=_read(settings.ssl_ca_cert),
            client_cert_pem=_read(settings.cert_file),
            client_key_pem=_read(settings.key_file),
            insecure_skip_tls_verify=not settings.verify_ssl,
            tls_server_name=settings.tls_server_name,
            proxy_url=settings.proxy,
        )
    return Loaded(access, not_static)


def static_for_connector(text: str, *, what: str) -> str:
    """The kubeconfig the connector gets: the same access with files and token files inlined.

    A credential that only a plugin can make (and renew) cannot be inlined; ``what`` names
    the argument in the error, which suggests the way out.
    """
    loaded = load(text)
    if loaded.not_static is not None:
        raise AccessError(
            f"{what}: {loaded.not_static}, which the connector's pod cannot run. Give a static credential "
            "(a token or a client certificate), or give it as platform_kubeconfig so the component makes "
            "a scoped token for the connector"
        )
    return to_kubeconfig(loaded.access)


def to_kubeconfig(access: ControlPlaneAccess, *, name: str = "control-plane") -> str:
    """Serialize an access object into a self-contained kubeconfig (everything inlined)."""
    cluster: dict[str, Any] = {"server": access.url}
    if access.ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(access.ca_pem).decode()
    if access.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    if access.tls_server_name:
        cluster["tls-server-name"] = access.tls_server_name
    if access.proxy_url:
        cluster["proxy-url"] = access.proxy_url
    user: dict[str, Any] = {}
    if access.token:
        user["token"] = access.token
    if access.client_cert_pem and access.client_key_pem:
        user["client-certificate-data"] = base64.b64encode(access.client_cert_pem).decode()
        user["client-key-data"] = base64.b64encode(access.client_key_pem).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(config, sort_keys=False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
