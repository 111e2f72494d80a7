"""Start and stop ``mcp-connector serve`` as a local process against the test bed.

Importable by any e2e suite (connector, component, security):

* ``start_connector(tb, ...)`` → ``ConnectorProcess``: runs the real console script on
  127.0.0.1 with a free port, its own ``--cert-dir`` (``ca.crt`` there is the caBundle) and the
  test-bed kubeconfigs, and waits until ``/readyz`` answers.
* ``ConnectorProcess.call(...)`` plays the app cluster's aggregator: HTTPS with the front-proxy
  client certificate and ``X-Remote-User``/``X-Remote-Group`` headers, returning (status, JSON).
* ``serving(tb, apiservices)`` is a connector with those APIServices Available; ``app``/``cp`` run
  kubectl against either cluster; ``fresh_namespace`` is an app namespace deleted afterwards.
* ``expose(tb, proc, ...)`` creates the ExternalName Service the APIServices point at (the
  connector itself creates the APIServices when started with ``manage_apiservices=True``);
  ``wait_available`` waits for the aggregator to mark them Available.

Nothing here skips: a missing tool or a connector that does not come up fails the test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed import APP_CLUSTER, CONTROL_PLANE, REPO_ROOT, aggregation
from testbed.harness import Testbed
from testbed.relay import FaultRelay

CONNECTOR_BIN = REPO_ROOT / ".venv" / "bin" / "mcp-connector"
#: Each connector's certificates and log, and kubeconfig copies: kept for one session (for the
#: logs of a failed test), removed when the next session starts (conftest).
WORK_ROOT = REPO_ROOT / ".dev" / "e2e-work"
SERVICE_NAMESPACE = "mcp-connector-e2e"
ADMIN = ("e2e-admin", ("system:masters", "system:authenticated"))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ConnectorProcess:
    """A running connector process and how to reach it."""

    tb: Testbed
    port: int
    cert_dir: Path
    log_file: Path
    args: list[str]
    service_name: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the connector."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> bytes:
        """The CA that verifies the connector's serving certificate (APIService caBundle)."""
        return (self.cert_dir / "ca.crt").read_bytes()

    def logs(self) -> str:
        """Everything the process logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self, *, wait: bool = True) -> None:
        """Start (or restart) the process; by default wait until /readyz answers 200."""
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [str(CONNECTOR_BIN), "serve", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until /readyz says ok; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"connector exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                status, body = self.raw("GET", "/readyz", cert=False)
                if status == 200:
                    return
                last = body.decode(errors="replace")
            except (OSError, ssl.SSLError) as e:
                last = str(e)
            time.sleep(0.2)
        raise AssertionError(f"connector not ready after {timeout}s ({last}):\n{self.logs()[-3000:]}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def ssl_context(self, *, cert: bool | tuple[Path, Path] = True) -> ssl.SSLContext:
        """Client TLS context trusting the connector; presenting the front-proxy cert by default."""
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        if cert is True:
            app = self.tb.app_cluster
            assert app.proxy_client_cert and app.proxy_client_key
            context.load_cert_chain(str(app.proxy_client_cert), str(app.proxy_client_key))
        elif isinstance(cert, tuple):
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return context

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        cert: bool | tuple[Path, Path] = True,
        timeout: float = 15.0,
    ) -> tuple[int, bytes]:
        """One HTTPS request; returns (status, body bytes)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context(cert=cert), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: tuple[str, Sequence[str]] = ADMIN,
        content_type: str = "application/json",
        accept: str = "application/json",
        cert: bool | tuple[Path, Path] = True,
    ) -> tuple[int, Any]:
        """Play the aggregator: front-proxy cert + user headers; returns (status, decoded JSON)."""
        headers = {"Accept": accept, "X-Remote-User": user[0]}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context(cert=cert), timeout=15)
        try:
            conn.putrequest(method, path)
            for name, value in headers.items():
                conn.putheader(name, value)
            for group in user[1]:
                conn.putheader("X-Remote-Group", group)
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return response.status, raw.decode(errors="replace")


