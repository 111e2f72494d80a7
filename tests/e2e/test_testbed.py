"""Acceptance tests of the test bed itself: if these fail, no other e2e result means anything.

They check the three things the project's e2e tests rely on: a working control plane (CRDs and
custom objects, the seeded Crossplane claim APIs), an app cluster whose aggregation layer reaches
a server on this host with front-proxy mTLS, and an offline Pulumi that can drive the app cluster
from an inline Python program.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from testbed import APP_CLUSTER, CONTROL_PLANE, REPO_ROOT, aggregation, pki, seed
from testbed.harness import Testbed
from testbed.tools import tool_path
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (REPO_ROOT / "testbed" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


# ----------------------------------------------------------------------------------------------
# Control plane


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testbed.example.org
spec:
  group: testbed.example.org
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
"""


def test_control_plane_crd_and_custom_object_round_trip(testbed: Testbed) -> None:
    testbed.kubectl(CONTROL_PLANE, "apply", "-f", "-", input=WIDGET_CRD)
    try:
        testbed.kubectl(
            CONTROL_PLANE, "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.testbed.example.org"
        )
        # Discovery lists the kind once its own controller has seen Established, a moment after kubectl
        # wait may have: until then kubectl create cannot map the kind.
        eventually(
            lambda: "widgets.testbed.example.org" in testbed.kubectl(
                CONTROL_PLANE, "api-resources", "--api-group=testbed.example.org", "-o", "name").stdout,
            what="discovery to list widgets",
        )  # fmt: skip
        widget = {
            "apiVersion": "testbed.example.org/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"},
            "spec": {"size": 3},
        }
        testbed.kubectl(CONTROL_PLANE, "create", "-f", "-", input=json.dumps(widget))
        got = testbed.kubectl_json(CONTROL_PLANE, "get", "widgets.testbed.example.org", "w1", "-n", "default")
        assert got["spec"] == {"size": 3}
        assert got["metadata"]["uid"]
    finally:
        testbed.kubectl(CONTROL_PLANE, "delete", "--ignore-not-found", "crd", "widgets.testbed.example.org")


def test_control_plane_runs_crossplane_which_serves_the_seeded_apis(testbed: Testbed) -> None:
    """Real Crossplane made the claim and XR CRDs from the XRDs and set their conditions."""
    namespace = testbed.kubectl_json(CONTROL_PLANE, "get", "namespace", testbed.claim_namespace)
    assert namespace["status"]["phase"] == "Active"
    for api in seed.SEEDED:
        xrd = testbed.kubectl_json(CONTROL_PLANE, "get", "compositeresourcedefinition", api.xrd_name)
        conditions = {c["type"]: (c["status"], c["reason"]) for c in xrd["status"]["conditions"]}
        crd = testbed.kubectl_json(CONTROL_PLANE, "get", "crd", api.crd_name)
        owner = next(o for o in crd["metadata"]["ownerReferences"] if o.get("controller"))
        assert (owner["kind"], owner["uid"]) == ("CompositeResourceDefinition", xrd["metadata"]["uid"])
        if api.namespaced_xr:
            assert xrd["spec"]["scope"] == "Namespaced" and xrd["spec"]["names"]["kind"] == api.kind
            assert conditions == {"Established": ("True", "WatchingCompositeResource")}
            assert crd["spec"]["scope"] == "Namespaced" and crd["spec"]["names"]["categories"] == ["composite"]
        else:
            assert xrd["spec"]["claimNames"]["kind"] == api.kind
            assert conditions == {
                "Established": ("True", "WatchingCompositeResource"),
                "Offered": ("True", "WatchingCompositeResourceClaim"),
            }
            assert crd["spec"]["names"]["categories"] == ["claim"]
        assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == list(api.versions)
        assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == [api.storage_version]
    for api in seed.UNSEEDED:
        missing = testbed.kubectl(CONTROL_PLANE, "get", "crd", api.crd_name, check=False)
        assert missing.returncode != 0, f"{api.crd_name} must not be seeded"

    # An example claim validates against the generated schema, shows Crossplane's columns, and
    # Crossplane's claim controller binds it to an XR it creates.
    claim = seed.KUBERNETES_CLUSTER.example_claim_file.read_text()
    testbed.kubectl(CONTROL_PLANE, "apply", "-n", testbed.claim_namespace, "-f", "-", input=claim)
    try:
        table = testbed.kubectl(CONTROL_PLANE, "get", "kubernetesclusters", "-n", testbed.claim_namespace).stdout
        assert table.split()[:5] == ["NAME", "SYNCED", "READY", "CONNECTION-SECRET", "AGE"]
        bad = testbed.kubectl(
            CONTROL_PLANE,
            "apply",
            "-n",
            testbed.claim_namespace,
            "-f",
            "-",
            check=False,
            input=claim.replace("size: small", "size: huge").replace("name: my-cluster\n", "name: bad\n", 1),
        )
        assert bad.returncode != 0 and "Unsupported value" in bad.stderr
        testbed.kubectl(
            CONTROL_PLANE, "wait", "--for=condition=Synced", "--timeout=60s",
            "-n", testbed.claim_namespace, "kubernetesclusters/my-cluster",
        )
        bound = testbed.kubectl_json(
            CONTROL_PLANE, "get", "kubernetesclusters", "-n", testbed.claim_namespace, "my-cluster"
        )
        xr = testbed.kubectl_json(CONTROL_PLANE, "get", "xkubernetesclusters", bound["spec"]["resourceRef"]["name"])
        assert xr["spec"]["claimRef"]["name"] == "my-cluster"
    finally:
        testbed.kubectl(CONTROL_PLANE, "delete", "-n", testbed.claim_namespace, "kubernetesclusters", "--all")


