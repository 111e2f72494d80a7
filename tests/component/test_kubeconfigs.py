"""Control-plane kubeconfigs read with the kubernetes package's loader, and what the connector gets."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from mcp_connector.core import certs
from mcp_connector.core.access import AccessError, from_kubeconfig
from mcp_connector_component import kubeconfigs


def _kubeconfig(cluster: dict[str, object], user: dict[str, object]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cp", "cluster": {"server": "https://cp.example:6443/", **cluster}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "cp", "user": "u"}}],
            "current-context": "c",
        }
    )


@pytest.fixture(scope="module")
def ca_pem() -> bytes:
    ca, _ = certs.new_ca("kubeconfig-test-ca")
    return certs.cert_pem(ca)


def test_files_token_file_tls_server_name_and_proxy(tmp_path: Path, ca_pem: bytes) -> None:
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "token").write_text("file-token\n")
    text = _kubeconfig(
        {
            "certificate-authority": str(tmp_path / "ca.crt"),
            "tls-server-name": "cp.internal",
            "proxy-url": "http://proxy.example:3128",
        },
        {"tokenFile": str(tmp_path / "token")},
    )
    loaded = kubeconfigs.load(text)
    assert loaded.not_static is None
    access = loaded.access
    assert access.url == "https://cp.example:6443"
    assert access.token == "file-token" and access.ca_pem == ca_pem
    assert access.tls_server_name == "cp.internal" and access.proxy_url == "http://proxy.example:3128"

    # The connector gets it inlined: no file it could not read in its pod.
    inlined = kubeconfigs.static_for_connector(text, what="control_plane_kubeconfig")
    assert str(tmp_path) not in inlined
    again = from_kubeconfig(inlined)
    assert (again.token, again.ca_pem, again.tls_server_name, again.proxy_url) == (
        "file-token",
        ca_pem,
        "cp.internal",
        "http://proxy.example:3128",
    )


def test_exec_plugin_runs_for_discovery_and_is_refused_for_the_connector(tmp_path: Path) -> None:
    plugin = tmp_path / "get-token"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "exec-token", "expirationTimestamp": "2099-01-01T00:00:00Z"}}  # fmt: skip
    plugin.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(credential))})\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    text = _kubeconfig(
        {"insecure-skip-tls-verify": True},
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never"}},
    )
    loaded = kubeconfigs.load(text)
    assert loaded.access.token == "exec-token"
    assert loaded.not_static is not None and "exec plugin" in loaded.not_static
    with pytest.raises(AccessError) as refused:
        kubeconfigs.static_for_connector(text, what="control_plane_kubeconfig")
    message = str(refused.value)
    assert "control_plane_kubeconfig" in message and "pod cannot run" in message and "platform_kubeconfig" in message
    assert "exec-token" not in message


def test_client_certificates_inline(ca_pem: bytes) -> None:
    ca, key = certs.new_ca("client-ca")
    cert, cert_key = certs.issue_serving_cert(ca, key, ["client"], lifetime=certs.CA_LIFETIME)
    text = _kubeconfig(
        {"certificate-authority-data": base64.b64encode(ca_pem).decode()},
        {
            "client-certificate-data": base64.b64encode(certs.cert_pem(cert)).decode(),
            "client-key-data": base64.b64encode(certs.key_pem(cert_key)).decode(),
        },
    )
    access = kubeconfigs.load(text).access
    assert access.client_cert_pem == certs.cert_pem(cert) and access.token is None
    assert from_kubeconfig(kubeconfigs.static_for_connector(text, what="x")).client_key_pem == certs.key_pem(cert_key)


def test_broken_kubeconfigs_say_what_is_wrong() -> None:
    with pytest.raises(AccessError, match="not valid YAML"):
        kubeconfigs.load("{{{")
    with pytest.raises(AccessError, match="cannot be used"):
        kubeconfigs.load(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "nope"}))