def start_connector(
    tb: Testbed,
    *,
    cluster_id: str | None = None,
    control_plane_kubeconfig: Path | None = None,
    control_plane_args: Sequence[str] | None = None,
    manage_apiservices: bool = False,
    service_name: str = "mcp-connector",
    service_namespace: str = SERVICE_NAMESPACE,
    claim_namespace: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    port: int | None = None,
    work: Path | None = None,
    cert_dir: Path | None = None,
) -> ConnectorProcess:
    """Start a connector process for the test bed and return its handle (stop it yourself).

    ``control_plane_args`` replaces the default control-plane access (the test bed's admin
    kubeconfig, or ``control_plane_kubeconfig``), e.g. with the Upbound flags. ``port`` and
    ``work`` (whose ``certs`` folder keeps the CA) are for a connector whose address and CA a
    stack needs before the connector can start.
    """
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="connector-", dir=WORK_ROOT))
    port = port or free_port()
    election = secrets.token_hex(4)
    if control_plane_args is None:
        kubeconfig = control_plane_kubeconfig or tb.control_plane.kubeconfig
        control_plane_args = ["--control-plane-kubeconfig", str(kubeconfig)]
    args = [
        *control_plane_args,
        "--app-kubeconfig",
        str(tb.app_cluster.kubeconfig),
        "--claim-namespace",
        claim_namespace or tb.claim_namespace,
        "--cert-dir",
        str(cert_dir or work / "certs"),
        "--bind-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--service-name",
        service_name,
        "--service-namespace",
        service_namespace,
        "--service-port",
        str(port),
        "--secret-resync-seconds",
        "5",
        "--upstream-timeout-seconds",
        "5",
        "--authz-allowed-ttl-seconds",
        "1",
        "--authz-denied-ttl-seconds",
        "1",
        # Stopping a fixture connector need not wait for endpoints to move (tests of the graceful
        # stop set their own delay); it still drains and releases its leader Lease.
        "--shutdown-delay-seconds",
        "0",
        # A Lease and an identity of its own: each test's connector leads at once, and a restart
        # (proc.start() after a kill) is the same replica taking its Lease back, as a restarted
        # pod of the same name does. Replica tests give a shared Lease.
        "--leader-elect-lease-name",
        f"mcp-e2e-{election}",
        "--leader-elect-identity",
        f"e2e-{election}",
    ]
    if cluster_id:
        args += ["--cluster-id", cluster_id]
    if manage_apiservices:
        args.append("--manage-apiservices")
    args += list(extra_args)
    proc = ConnectorProcess(
        tb, port, cert_dir or work / "certs", work / "connector.log", args, service_name, dict(env or {})
    )
    proc.start(wait=wait)
    return proc


def expose(tb: Testbed, proc: ConnectorProcess) -> None:
    """Create the ExternalName Service (``externalName: localhost``) in front of ``proc``."""
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SERVICE_NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": proc.service_name, "namespace": SERVICE_NAMESPACE},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": proc.port, "protocol": "TCP"}],
                },
            },
        ],
    }
    tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(doc))


def wait_available(tb: Testbed, names: Sequence[str], timeout: float = 60) -> None:
    """Wait until each APIService exists, the aggregator reports it Available and kubectl can
    map its kinds (the aggregator's discovery catches up after Available: ``aggregation.discovered``)."""
    deadline = time.monotonic() + timeout
    for name in names:
        left = max(1, int(deadline - time.monotonic()))
        tb.kubectl(APP_CLUSTER, "wait", "--for=create", f"--timeout={left}s", f"apiservice/{name}")
        left = max(1, int(deadline - time.monotonic()))
        tb.kubectl(APP_CLUSTER, "wait", "--for=condition=Available", f"--timeout={left}s", f"apiservice/{name}")
    aggregation.wait_discovered(tb, list(names), timeout=max(1.0, deadline - time.monotonic()))


def write_connection_secret(tb: Testbed, owner: Mapping[str, Any], name: str, data: Mapping[str, str]) -> None:
    """Write a control-plane connection Secret for ``owner`` (a stored claim) as Crossplane does.

    crossplane-runtime's LocalConnectionSecretFor makes the claim the Secret's controller; the
    connector copies a Secret only into the app namespace of the claim that controls it.
    """
    meta = owner["metadata"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": tb.claim_namespace,
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "connection.crossplane.io/v1alpha1",
        "stringData": dict(data),
    }
    tb.kubectl(CONTROL_PLANE, "apply", "-f", "-", input=json.dumps(secret))


