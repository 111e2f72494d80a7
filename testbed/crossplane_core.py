"""Real Crossplane core against the test bed's control plane, run as a local process.

Crossplane is built from its Go module (``build-tools.sh crossplane``) with its CRDs beside it.
``install`` does what the Helm chart's init container does (``crossplane core init``): CRDs,
the TLS CA and client certificate Secrets, the package Lock. ``start_args``/``start_env`` give
``crossplane core start`` with ``--package-runtime=External``, so it never makes package
Deployments (no kubelet runs here), and webhooks off (the API server could not reach them).

Its XRD controller then makes the claim and XR CRDs, and its claim and XR controllers bind
claims and compose XRs, exactly as in a real control plane.

Compositions need a function. ``function-testbed-compose`` (``testbed/gomod/crossplane/function``)
runs as a local gRPC process on 127.0.0.1 and also serves its own package from a loopback
registry, so a ``Function`` object is installed by Crossplane's package manager as usual. What the
External runtime leaves to someone else, the test bed does (``register_function``): the function's
serving certificate from Crossplane's CA, and the active FunctionRevision's ``status.endpoint``,
which is where Crossplane's function runner dials.

Crossplane's metrics and health ports take only a port number (it binds ``:<port>``, every
interface); the test bed gives them free ports and nothing ever calls them.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from testbed import pki
from testbed.kube import kubectl

#: Namespace Crossplane runs in (its Secrets, Lock-related objects, package runtime).
NAMESPACE = "crossplane-system"
CA_SECRET = "crossplane-root-ca"
CLIENT_SECRET = "crossplane-tls-client"
_FIELD_MANAGER = "mcp-testbed"

#: The test bed's composition function: binary, Function object and package coordinates.
FUNCTION = "function-testbed-compose"
FUNCTION_REPOSITORY = "mcp-testbed/function-testbed-compose"
FUNCTION_TAG = "v0.1.0"
_PACKAGE_LABEL = "pkg.crossplane.io/package"
#: The Secret holding the function's serving certificate, which a package runtime provides.
FUNCTION_TLS_SECRET = f"{FUNCTION}-tls-server"


@dataclass(frozen=True)
class Paths:
    """Where Crossplane's files live for one control plane."""

    root: Path

    @property
    def client_certs(self) -> Path:
        """``ca.crt``, ``tls.crt``, ``tls.key``: the client cert Crossplane presents to functions."""
        return self.root / "tls-client"

    @property
    def function_certs(self) -> Path:
        """``tls.crt``, ``tls.key``, ``ca.crt``: the function's serving cert and the CA of Crossplane's client."""
        return self.root / "tls-function"

    @property
    def xpkg_cache(self) -> Path:
        """Package cache (unused with no packages, but it would default to /cache/xpkg)."""
        return self.root / "xpkg-cache"


def _env(kubeconfig: Path) -> dict[str, str]:
    return {"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": NAMESPACE}


def install_crds(kubeconfig: Path, crds_dir: Path) -> None:
    """Apply Crossplane's CRDs and wait until they are Established.

    ``crossplane core init`` applies them too, but then looks up the Lock kind with a client
    made before the CRDs existed and fails once (``no matches for kind "Lock"``); with the
    CRDs already served its single run succeeds.
    """
    files = sorted(crds_dir.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no Crossplane CRDs in {crds_dir}: run make tools")
    namespace = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    args = ["apply", "--server-side", f"--field-manager={_FIELD_MANAGER}", "--force-conflicts", "-f", "-"]
    for f in files:
        args += ["-f", str(f)]
    kubectl(kubeconfig, *args, input=namespace)
    names = [f"crd/{yaml.safe_load(f.read_text())['metadata']['name']}" for f in files]
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", *names)


def init_args(crds_dir: Path) -> list[str]:
    """``crossplane core init``: CRDs (again), TLS Secrets, the Lock, default runtime config."""
    return [
        "core", "init",
        f"--cr-ds-path={crds_dir}",
        "--webhook-enabled=false",
        f"--tlsca-secret-name={CA_SECRET}",
        f"--tls-client-secret-name={CLIENT_SECRET}",
    ]


def init_env(kubeconfig: Path) -> dict[str, str]:
    """Environment of ``crossplane core init`` (it reads the kubeconfig and namespace from there)."""
    return {**os.environ, **_env(kubeconfig)}


def write_client_certs(kubeconfig: Path, paths: Paths) -> None:
    """Copy the client certificate Secret ``init`` made into files, as a pod's volume would hold it."""
    secret = json.loads(kubectl(kubeconfig, "get", "secret", "-n", NAMESPACE, CLIENT_SECRET, "-o", "json").stdout)
    paths.client_certs.mkdir(parents=True, exist_ok=True)
    for key in ("ca.crt", "tls.crt", "tls.key"):
        target = paths.client_certs / key
        target.touch(mode=0o600)
        target.write_bytes(base64.b64decode(secret["data"][key]))


def start_args(paths: Paths, *, metrics_port: int, health_port: int) -> list[str]:
    """``crossplane core start`` for a machine without a kubelet."""
    paths.xpkg_cache.mkdir(parents=True, exist_ok=True)
    return [
        "core", "start",
        "--package-runtime=External",
        "--webhook-enabled=false",
        f"--tls-client-certs-dir={paths.client_certs}",
        f"--xpkg-cache-dir={paths.xpkg_cache}",
        f"--metrics-port={metrics_port}",
        f"--health-probe-port={health_port}",
        # Resync every object every 30 s (default 1 h): once, a claim missed the event of its XR
        # turning Ready under load and waited until a restart; a resync heals that in seconds.
        "--sync-interval=30s",
    ]


def start_env(kubeconfig: Path) -> dict[str, str]:
    """Environment of ``crossplane core start``."""
    return {**os.environ, **_env(kubeconfig)}


def _secret_data(kubeconfig: Path, name: str) -> dict[str, bytes]:
    secret = json.loads(kubectl(kubeconfig, "get", "secret", "-n", NAMESPACE, name, "-o", "json").stdout)
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def write_function_certs(kubeconfig: Path, paths: Paths) -> None:
    """Issue the function's serving certificate from Crossplane's CA (127.0.0.1, where it listens).

    Crossplane dials functions with its client certificate and verifies their serving
    certificate against the same CA; its Deployment runtime would issue this one.
    """
    ca_data = _secret_data(kubeconfig, CA_SECRET)
    ca_key = serialization.load_pem_private_key(ca_data["tls.key"], password=None)
    with warnings.catch_warnings():
        # Crossplane's CA names its country "Crossplane"; cryptography warns that it is not two letters.
        warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
        ca_cert = x509.load_pem_x509_certificate(ca_data["tls.crt"])
        # pki.issue only signs with the CA's key: Crossplane's is RSA, which signs the same way.
        ca = pki.CertKey(ca_cert, cast(ec.EllipticCurvePrivateKey, ca_key))
        leaf = pki.issue(ca, FUNCTION, dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True)
    paths.function_certs.mkdir(parents=True, exist_ok=True)
    leaf.write(paths.function_certs / "tls.crt", paths.function_certs / "tls.key")
    (paths.function_certs / "ca.crt").write_bytes(ca_data["tls.crt"])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": FUNCTION_TLS_SECRET, "namespace": NAMESPACE},
        "data": {
            "tls.crt": base64.b64encode(leaf.cert_pem).decode(),
            "tls.key": base64.b64encode(leaf.key_pem).decode(),
            "ca.crt": base64.b64encode(ca_data["tls.crt"]).decode(),
        },
    }
    kubectl(
        kubeconfig, "apply", "--server-side", f"--field-manager={_FIELD_MANAGER}", "-f", "-", input=json.dumps(secret)
    )