# ----------------------------------------------------------------------------------------------
# App cluster: aggregation layer to a server on this host


@dataclass
class _Seen:
    """What the fake aggregated server observed, per request."""

    path: str
    headers: dict[str, list[str]]  # lower-cased name -> values; X-Remote-Group comes once per group
    peer_cert_der: bytes | None

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass
class _FakeApiServer:
    """A minimal aggregated API server: HTTPS on 127.0.0.1, client certs required and verified
    against the app cluster's front-proxy CA, answering legacy discovery for one group/version."""

    group: str
    version: str
    ca: pki.CertKey  # goes into the APIService caBundle
    serving: pki.CertKey
    client_ca: Path
    tmp: Path
    namespace: str
    seen: list[_Seen] = field(default_factory=list)
    port: int = 0

    def discovery(self) -> dict[str, Any]:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{self.group}/{self.version}",
            "resources": [
                {
                    "name": "gadgets",
                    "singularName": "gadget",
                    "namespaced": True,
                    "kind": "Gadget",
                    "verbs": ["get", "list"],
                }
            ],
        }

    def run(self) -> Iterator[_FakeApiServer]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                conn = self.connection
                der = conn.getpeercert(binary_form=True) if isinstance(conn, ssl.SSLSocket) else None
                headers: dict[str, list[str]] = {}
                for key, value in self.headers.items():
                    headers.setdefault(key.lower(), []).append(value)
                fake.seen.append(_Seen(self.path, headers, der))
                if self.path.split("?")[0] == f"/apis/{fake.group}/{fake.version}":
                    self._reply(200, fake.discovery())
                else:
                    self._reply(
                        404,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "code": 404,
                            "reason": "NotFound",
                            "message": f"{self.path} not found",
                        },
                    )

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet; requests are recorded in fake.seen

        cert_file, key_file = self.tmp / "serving.crt", self.tmp / "serving.key"
        self.serving.write(cert_file, key_file)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_file), str(key_file))
        ctx.load_verify_locations(cafile=str(self.client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@pytest.fixture
def fake_api_server(testbed: Testbed, tmp_path: Path) -> Iterator[_FakeApiServer]:
    assert testbed.app_cluster.front_proxy_ca_cert is not None
    ca = pki.make_ca("fake-api-test-ca")
    suffix = uuid.uuid4().hex[:8]
    namespace = f"testbed-aggr-{suffix}"
    fake = _FakeApiServer(
        group=f"t{suffix}.testbed.example.org",
        version="v1alpha1",
        ca=ca,
        serving=aggregation.serving_cert(ca, "fake-api", namespace),
        client_ca=testbed.app_cluster.front_proxy_ca_cert,
        tmp=tmp_path,
        namespace=namespace,
    )
    yield from fake.run()


def test_app_cluster_aggregates_to_local_https_server(testbed: Testbed, fake_api_server: _FakeApiServer) -> None:
    fake, namespace, service = fake_api_server, fake_api_server.namespace, "fake-api"
    front_proxy_ca_file = testbed.app_cluster.front_proxy_ca_cert
    assert front_proxy_ca_file is not None
    try:
        aggregation.register(
            testbed,
            fake.group,
            fake.version,
            service=service,
            namespace=namespace,
            port=fake.port,
            ca_bundle=fake.ca.cert_pem,
        )
        raw = testbed.kubectl(APP_CLUSTER, "get", "--raw", f"/apis/{fake.group}/{fake.version}").stdout
        assert json.loads(raw)["groupVersion"] == f"{fake.group}/{fake.version}"
    finally:
        aggregation.unregister(testbed, fake.group, fake.version, service=service, namespace=namespace)
        testbed.kubectl(APP_CLUSTER, "delete", "--ignore-not-found", "--wait=false", "namespace", namespace)

    # The request made on behalf of the kubectl user arrived with its identity in headers and
    # over mTLS with the aggregator's front-proxy client certificate.
    admin = x509.load_pem_x509_certificate(testbed.app_cluster.admin_cert.read_bytes())
    admin_cn = admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    user_requests = [s for s in fake.seen if s.header("X-Remote-User") == admin_cn]
    assert user_requests, f"no request with the admin's X-Remote-User; saw {[(s.path, s.headers) for s in fake.seen]}"
    seen = user_requests[-1]
    assert seen.path == f"/apis/{fake.group}/{fake.version}"
    assert {"system:masters", "system:authenticated"} <= set(seen.headers.get("x-remote-group", []))
    assert seen.peer_cert_der is not None
    client_cert = x509.load_der_x509_certificate(seen.peer_cert_der)
    front_proxy_ca = x509.load_pem_x509_certificate(front_proxy_ca_file.read_bytes())
    client_cert.verify_directly_issued_by(front_proxy_ca)
    assert client_cert.subject.rfc4514_string() == "CN=front-proxy-client"


def test_controller_manager_runs(testbed: Testbed) -> None:
    """kube-controller-manager works: it creates each namespace's default ServiceAccount and
    garbage-collects dependents. (Namespace deletion is not asserted here: it also depends on
    every aggregated API in the cluster answering deletecollection, which a half-built
    connector someone else is running may not.)"""
    name = f"testbed-kcm-{uuid.uuid4().hex[:6]}"
    testbed.kubectl(APP_CLUSTER, "create", "namespace", name)
    try:
        testbed.kubectl(APP_CLUSTER, "wait", "-n", name, "--for=create", "--timeout=60s", "serviceaccount/default")
        owner = testbed.kubectl_json(APP_CLUSTER, "create", "configmap", "owner", "-n", name)
        dependent = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "namespace": name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]},
                ],
            },
        }
        testbed.kubectl(APP_CLUSTER, "create", "-f", "-", input=json.dumps(dependent))
        testbed.kubectl(APP_CLUSTER, "delete", "-n", name, "configmap", "owner", "--wait=true")
        testbed.kubectl(APP_CLUSTER, "wait", "-n", name, "--for=delete", "--timeout=60s", "configmap/dependent")
    finally:
        testbed.kubectl(APP_CLUSTER, "delete", "--ignore-not-found", "--wait=false", "namespace", name)


