"""``install``'s pure parts: which cluster a kubeconfig names, and where its state is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcp_connector_component.fleet.installing import Cluster, ClusterState, InstallError, Target, load_cluster

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


def test_state_folder_per_api_server(kubeconfig: Path, tmp_path: Path) -> None:
    dev = load_cluster(Target(kubeconfig=str(kubeconfig)))
    assert dev.key.startswith("dev.example-6443-")
    prod = load_cluster(Target(kubeconfig=str(kubeconfig), context="prod"))
    assert prod.key.startswith("prod.example-443-") and prod.key != dev.key
    same_server = Cluster(Path("other"), "", "another-context-name", dev.server)
    assert same_server.key == dev.key, "the cluster, not the kubeconfig, decides"
    state = ClusterState(tmp_path / "states", dev)
    assert not state.exists and state.stack_names() == []
    first = state.passphrase()
    assert first == state.passphrase() and len(first) >= 40
    assert (state.dir / "passphrase").stat().st_mode & 0o077 == 0, "readable by the user only"


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
