"""``install``'s pure parts: which cluster a kubeconfig names, where its state is kept and what
encrypts it, and the Helm values Upbound's ``up ctp connector install`` sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcp_connector_component.fleet import backend
from mcp_connector_component.fleet.backend import StateError
from mcp_connector_component.fleet.installing import Cluster, InstallError, Installs, Target, load_cluster
from mcp_connector_component.fleet.values import ValuesError, resolve

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {"name": "dev", "cluster": {"server": "https://dev.example:6443/"}},
        {"name": "prod", "cluster": {"server": "https://prod.example"}},
    ],
    "contexts": [{"name": "dev", "context": {"cluster": "dev"}}, {"name": "prod", "context": {"cluster": "prod"}}],
    "current-context": "dev",
}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return path


def test_current_or_named_context(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_cluster(Target(kubeconfig=str(kubeconfig))).server == "https://dev.example:6443"
    monkeypatch.setenv("KUBECONFIG", f"{kubeconfig}:/elsewhere")
    prod = load_cluster(Target(context="prod"))
    assert (prod.context, prod.server) == ("prod", "https://prod.example")


def test_one_stack_per_api_server_in_a_shared_backend(kubeconfig: Path, tmp_path: Path) -> None:
    dev = load_cluster(Target(kubeconfig=str(kubeconfig)))
    assert dev.key.startswith("dev.example-6443-")
    prod = load_cluster(Target(kubeconfig=str(kubeconfig), context="prod"))
    assert prod.key.startswith("prod.example-443-") and prod.key != dev.key
    same_server = Cluster(Path("other"), "", "another-context-name", dev.server)
    assert same_server.key == dev.key, "the cluster, not the kubeconfig, decides"
    state = backend.resolve(
        backend=None, secrets_provider=None, state_dir=tmp_path, environ={"PULUMI_CONFIG_PASSPHRASE": "x"}
    )
    installs = Installs(tmp_path, dev, state)
    assert installs.stack_name("team-a") == f"team-a.{dev.key}"
    assert installs.stack_name("team-a") != Installs(tmp_path, prod, state).stack_name("team-a")
    assert installs.options().secrets_provider == "passphrase"
    assert "PULUMI_CONFIG_PASSPHRASE" not in (installs.options().env_vars or {}), "the passphrase is the user's"
    assert not list(tmp_path.rglob("passphrase")), "no passphrase is written anywhere"


def test_backend_is_the_users_and_local_only_by_default(tmp_path: Path) -> None:
    passphrase = {"PULUMI_CONFIG_PASSPHRASE": "team secret"}
    local = backend.resolve(backend=None, secrets_provider=None, state_dir=tmp_path, environ=passphrase)
    assert local.is_default and local.url == f"file://{(tmp_path / 'state').resolve()}"
    from_env = backend.resolve(
        backend=None, secrets_provider=None, state_dir=tmp_path,
        environ={**passphrase, "PULUMI_BACKEND_URL": "s3://team-state"},
    )  # fmt: skip
    assert (from_env.url, from_env.is_default) == ("s3://team-state", False)
    flag = backend.resolve(
        backend="gs://other", secrets_provider=None, state_dir=tmp_path,
        environ={**passphrase, "PULUMI_BACKEND_URL": "s3://team-state"},
    )  # fmt: skip
    assert flag.url == "gs://other", "the flag wins over the variable"
    assert flag.env["PULUMI_BACKEND_URL"] == "gs://other"
    assert flag.env["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true", "another machine has no stack config"
    assert "team secret" not in repr(flag)
    kms = backend.resolve(backend="s3://b", secrets_provider="awskms://alias/x", state_dir=tmp_path, environ={})
    assert kms.secrets_provider == "awskms://alias/x"
    cloud = backend.resolve(backend="https://api.pulumi.com", secrets_provider=None, state_dir=tmp_path, environ={})
    assert cloud.secrets_provider == "default", "the service keeps the secrets"


@pytest.mark.parametrize(
    ("environ", "provider", "message"),
    [
        ({}, None, "set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"),
        ({}, "passphrase", "--secrets-provider passphrase needs PULUMI_CONFIG_PASSPHRASE"),
        ({"PULUMI_CONFIG_PASSPHRASE": ""}, None, "PULUMI_CONFIG_PASSPHRASE is empty"),
        ({"PULUMI_CONFIG_PASSPHRASE_FILE": "/nonexistent/pass"}, None, "cannot read /nonexistent/pass"),
    ],
)
def test_missing_secrets_are_named(environ: dict[str, str], provider: str | None, message: str, tmp_path: Path) -> None:
    with pytest.raises(StateError, match=message):
        backend.resolve(backend="s3://b", secrets_provider=provider, state_dir=tmp_path, environ=environ)


def test_passphrase_file(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_text("\n")
    with pytest.raises(StateError, match="is empty"):
        backend.resolve(backend=None, secrets_provider=None, state_dir=tmp_path,
                        environ={"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)})  # fmt: skip
    path.write_text("secret\n")
    found = backend.resolve(backend=None, secrets_provider=None, state_dir=tmp_path,
                            environ={"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)})  # fmt: skip
    assert found.secrets_provider == "passphrase"


# ---------------------------------------------------------------------------------------------- up's values

TOKEN = "upbound-api-token-123"
IMAGE = ["image=registry.example/mcp-connector:0.1.0"]


def test_what_up_sets_with_a_token_is_accepted_with_its_meaning() -> None:
    """``up ctp connector install ctp team-a``: mcp.account/name/namespace/host/token."""
    sets = ["mcp.account=acme", "mcp.name=ctp", "mcp.namespace=team-a", "mcp.host=https://proxy.upbound.io"]
    values = resolve(sets=[*sets, f"mcp.token={TOKEN}", *IMAGE])
    args = values.component_args()
    assert (args["account"], args["control_plane"], args["claim_namespace"]) == ("acme", "ctp", "team-a")
    assert args["host"] == "proxy.upbound.io" and args["token"] == TOKEN
    on_a_port = resolve(sets=[*sets, "mcp.host=https://spaces.example:8443", f"mcp.token={TOKEN}", *IMAGE])
    assert on_a_port.host == "spaces.example:8443"


def test_what_up_sets_with_a_control_plane_secret_uses_that_secret() -> None:
    """``--control-plane-secret s``: up adds mcp.secret.name=s and mcp.secret.provision=false; the token is unused."""
    sets = ["mcp.account=acme", "mcp.name=ctp", "mcp.namespace=team-a", "mcp.host=https://proxy.upbound.io"]
    values = resolve(sets=[*sets, f"mcp.token={TOKEN}", "mcp.secret.name=s", "mcp.secret.provision=false", *IMAGE])
    assert values.control_plane_secret == "s" and values.token is None
    assert values.credential_form() == "control_plane_secret"
    assert "token" not in values.component_args()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["mcp.secret.provision=false", f"mcp.token={TOKEN}"], "mcp.secret.provision: false uses an existing Secret"),
        (["mcp.secret.provision=true", "mcp.secret.name=s", f"mcp.token={TOKEN}", "mcp.account=a", "mcp.name=c"],
         "McpConnector makes its own credentials Secret"),
        (["mcp.secret.provision=maybe", "mcp.secret.name=s"], "mcp.secret.provision: 'maybe' is not true or false"),
        (["mcp.host=http://proxy.upbound.io", f"mcp.token={TOKEN}", "mcp.account=a", "mcp.name=c"],
         "must be https://<host>[:port]"),
        (["mcp.host=https://proxy.upbound.io/v1", f"mcp.token={TOKEN}", "mcp.account=a", "mcp.name=c"],
         "must be https://<host>[:port]"),
        (["spaces.controlPlane.kubeconfigSecret.name=s", "spaces.controlPlane.kubeconfigSecret.key=config"],
         "reads the Secret's 'kubeconfig' key"),
    ],
)  # fmt: skip
def test_secret_and_host_values_that_cannot_work_are_named(sets: list[str], message: str) -> None:
    with pytest.raises(ValuesError) as caught:
        resolve(sets=[*sets, *IMAGE], flags={"claim_namespace": "team-a"})
    text = "\n".join(caught.value.problems)
    assert message in text and TOKEN not in text


def test_kubeconfig_secret_key_kubeconfig_is_fine() -> None:
    values = resolve(
        sets=["spaces.controlPlane.kubeconfigSecret.name=s", "spaces.controlPlane.kubeconfigSecret.key=kubeconfig",
              *IMAGE],
        flags={"claim_namespace": "team-a"},
    )  # fmt: skip
    assert values.control_plane_secret == "s"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (Target(kubeconfig="/nonexistent/config"), "cannot read kubeconfig /nonexistent/config"),
        (Target(context="staging"), "has no context 'staging'"),
    ],
)
def test_errors_name_file_and_context(target: Target, message: str, kubeconfig: Path) -> None:
    if target.kubeconfig is None:
        target = Target(kubeconfig=str(kubeconfig), context=target.context)
    with pytest.raises(InstallError, match=message):
        load_cluster(target)