def function_args(paths: Paths, *, grpc_port: int, package_port: int) -> list[str]:
    """The function process: gRPC with mutual TLS, and its package, both on 127.0.0.1."""
    return [
        f"--address=127.0.0.1:{grpc_port}",
        f"--tls-certs-dir={paths.function_certs}",
        f"--package-address=127.0.0.1:{package_port}",
        f"--package-repository={FUNCTION_REPOSITORY}",
        f"--package-tag={FUNCTION_TAG}",
        f"--function-name={FUNCTION}",
    ]


def function_manifest(package_port: int) -> str:
    """The Function object Crossplane's package manager installs from the loopback registry."""
    return json.dumps(
        {
            "apiVersion": "pkg.crossplane.io/v1",
            "kind": "Function",
            "metadata": {"name": FUNCTION},
            "spec": {"package": f"127.0.0.1:{package_port}/{FUNCTION_REPOSITORY}:{FUNCTION_TAG}"},
        }
    )


def install_function(kubeconfig: Path, package_port: int) -> None:
    """Create the Function object (the package manager takes it from there)."""
    kubectl(
        kubeconfig, "apply", "--server-side", f"--field-manager={_FIELD_MANAGER}", "-f", "-",
        input=function_manifest(package_port),
    )


def register_function(kubeconfig: Path, grpc_port: int) -> bool:
    """Point the active FunctionRevision at the local process; True once it is registered.

    This is the External runtime's half of the contract: Crossplane's function runner dials
    the ``status.endpoint`` of the Function's active revision, and the revision is healthy
    once it names the Secret with the function's serving certificate. Polled until the
    package manager has made that revision.
    """
    found = json.loads(
        kubectl(kubeconfig, "get", "functionrevisions", "-l", f"{_PACKAGE_LABEL}={FUNCTION}", "-o", "json").stdout
    )
    endpoint = f"127.0.0.1:{grpc_port}"
    for revision in found.get("items") or []:
        if (revision.get("spec") or {}).get("desiredState") != "Active":
            continue
        status = revision.get("status") or {}
        healthy = any(
            c.get("type") == "RuntimeHealthy" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        registered = status.get("endpoint") == endpoint and status.get("tlsServerSecretName") == FUNCTION_TLS_SECRET
        if not (registered and healthy):
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            runtime_status = {
                "apiVersion": "pkg.crossplane.io/v1",
                "kind": "FunctionRevision",
                "metadata": {"name": revision["metadata"]["name"]},
                "status": {
                    "endpoint": endpoint,
                    "tlsServerSecretName": FUNCTION_TLS_SECRET,
                    "conditions": [
                        {"type": "RuntimeHealthy", "status": "True", "reason": "HealthyPackageRevision",
                         "lastTransitionTime": now},
                    ],
                },
            }
            # Server-side apply merges our condition into Crossplane's by type instead of replacing the list.
            kubectl(
                kubeconfig, "apply", "--server-side", "--subresource=status", f"--field-manager={_FIELD_MANAGER}",
                "--force-conflicts", "-f", "-", input=json.dumps(runtime_status),
            )
        return True
    return False
