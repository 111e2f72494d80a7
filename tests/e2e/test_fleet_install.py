"""``mcp-connector install`` / ``uninstall`` against the test bed, with the real Pulumi engine.

The connector runs as a local process (external mode, as everywhere in e2e); install gets
its address through Helm-style values, with the keys Upbound's ``up ctp connector install``
sets. Claims are made through the app cluster, then uninstall must run the disconnect hook
(Keep, or Release when asked), remove everything it installed, and a second uninstall must
do nothing. A team's install: the state in a shared backend, the passphrase only in each
member's environment, uninstall from another machine (a fresh state folder); and without
state, uninstall finds the connector in the cluster and refuses to pretend it is gone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import connector_fixtures
import pytest
import yaml
from fleet_fixtures import fleet, fleet_env, output

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLAIM = REPO / "testbed" / "crossplane" / "kubernetescluster" / "claim.yaml"
NAMESPACE = "mcp-fleet-install"
APISERVICES = ("v1alpha1.k8s.starter.org", "v1alpha1.db.example.org", "v1beta1.db.example.org")
CP_SECRET = "ctp-kubeconfig"
UNUSED_TOKEN = "up-cli-token-" + uuid.uuid4().hex


@pytest.fixture
def cluster_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def connector(testbed: Testbed, cluster_id: str) -> Iterator[connector_fixtures.ConnectorProcess]:
    """A local connector whose serving name is the one install's Service gets (mcp-connector in NAMESPACE)."""
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CP_SECRET, "namespace": NAMESPACE},
        "stringData": {"kubeconfig": testbed.control_plane.kubeconfig.read_text()},
    }
    testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(secret))
    process = connector_fixtures.start_connector(
        testbed, cluster_id=cluster_id, extra_args=["--service-namespace", NAMESPACE]
    )
    yield process
    process.stop()


def values_file(tmp_path: Path, connector: connector_fixtures.ConnectorProcess, cluster_id: str) -> Path:
    """What ``up ctp connector install ctp <ns> --control-plane-secret`` sets, plus our own keys: where
    the external connector is and which cluster ID to use. The token up always sets is unused there."""
    path = tmp_path / "values.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mcp": {
                    "account": "acme",
                    "name": "ctp",
                    "host": "https://proxy.upbound.io",
                    "token": UNUSED_TOKEN,
                    "secret": {"name": CP_SECRET, "provision": False},
                },
                "clusterID": cluster_id,
                "mode": f"localhost:{connector.port}",
                "caBundle": connector.ca_bundle.decode(),
            }
        )
    )
    return path


def apply_claim(testbed: Testbed, namespace: str, name: str) -> contract.AppRef:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", namespace, check=False)
    text = CLAIM.read_text().replace("name: my-cluster", f"name: {name}", 1)
    eventually(
        lambda: testbed.kubectl(APP_CLUSTER, "apply", "-n", namespace, "-f", "-", input=text),
        timeout=60,
        what="a claim applied through the app cluster",
    )
    return contract.AppRef("", namespace, name)


def cp_claim(testbed: Testbed, ref: contract.AppRef) -> dict:
    return testbed.kubectl_json(
        CONTROL_PLANE, "get", "kubernetesclusters", contract.control_plane_name(ref), "-n", testbed.claim_namespace
    )


def gone(testbed: Testbed, *resource: str) -> bool:
    return testbed.kubectl(APP_CLUSTER, "get", *resource, check=False).returncode != 0


@pytest.mark.timeout(600)
def test_install_claim_uninstall_keep_then_noop(
    testbed: Testbed,
    pulumi_tools: None,
    connector: connector_fixtures.ConnectorProcess,
    cluster_id: str,
    tmp_path: Path,
) -> None:
    env = fleet_env(tmp_path, {"KUBECONFIG": str(testbed.app_cluster.kubeconfig)})
    state = ["--state-dir", str(tmp_path / "installs")]
    claim_ns = testbed.claim_namespace
    values = values_file(tmp_path, connector, cluster_id)

    done = fleet("install", "ctp", claim_ns, "-n", NAMESPACE, "-f", str(values), *state, env=env)
    assert done.returncode == 0, output(done)
    assert f"cluster ID {cluster_id}" in done.stdout
    for name in APISERVICES:
        assert name in done.stdout
        testbed.kubectl(APP_CLUSTER, "wait", "--for=condition=Available", "--timeout=60s", f"apiservice/{name}")

    again = fleet("install", "ctp", claim_ns, "-n", NAMESPACE, "-f", str(values), *state, env=env)
    assert again.returncode == 0, output(again)
    assert "changes: +0 ~0 -0 +-0" in again.stdout, "installing again changes nothing"

    ref = apply_claim(testbed, f"fleet-{cluster_id[:8]}", "kept")
    ref = contract.AppRef(cluster_id, ref.namespace, ref.name)
    assert contract.app_ref_of(eventually(lambda: cp_claim(testbed, ref), what="the claim in the control plane")) == ref

    down = fleet("uninstall", claim_ns, *state, env=env)
    assert down.returncode == 0, output(down)
    assert f"Keep: 1 claim(s) stay with their labels (cluster {cluster_id}" in down.stdout, output(down)
    for name in APISERVICES:
        assert gone(testbed, "apiservice", name), f"{name} still there"
    assert gone(testbed, "service", "mcp-connector", "-n", NAMESPACE)
    assert gone(testbed, "secret", "mcp-connector-disconnect", "-n", "kube-system")
    assert testbed.kubectl(APP_CLUSTER, "get", "secret", CP_SECRET, "-n", NAMESPACE).returncode == 0, (
        "the user's own Secret stays"
    )
    assert contract.app_ref_of(cp_claim(testbed, ref)) == ref, "Keep leaves the claim labelled for a reconnect"

    second = fleet("uninstall", claim_ns, *state, env=env)
    assert second.returncode == 0, output(second)
    assert "nothing to uninstall" in second.stdout and "no connector in the cluster" in second.stdout
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p != values)
    assert UNUSED_TOKEN not in written, "with mcp.secret.provision false the token is neither used nor stored"
    testbed.kubectl(CONTROL_PLANE, "delete", "kubernetesclusters", contract.control_plane_name(ref), "-n", claim_ns)
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", ref.namespace, "--wait=false")