# ----------------------------------------------------------------------------------------------
# Pulumi


def test_pulumi_version(pulumi_tools: None, tmp_path: Path) -> None:
    from testbed.pulumi_env import pulumi_env

    env = {**os.environ, **pulumi_env(tmp_path / "state")}
    out = subprocess.run(
        [str(tool_path("pulumi")), "version"], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    assert out.stdout.strip() == _versions()["PULUMI_VERSION"]


def test_pulumi_inline_program_manages_configmap_in_app_cluster(
    testbed: Testbed, pulumi_tools: None, tmp_path: Path
) -> None:
    import pulumi
    import pulumi_kubernetes as k8s
    from pulumi.automation.events import OpType

    from testbed.pulumi_env import inline_stack

    kubeconfig = testbed.app_cluster.kubeconfig.read_text()
    suffix = uuid.uuid4().hex[:6]
    cm_name, stack_name = f"testbed-{suffix}", f"dev-{suffix}"  # concurrent runs share PULUMI_HOME

    def program() -> None:
        greeting = pulumi.Config().require("greeting")
        # Without enable_config_map_mutable the provider replaces a ConfigMap whose data changed.
        provider = k8s.Provider("app-cluster", kubeconfig=kubeconfig, enable_config_map_mutable=True)
        cm = k8s.core.v1.ConfigMap(
            "greeting",
            metadata={"name": cm_name, "namespace": "default"},
            data={"greeting": greeting},
            opts=pulumi.ResourceOptions(provider=provider),
        )
        pulumi.export("name", cm.metadata["name"])

    output: list[str] = []
    stack = inline_stack(stack_name, "testbed-smoke", program, tmp_path, config={"greeting": "hello"})
    try:
        started = time.monotonic()
        up = stack.up(on_output=output.append)
        assert up.summary.result == "succeeded", "\n".join(output)
        assert up.outputs["name"].value == cm_name
        cm = testbed.kubectl_json(APP_CLUSTER, "get", "configmap", cm_name, "-n", "default")
        assert cm["data"] == {"greeting": "hello"}

        unchanged = stack.preview(diff=True, on_output=output.append)
        assert set(unchanged.change_summary) == {OpType.SAME}, unchanged.change_summary

        stack.set_config("greeting", pulumi.automation.ConfigValue(value="goodbye"))
        changed = stack.preview(diff=True, on_output=output.append)
        assert changed.change_summary.get(OpType.UPDATE) == 1, changed.change_summary
        assert "goodbye" in changed.stdout

        destroyed = stack.destroy(on_output=output.append)
        assert destroyed.summary.result == "succeeded"
        gone = testbed.kubectl(APP_CLUSTER, "get", "configmap", cm_name, "-n", "default", check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
        print(f"pulumi up/preview/preview/destroy took {time.monotonic() - started:.1f}s")
    finally:
        stack.workspace.remove_stack(stack_name, force=True)
