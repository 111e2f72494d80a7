"""The TypeScript and Go examples, using McpConnector through the provider host, run by the real engine.

``make examples`` prepares each as ``pulumi package add ../../provider`` would: the SDK generated
from the schema the real CLI reads off the provider host, the pinned dependencies installed
(``package-lock.json``, ``go.sum``), the program type-checked (``tsc --noEmit``, ``go vet``).
``pulumi-language-nodejs`` and ``pulumi-language-go`` are not served as Go modules here, so the
program is served to the real CLI by its own SDK's inline language server (see
``tests/e2e/cli_project.py``); the CLI, the engine, the kubernetes provider and the provider host
(``pulumi-resource-mcp-connector``, started by the engine) are the real ones.

The connector runs as a local process (``mode: localhost:<port>``), so a claim can be applied
through the app cluster and checked in the control plane, as in the YAML example's test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from claims import (
    DB_CLAIM,
    DB_RESOURCE,
    apiservice_exists,
    apply_claim,
    cp_claim,
    delete_cp_claim,
    is_labelled,
    kube_system_uid,
    remove_install,
    wait_available,
)
from cli_project import CliProject
from connector_fixtures import ConnectorProcess, start_connector

from mcp_connector.core import contract
from testbed import APP_CLUSTER, REPO_ROOT, seed
from testbed.harness import Testbed
from testbed.tools import BIN_DIR, PROVIDER_PLUGIN, PULUMI_TOOLS, SDK_TOOLS, MissingToolError, require

pytestmark = pytest.mark.e2e

#: The kubernetes provider in these programs uses the kubeconfig context named like the stack.
STACK = APP_CLUSTER
#: What the examples' `*.example.org` selects among the seeded APIs: two v1 claim APIs, a v2 XR API.
EXAMPLE_APISERVICES = ["v1alpha1.db.example.org", "v1beta1.db.example.org", "v1alpha1.storage.example.org"]
REDIS_APISERVICE = "v1.cache.example.org"
APISERVICE_TYPE = "kubernetes:apiregistration.k8s.io/v1:APIService"
LANGUAGES = ["typescript", "go"]


@pytest.fixture(scope="module")
def language_tools() -> None:
    try:
        require(*PULUMI_TOOLS, *SDK_TOOLS)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def connector(testbed: Testbed) -> Iterator[ConnectorProcess]:
    process = start_connector(
        testbed, cluster_id=kube_system_uid(testbed), service_name="connector", service_namespace="kube-system"
    )
    yield process
    process.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("language", LANGUAGES)
def test_example_connects_previews_new_api_and_disconnects(
    testbed: Testbed, language_tools: None, connector: ConnectorProcess, tmp_path: Path, language: str
) -> None:
    cluster_id = kube_system_uid(testbed)
    project = CliProject.copy_of(
        REPO_ROOT / "examples" / language, tmp_path, env={"KUBECONFIG": str(testbed.app_cluster.kubeconfig)}
    )
    app_ns = f"{language[:2]}-{uuid.uuid4().hex[:8]}"
    ref = contract.AppRef(cluster_id, app_ns, "l1-db")
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
        # The first preview shows what connecting makes, one APIService per selected claim API.
        preview = project.run("preview", "--diff")
        assert f"+ {APISERVICE_TYPE}" in preview.stdout
        for name in EXAMPLE_APISERVICES:
            assert name in preview.stdout, name

        up = project.run("up", "--yes", "--skip-preview")
        # The engine started the provider host plugin from .dev/bin for the component.
        assert f"using {PROVIDER_PLUGIN} from $PATH at {BIN_DIR / PROVIDER_PLUGIN}" in up.stdout
        outputs = project.outputs()
        assert outputs["apiserviceNames"] == EXAMPLE_APISERVICES
        assert outputs["clusterId"] == cluster_id
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
        apply_claim(testbed, app_ns, DB_CLAIM, "l1")
        claim = cp_claim(testbed, DB_RESOURCE, ref)
        assert claim is not None and is_labelled(claim, ref)

        # Disconnect (Keep): the hook runs, the claim stays with its labels, the APIServices go.
        disconnect = project.run("destroy", "--yes", "--run-program")
        destroyed = True
        assert f"{app_ns}/l1-db" in disconnect.stdout, "the hook reports the claim it keeps"
        claim = cp_claim(testbed, DB_RESOURCE, ref)
        assert claim is not None and is_labelled(claim, ref), "Keep leaves the claim labelled"
        for name in EXAMPLE_APISERVICES:
            assert not apiservice_exists(testbed, name), name
    finally:
        if not destroyed and project.run("destroy", "--yes", "--run-program", check=False).returncode:
            remove_install(testbed, "connector")
        delete_cp_claim(testbed, DB_RESOURCE, ref)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", app_ns, "--wait=false", check=False)
        project.run("stack", "rm", "--yes", "--force", check=False)