@pytest.mark.timeout(600)
def test_uninstall_with_release_hands_claims_to_the_control_plane(
    testbed: Testbed,
    pulumi_tools: None,
    connector: connector_fixtures.ConnectorProcess,
    cluster_id: str,
    tmp_path: Path,
) -> None:
    env = fleet_env(tmp_path)
    cluster = ["--kubeconfig", str(testbed.app_cluster.kubeconfig), "--state-dir", str(tmp_path / "installs")]
    claim_ns = testbed.claim_namespace
    values = values_file(tmp_path, connector, cluster_id)
    done = fleet(
        "install", "ctp", claim_ns, "-n", NAMESPACE, "-f", str(values), "--cluster-name", "dev-1", *cluster, env=env
    )
    assert done.returncode == 0, output(done)
    testbed.kubectl(APP_CLUSTER, "wait", "--for=condition=Available", "--timeout=60s", f"apiservice/{APISERVICES[0]}")
    ref = apply_claim(testbed, f"fleet-{cluster_id[:8]}", "released")
    ref = contract.AppRef(cluster_id, ref.namespace, ref.name)
    eventually(lambda: cp_claim(testbed, ref), what="the claim in the control plane")

    wrong = fleet("uninstall", "other-namespace", "--cluster-name", "dev-1", *cluster, env=env)
    assert wrong.returncode == 1 and f"connects claim namespace {claim_ns!r}, not 'other-namespace'" in wrong.stderr

    down = fleet("uninstall", claim_ns, "--cluster-name", "dev-1", "--on-disconnect", "Release", *cluster, env=env)
    assert down.returncode == 0, output(down)
    assert "Release: released 1 claim(s)" in down.stdout, output(down)
    claim = cp_claim(testbed, ref)
    assert contract.app_ref_of(claim) is None, "ownership labels removed"
    assert claim["metadata"]["annotations"] == {**claim["metadata"]["annotations"], **contract.release_annotations(ref)}
    assert gone(testbed, "apiservice", APISERVICES[0])
    testbed.kubectl(CONTROL_PLANE, "delete", "kubernetesclusters", contract.control_plane_name(ref), "-n", claim_ns)
    testbed.kubectl(APP_CLUSTER, "delete", "namespace", ref.namespace, "--wait=false")


def test_bad_input_is_named_and_never_prints_the_token(testbed: Testbed, pulumi_tools: None, tmp_path: Path) -> None:
    env = fleet_env(tmp_path)
    token = "upbound-token-" + uuid.uuid4().hex
    state = ["--state-dir", str(tmp_path / "installs")]
    kubeconfig = ["--kubeconfig", str(testbed.app_cluster.kubeconfig)]
    app = [*kubeconfig, "--set", "image=registry.example/mcp-connector:e2e"]

    missing = fleet("install", "ctp", "team-a", *app, *state, env=env)
    assert missing.returncode == 2
    assert "missing credential: give --token" in missing.stderr

    unknown = fleet("install", "ctp", "team-a", "--tokn", token, *app, *state, env=env)
    assert unknown.returncode == 2 and "unknown flag: --tokn" in unknown.stderr

    dead = connector_fixtures.kubeconfig_copy(testbed.app_cluster.kubeconfig, server="https://127.0.0.1:1")
    unreachable = fleet("install", "ctp", "team-a", "--account", "acme", "--token", token, "--kubeconfig", str(dead),
                        "--set", "image=registry.example/mcp-connector:e2e", *state, env=env)  # fmt: skip
    assert unreachable.returncode == 1
    assert "cannot reach the app cluster at https://127.0.0.1:1" in unreachable.stderr

    # Reachable app cluster, but an Upbound host that is not there: the component fails discovery.
    bad_host = fleet("install", "ctp", "team-a", "--account", "acme", "--token", token, "--set",
                     "upbound.host=127.0.0.1:1", *app, *state, env=env, timeout=300)  # fmt: skip
    assert bad_host.returncode == 1, output(bad_host)
    assert "install failed" in bad_host.stderr and "cannot discover claim APIs" in bad_host.stderr, output(bad_host)
    for done in (missing, unknown, unreachable, bad_host):
        assert token not in done.stdout + done.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "installs").rglob("*.log"))
    assert token not in logs, "Pulumi's output masks the token"
    assert testbed.kubectl(APP_CLUSTER, "get", "apiservices", "-l", "app.kubernetes.io/instance=mcp-connector",
                           "-o", "name").stdout.strip() == ""  # fmt: skip
    leftover = fleet("uninstall", "team-a", *kubeconfig, *state, env=env)
    assert leftover.returncode == 0, output(leftover)


