"""Control-plane access settings: URLs, kubeconfigs, and secrets kept out of reprs and errors."""

from __future__ import annotations

import base64

import pytest

from mcp_connector.core import access

TOKEN = "tok-5f1e-very-secret"


def test_upbound_url_and_token_hidden_from_repr() -> None:
    cp = access.from_upbound(host="https://proxy.example.test/", account="acme", control_plane="prod", token=TOKEN)
    assert cp.url == "https://proxy.example.test/v1/controlPlanes/acme/prod/k8s"
    assert TOKEN not in repr(cp)


def test_missing_upbound_settings_are_named() -> None:
    with pytest.raises(access.AccessError, match="account, control plane"):
        access.upbound_url(host="h", account="", control_plane="")


def kubeconfig(user: str) -> str:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    return f"""
apiVersion: v1
kind: Config
current-context: cp
contexts: [{{name: cp, context: {{cluster: cp, user: admin}}}}]
clusters: [{{name: cp, cluster: {{server: "https://127.0.0.1:6443/", certificate-authority-data: {ca}}}}}]
users: [{{name: admin, user: {user}}}]
"""


def test_kubeconfig_with_token() -> None:
    cp = access.from_kubeconfig(kubeconfig(f"{{token: {TOKEN}}}"))
    assert (cp.url, cp.token) == ("https://127.0.0.1:6443", TOKEN)
    assert cp.ca_pem is not None and cp.ca_pem.startswith(b"-----BEGIN")
    assert TOKEN not in repr(cp)


def test_kubeconfig_exec_plugins_are_refused_by_name() -> None:
    with pytest.raises(access.AccessError, match="'exec' plugins are not supported"):
        access.from_kubeconfig(kubeconfig("{exec: {command: aws}}"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "not valid YAML"),
        ("[]", "not a kubeconfig"),
        ("apiVersion: v1\nkind: Config\n", "no current-context"),
        (kubeconfig("{}").replace("current-context: cp", "current-context: other"), "no context named 'other'"),
    ],
)
def test_broken_kubeconfigs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(access.AccessError, match=message):
        access.from_kubeconfig(text)