@dataclass
class AppApi:
    """Raw HTTPS to the app cluster's kube-apiserver as the test-bed admin, optionally impersonating.

    For what kubectl cannot send: bodies it would parse first (a YAML alias bomb), DeleteOptions
    preconditions, watch streams held open. Requests for claim APIs go through the aggregator.
    """

    tb: Testbed

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        app = self.tb.app_cluster
        context = ssl.create_default_context(cafile=str(app.ca_cert))
        context.load_cert_chain(str(app.admin_cert), str(app.admin_key))
        port = int(app.apiserver_url.rsplit(":", 1)[1])
        return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)

    def _send(
        self,
        conn: http.client.HTTPSConnection,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str,
        impersonate: tuple[str, Sequence[str]] | None,
        accept: str = "application/json",
    ) -> http.client.HTTPResponse:
        conn.putrequest(method, path)
        conn.putheader("Accept", accept)
        if impersonate is not None:
            conn.putheader("Impersonate-User", impersonate[0])
            for group in impersonate[1]:
                conn.putheader("Impersonate-Group", group)
        if body is not None:
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        impersonate: tuple[str, Sequence[str]] | None = None,
        timeout: float = 30.0,
        accept: str = "application/json",
    ) -> tuple[int, dict[str, str], Any]:
        """One request; returns (status, headers, decoded JSON or text)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn = self._connection(timeout)
        try:
            response = self._send(conn, method, path, data, content_type, impersonate, accept)
            raw = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        try:
            return response.status, headers, json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):  # text, or kube-apiserver's protobuf
            return response.status, headers, raw.decode(errors="replace")

    @contextlib.contextmanager
    def watch(
        self,
        path: str,
        *,
        impersonate: tuple[str, Sequence[str]] | None = None,
        timeout: float = 30.0,
        accept: str = "application/json",
    ) -> Iterator[tuple[int, dict[str, str], http.client.HTTPResponse]]:
        """Open a watch and keep it open for the block; yields (status, headers, response)."""
        conn = self._connection(timeout)
        try:
            response = self._send(conn, "GET", path, None, "", impersonate, accept)
            yield response.status, {k.lower(): v for k, v in response.getheaders()}, response
        finally:
            conn.close()


def remove_apiservices(tb: Testbed) -> None:
    """Delete every APIService the connector manages (label app.kubernetes.io/managed-by)."""
    tb.kubectl(
        APP_CLUSTER, "delete", "apiservice", "-l", "app.kubernetes.io/managed-by=mcp-connector", "--ignore-not-found"
    )


@contextlib.contextmanager
def connected(tb: Testbed, **kwargs: Any) -> Iterator[ConnectorProcess]:
    """A connector serving the app cluster through managed APIServices, for a ``with`` block."""
    proc = start_connector(tb, manage_apiservices=True, **kwargs)
    try:
        expose(tb, proc)
        yield proc
    finally:
        proc.stop()
        remove_apiservices(tb)


class TcpRelay(FaultRelay):
    """The test bed's fault relay (``testbed.relay``) in front of the control plane, to take it
    "down" (``stop``) and back (``start``); ``freeze`` is its ``drop``: connections stay open, every
    byte is lost (a host that vanished)."""

    def freeze(self) -> None:
        """Go silent: keep every connection open but pass nothing on."""
        self.drop()


def control_plane_token(tb: Testbed, service_account: str = "mcp-e2e-token") -> str:
    """A real, valid control-plane bearer token (a ServiceAccount bound to cluster-admin)."""
    ns = tb.claim_namespace
    tb.kubectl(CONTROL_PLANE, "create", "serviceaccount", service_account, "-n", ns, check=False)
    tb.kubectl(
        CONTROL_PLANE, "create", "clusterrolebinding", service_account, "--clusterrole=cluster-admin",
        f"--serviceaccount={ns}:{service_account}", check=False,
    )  # fmt: skip
    return tb.kubectl(CONTROL_PLANE, "create", "token", service_account, "-n", ns, "--duration=1h").stdout.strip()


def kubeconfig_copy(source: Path, *, server: str | None = None, token: str | None = None) -> Path:
    """A copy of a kubeconfig with another server URL and/or a bearer token instead of the client cert."""
    config = yaml.safe_load(source.read_text())
    if server:
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
    if token is not None:
        for user in config["users"]:
            user["user"] = {"token": token}
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="kubeconfig-", dir=WORK_ROOT)
    with os.fdopen(handle, "w") as f:
        yaml.safe_dump(config, f)
    return Path(name)


def app(tb: Testbed, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl against the app cluster."""
    return tb.kubectl(APP_CLUSTER, *args, input=input, check=check)


def cp(tb: Testbed, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl against the control plane."""
    return tb.kubectl(CONTROL_PLANE, *args, input=input, check=check)


def cluster_uid(tb: Testbed) -> str:
    """The app cluster's default cluster ID (the kube-system namespace's uid)."""
    return str(tb.kubectl_json(APP_CLUSTER, "get", "namespace", "kube-system")["metadata"]["uid"])


@contextlib.contextmanager
def serving(tb: Testbed, apiservices: Sequence[str]) -> Iterator[ConnectorProcess]:
    """A connector serving the app cluster with ``apiservices`` Available, for a ``with`` block."""
    # APIServices for our groups left by someone else would keep ours from being created.
    app(tb, "delete", "apiservice", "--ignore-not-found", *apiservices)
    with connected(tb) as proc:
        wait_available(tb, apiservices)
        yield proc


@contextlib.contextmanager
def fresh_namespace(tb: Testbed, prefix: str = "e2e") -> Iterator[str]:
    """A new app namespace, deleted afterwards (without waiting)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    app(tb, "create", "namespace", name)
    try:
        yield name
    finally:
        app(tb, "delete", "namespace", name, "--wait=false", check=False)