@pytest.mark.timeout(600)
def test_a_team_installs_and_another_machine_uninstalls(
    testbed: Testbed,
    pulumi_tools: None,
    connector: connector_fixtures.ConnectorProcess,
    cluster_id: str,
    tmp_path: Path,
) -> None:
    """Machine A installs into the team's backend; B, with a fresh state folder, finds the stack and uninstalls."""
    passphrase = "team-passphrase-" + uuid.uuid4().hex
    passphrase_file = tmp_path / "team-passphrase"
    passphrase_file.write_text(passphrase + "\n")
    shared = tmp_path / "team-backend"
    shared.mkdir()
    team = ["--backend", f"file://{shared}", "--kubeconfig", str(testbed.app_cluster.kubeconfig)]
    base = fleet_env(tmp_path)
    for key in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL"):
        base.pop(key, None)
    machine_a = {**base, "PULUMI_CONFIG_PASSPHRASE": passphrase}
    machine_b = {**base, "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase_file)}
    claim_ns = testbed.claim_namespace
    values = values_file(tmp_path, connector, cluster_id)
    state_a, state_b = ["--state-dir", str(tmp_path / "machine-a")], ["--state-dir", str(tmp_path / "machine-b")]

    no_secret = fleet("install", "ctp", claim_ns, "-n", NAMESPACE, "-f", str(values), *team, *state_a, env=base)
    assert no_secret.returncode == 1, output(no_secret)
    assert "set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE" in no_secret.stderr, output(no_secret)
    assert "--secrets-provider" in no_secret.stderr

    done = fleet("install", "ctp", claim_ns, "-n", NAMESPACE, "-f", str(values), *team, *state_a, env=machine_a)
    assert done.returncode == 0, output(done)
    assert f"state in file://{shared}" in done.stderr, output(done)
    testbed.kubectl(APP_CLUSTER, "wait", "--for=condition=Available", "--timeout=60s", f"apiservice/{APISERVICES[0]}")
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and p != passphrase_file]
    assert not [p for p in stored if p.name == "passphrase"], "no passphrase file is made"
    assert not [p for p in stored if passphrase in p.read_text(errors="replace")], "the passphrase is written nowhere"
    assert list(shared.rglob("*.json")), "the state is in the team's backend"

    # Without the team's backend there is no state for this cluster: the connector is found, nothing changes.
    elsewhere = fleet("uninstall", claim_ns, "--kubeconfig", str(testbed.app_cluster.kubeconfig), *state_b,
                      env=machine_b)  # fmt: skip
    assert elsewhere.returncode == 1, output(elsewhere)
    for expected in (
        "no mcp-connector install for",
        "but the cluster runs a connector",
        f"Service {NAMESPACE}/mcp-connector",
        APISERVICES[0],
        "managed by pulumi",
        "--backend or PULUMI_BACKEND_URL",
        "Nothing was changed",
    ):
        assert expected in elsewhere.stderr, output(elsewhere)
    testbed.kubectl(APP_CLUSTER, "get", "apiservice", APISERVICES[0])

    wrong = fleet("uninstall", claim_ns, *team, *state_b, env={**base, "PULUMI_CONFIG_PASSPHRASE": "not-it"})
    assert wrong.returncode == 1, output(wrong)
    assert passphrase not in wrong.stdout + wrong.stderr
    testbed.kubectl(APP_CLUSTER, "get", "apiservice", APISERVICES[0])

    down = fleet("uninstall", claim_ns, *team, *state_b, env=machine_b)
    assert down.returncode == 0, output(down)
    assert "Keep: " in down.stdout, output(down)
    for name in APISERVICES:
        assert gone(testbed, "apiservice", name), f"{name} still there"
    assert gone(testbed, "service", "mcp-connector", "-n", NAMESPACE)

    again = fleet("uninstall", claim_ns, *team, *state_a, env=machine_a)
    assert again.returncode == 0, output(again)
    assert "nothing to uninstall" in again.stdout, "machine A sees the uninstall B made"
