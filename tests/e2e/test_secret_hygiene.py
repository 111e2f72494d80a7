"""A known control-plane token goes through the connector and the component, and leaks nowhere.

Issue 4: start the connector and the component with a token we know, drive them through
errors, then look for the token in every log line, every response and the Pulumi state file
(where it may only appear encrypted).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import uuid
from pathlib import Path

import connector_fixtures
import pytest
from component_stack import Program, Setting, open_stack
from connector_fixtures import SERVICE_NAMESPACE, control_plane_token

from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector_component.credentials import to_kubeconfig
from testbed import APP_CLUSTER
from testbed.harness import Testbed

pytestmark = pytest.mark.e2e

NAME = "mcp-hygiene-e2e"
CLAIMS = "/apis/k8s.starter.org/v1alpha1/namespaces/default/kubernetesclusters"


def reveal(text: str) -> str:
    """The text plus every base64 blob in it decoded: a base64-encoded token is a leak too."""
    decoded = []
    for blob in re.findall(r"[A-Za-z0-9+/=_-]{40,}", text):
        try:
            decoded.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode(errors="ignore"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join([text, *decoded])


def test_known_token_is_in_no_log_response_or_plaintext_state(
    testbed: Testbed, pulumi_tools: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    token = control_plane_token(testbed)
    assert len(token) > 100
    kubeconfig = connector_fixtures.kubeconfig_copy(testbed.control_plane.kubeconfig, token=token)
    cluster_id = f"hygiene-{uuid.uuid4().hex[:8]}"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE, check=False)
    connector = connector_fixtures.start_connector(
        testbed, cluster_id=cluster_id, control_plane_kubeconfig=kubeconfig, service_name=NAME
    )
    responses: list[str] = []
    try:
        # Errors of every kind the connector reports, each answered with a Status.
        requests = [
            ("GET", f"{CLAIMS}/does-not-exist", None, 404),
            ("POST", CLAIMS, b"{not json", 400),
            ("POST", CLAIMS, {"apiVersion": "k8s.starter.org/v1alpha1", "kind": "KubernetesCluster",
                              "metadata": {"name": "bad"}, "spec": {"parameters": {"nodes": {"count": "x"}}}}, 422),
            ("GET", "/apis/k8s.starter.org/v1alpha1/namespaces/default/nosuchkinds", None, 404),
            ("GET", CLAIMS, None, 200),
        ]  # fmt: skip
        for method, path, body, expected in requests:
            status, answer = connector.call(method, path, body)
            responses.append(json.dumps(answer))
            assert status == expected, (method, path, answer)

        access = ControlPlaneAccess(
            url=testbed.control_plane.apiserver_url, token=token, ca_pem=testbed.control_plane.ca_cert.read_bytes()
        )
        program = Program(
            Setting(
                app_kubeconfig=testbed.app_cluster.kubeconfig.read_text(),
                name=NAME,
                args={
                    "claim_namespace": testbed.claim_namespace,
                    "control_plane_kubeconfig": to_kubeconfig(access, name="hygiene"),
                    "cluster_id": cluster_id,
                    "namespace": SERVICE_NAMESPACE,
                    "mode": f"localhost:{connector.port}",
                    "ca_bundle": connector.ca_bundle.decode(),
                },
            )
        )
        stack = open_stack(tmp_path / "pulumi", program, "hygiene")
        try:
            up = stack.up(on_output=sys.stdout.write)
            preview = stack.preview(diff=True, on_output=sys.stdout.write)
            state = stack.export_stack()
            files = [p.read_text() for p in (tmp_path / "pulumi").rglob("*.json")]
        finally:
            stack.destroy(run_program=True, on_output=sys.stdout.write)
            stack.workspace.remove_stack("hygiene")
        assert files, "the file backend wrote no state"
    finally:
        connector.stop()
        kubeconfig.unlink(missing_ok=True)

    assert up.summary.result == "succeeded"
    # The Automation API's export decrypts secrets: the token must be there, as a secret value,
    # which shows the state really holds it and the check of the files below means something.
    decrypted = reveal(json.dumps(state.deployment))
    stored = token in decrypted  # (asserted as a bool: pytest would print the token otherwise)
    assert stored, "the exported (decrypted) state holds the token"
    state_files = "\n".join(files)
    assert '"ciphertext"' in state_files, "the credentials are stored encrypted"
    places = {
        "connector log": connector.logs(),
        "connector responses": "\n".join(responses),
        "pulumi up output": up.stdout + up.stderr,
        "pulumi preview output": preview.stdout + preview.stderr,
        "state files": state_files,
        "test output": capfd.readouterr().out,
    }
    # Also the token's payload alone: a partial leak (e.g. a truncated header) counts too.
    needles = {token, token.split(".")[1]}
    leaks = [place for place, text in places.items() for needle in needles if needle in reveal(text)]
    assert not leaks, f"the token appears in: {leaks}"
