"""Pulumi YAML programs using McpConnector, run by the real CLI, engine and YAML language host.

The engine starts ``pulumi-language-yaml`` for the program and the component provider host
(provider/) as the executable plugin ``pulumi-resource-mcp-connector`` from ``.dev/bin``. A
user's ``packages:`` entry would make the engine start provider/ through its PulumiPlugin.yaml
instead, which needs ``pulumi-language-python`` (not available here), so the copy of the
example that runs here drops that one entry; everything else is the example as committed.

The connectors run as local processes (``mode: localhost:<port>``), so claims can be applied
through the app cluster and checked in the control plane.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from claims import (
    CLUSTER_CLAIM,
    CLUSTER_RESOURCE,
    DB_CLAIM,
    DB_RESOURCE,
    apiservice_exists,
    apply_claim,
    cp_claim,
    delete_cp_claim,
    is_labelled,
    is_released,
    kube_system_uid,
    remove_install,
    wait_available,
)
from cli_project import CliProject
from connector_fixtures import SERVICE_NAMESPACE, ConnectorProcess, start_connector

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE, REPO_ROOT, seed
from testbed.harness import Testbed
from testbed.tools import BIN_DIR, PROVIDER_PLUGIN, YAML_TOOLS, MissingToolError, require

pytestmark = pytest.mark.e2e

EXAMPLE = REPO_ROOT / "examples" / "yaml"
TWO_CONNECTORS = Path(__file__).resolve().parent / "programs" / "two-connectors"
#: The kubernetes provider in these programs uses the kubeconfig context named like the stack.
STACK = APP_CLUSTER
DB_APISERVICES = ["v1alpha1.db.example.org", "v1beta1.db.example.org"]
#: What the YAML example's `*.example.org` selects among the seeded APIs: a v1 claim API, a v2 XR API.
EXAMPLE_APISERVICES = [*DB_APISERVICES, "v1alpha1.storage.example.org"]
CLUSTER_APISERVICE = "v1alpha1.k8s.starter.org"
REDIS_APISERVICE = "v1.cache.example.org"
APISERVICE_TYPE = "kubernetes:apiregistration.k8s.io/v1:APIService"


@pytest.fixture(scope="module")
def yaml_tools() -> None:
    try:
        require(*YAML_TOOLS)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def connectors(testbed: Testbed) -> Iterator[Callable[..., ConnectorProcess]]:
    """Start local connectors for the test; stopped afterwards."""
    started: list[ConnectorProcess] = []

    def start(**kwargs: str) -> ConnectorProcess:
        process = start_connector(testbed, **kwargs)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def yaml_project(source: Path, tmp_path: Path, testbed: Testbed) -> CliProject:
    """A copy of a YAML program, its ``packages:`` entry (if any) left out: see the module docstring."""
    project = CliProject.copy_of(source, tmp_path, env={"KUBECONFIG": str(testbed.app_cluster.kubeconfig)})
    assert not project.python
    settings = yaml.safe_load((project.dir / "Pulumi.yaml").read_text())
    packages = settings.pop("packages", {})
    assert packages in ({}, {"mcp-connector": "../../provider"}), packages
    (project.dir / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return project


def test_yaml_example_connects_previews_new_api_and_disconnects(
    testbed: Testbed, yaml_tools: None, connectors: Callable[..., ConnectorProcess], tmp_path: Path
) -> None:
    cluster_id = kube_system_uid(testbed)
    connector = connectors(cluster_id=cluster_id, service_name="connector", service_namespace="kube-system")
    project = yaml_project(EXAMPLE, tmp_path, testbed)
    app_ns = f"yaml-{uuid.uuid4().hex[:8]}"
    ref = contract.AppRef(cluster_id, app_ns, "y1-db")
    cp = testbed.control_plane.kubeconfig
    destroyed = False
    project.init_stack(
        STACK,
        {
            "claimNamespace": testbed.claim_namespace,
            "mode": f"localhost:{connector.port}",
            "caBundle": connector.ca_bundle.decode(),
        },
        secrets={"controlPlaneKubeconfig": cp.read_text()},
    )
    try:
        up = project.run("up", "--yes", "--skip-preview")
        # The engine ran the real YAML language host and the provider host plugin from .dev/bin.
        for plugin in ("pulumi-language-yaml", PROVIDER_PLUGIN):
            assert f"using {plugin} from $PATH at {BIN_DIR / plugin}" in up.stdout, plugin
        outputs = project.outputs()
        assert outputs["apiserviceNames"] == EXAMPLE_APISERVICES
        assert outputs["clusterId"] == cluster_id
        assert outputs["claimApis"] == [
            "db.example.org/v1alpha1/PostgreSQLInstance",
            "db.example.org/v1beta1/PostgreSQLInstance",
            "storage.example.org/v1alpha1/Bucket",
        ]

        # A second run changes nothing.
        project.run("preview", "--diff", "--expect-no-changes")

        # A claim API matching `*.example.org` appears in the control plane: preview shows + APIService.
        seed.apply_claim_api(cp, seed.REDIS_CACHE)
        try:
            preview = project.run("preview", "--diff")
            assert f"+ {APISERVICE_TYPE}" in preview.stdout
            assert REDIS_APISERVICE in preview.stdout
        finally:
            seed.delete_claim_api(cp, seed.REDIS_CACHE)

        # A claim applied through the app cluster lands in the control plane, labelled for this cluster.
        wait_available(testbed, "v1beta1.db.example.org")
        apply_claim(testbed, app_ns, DB_CLAIM, "y1")
        claim = cp_claim(testbed, DB_RESOURCE, ref)
        assert claim is not None and is_labelled(claim, ref)

        # Without --run-program the engine refuses: the hook lives in the program (the provider host).
        refused = project.run("destroy", "--yes", check=False)
        assert refused.returncode != 0
        assert all(apiservice_exists(testbed, name) for name in EXAMPLE_APISERVICES)

        # Disconnect (Keep): the hook runs, the claim stays with its labels, the APIServices go.
        disconnect = project.run("destroy", "--yes", "--run-program")
        destroyed = True
        assert f"{app_ns}/y1-db" in disconnect.stdout, "the hook reports the claim it keeps"
        claim = cp_claim(testbed, DB_RESOURCE, ref)
        assert claim is not None and is_labelled(claim, ref), "Keep leaves the claim labelled"
        for name in EXAMPLE_APISERVICES:
            assert not apiservice_exists(testbed, name), name
        assert testbed.kubectl(APP_CLUSTER, "get", "service", "connector", "-n", "kube-system", check=False).returncode
    finally:
        if not destroyed and project.run("destroy", "--yes", "--run-program", check=False).returncode:
            for instance in ("connector",):
                remove_install(testbed, instance)
        delete_cp_claim(testbed, DB_RESOURCE, ref)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)
        project.run("stack", "rm", "--yes", "--force", check=False)


def test_two_connectors_in_one_yaml_program(
    testbed: Testbed, yaml_tools: None, connectors: Callable[..., ConnectorProcess], tmp_path: Path
) -> None:
    cluster_id = str(uuid.uuid4())
    data_namespace = f"mcp-claims-data-{cluster_id[:8]}"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE, check=False)
    testbed.kubectl(CONTROL_PLANE, "create", "namespace", data_namespace)
    platform = connectors(cluster_id=cluster_id, service_name="platform")
    data = connectors(cluster_id=cluster_id, service_name="data", claim_namespace=data_namespace)
    project = yaml_project(TWO_CONNECTORS, tmp_path, testbed)
    app_ns = f"yaml2-{cluster_id[:8]}"
    # Each claim kind, its app-side identity and the control-plane namespace it is stored in.
    refs = {
        CLUSTER_RESOURCE: (contract.AppRef(cluster_id, app_ns, "t1-cluster"), testbed.claim_namespace),
        DB_RESOURCE: (contract.AppRef(cluster_id, app_ns, "t2-db"), data_namespace),
    }
    destroyed = False
    project.init_stack(
        STACK,
        {
            "platformClaimNamespace": testbed.claim_namespace,
            "dataClaimNamespace": data_namespace,
            "clusterId": cluster_id,
            "namespace": SERVICE_NAMESPACE,
            "platformMode": f"localhost:{platform.port}",
            "platformCaBundle": platform.ca_bundle.decode(),
            "dataMode": f"localhost:{data.port}",
            "dataCaBundle": data.ca_bundle.decode(),
        },
        secrets={"controlPlaneKubeconfig": testbed.control_plane.kubeconfig.read_text()},
    )
    try:
        project.run("up", "--yes", "--skip-preview")
        outputs = project.outputs()
        assert outputs["platformApiServices"] == [CLUSTER_APISERVICE]
        assert sorted(outputs["dataApiServices"]) == sorted(EXAMPLE_APISERVICES)
        project.run("preview", "--diff", "--expect-no-changes")

        # Each connector serves its own claim APIs.
        for name in (CLUSTER_APISERVICE, *EXAMPLE_APISERVICES):
            wait_available(testbed, name)
        apply_claim(testbed, app_ns, CLUSTER_CLAIM, "t1")
        apply_claim(testbed, app_ns, DB_CLAIM, "t2")
        for resource, (ref, namespace) in refs.items():
            claim = cp_claim(testbed, resource, ref, namespace=namespace)
            assert claim is not None and is_labelled(claim, ref), resource

        # One destroy runs the hook for both connectors (Release): both claims released, none deleted.
        project.run("destroy", "--yes", "--run-program")
        destroyed = True
        for resource, (ref, namespace) in refs.items():
            claim = cp_claim(testbed, resource, ref, namespace=namespace)
            assert claim is not None and is_released(claim, ref), resource
        for name in (CLUSTER_APISERVICE, *EXAMPLE_APISERVICES):
            assert not apiservice_exists(testbed, name), name
    finally:
        if not destroyed and project.run("destroy", "--yes", "--run-program", check=False).returncode:
            for instance in ("platform", "data"):
                remove_install(testbed, instance)
        for resource, (ref, namespace) in refs.items():
            delete_cp_claim(testbed, resource, ref, namespace)
        testbed.kubectl(CONTROL_PLANE, "delete", "namespace", data_namespace, "--wait=false", check=False)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)
        project.run("stack", "rm", "--yes", "--force", check=False)


def test_yaml_bad_arguments_fail_with_the_components_message(
    testbed: Testbed, yaml_tools: None, tmp_path: Path
) -> None:
    """Through the provider host, an argument error reads as McpConnector says it: no Python stack,
    and an integer input is the integer the program wrote (numbers cross the wire as doubles)."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "bad-arguments",
                "runtime": "yaml",
                "resources": {
                    "connector": {
                        "type": "mcp-connector:index:McpConnector",
                        "properties": {"claimNamespace": testbed.claim_namespace, "replicas": 0},
                    }
                },
            }
        )
    )
    project = yaml_project(source, tmp_path, testbed)
    project.init_stack(STACK, {})
    failed = project.run("preview", check=False)
    assert failed.returncode != 0
    assert "McpConnector connector: give exactly one of token, " in failed.stdout
    assert "(got none)" in failed.stdout
    assert "replicas must be a positive integer (got 0)" in failed.stdout, "an integer, not (got 0.0)"
    assert "Traceback" not in failed.stdout and 'File "' not in failed.stdout
    assert "Unexpected <class" not in failed.stdout
