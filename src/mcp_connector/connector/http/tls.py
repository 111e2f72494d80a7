"""Serving certificates and the TLS context that asks for the front proxy's client certificate.

With ``--cert-dir`` the connector keeps a CA there (created once, reused across restarts so the
APIService ``caBundle`` stays valid) and issues itself a serving certificate for its SANs on
every start. The server context asks for a client certificate (CERT_OPTIONAL, so health probes
without one still connect) and trusts only the request-header CA. When that CA changes, a new
context is built and swapped in per connection through the SNI callback. Python's ssl rejects a
client certificate from another CA during the handshake itself, before any HTTP 401 could be
sent; callers see a TLS alert instead, which is just as much a refusal.
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcp_connector.core import certs

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVING_CERT = "tls.crt"
SERVING_KEY = "tls.key"
#: Reissued on every start, so a year is plenty.
SERVING_LIFETIME = datetime.timedelta(days=365)


@dataclass(frozen=True)
class ServingFiles:
    """Where the serving certificate and key are, and the CA that verifies them (if ours)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _ensure_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = cert_dir / CA_CERT, cert_dir / CA_KEY
    if ca_cert.exists() and ca_key.exists():
        cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return cert, key
    cert, key = certs.new_ca("mcp-connector-ca")
    _write_private(ca_key, certs.key_pem(key))
    ca_cert.write_bytes(certs.cert_pem(cert))
    return cert, key


def ensure_serving_cert(cert_dir: Path, sans: Iterable[str]) -> ServingFiles:
    """Create (or reuse) the CA in ``cert_dir`` and issue a fresh serving certificate for ``sans``."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ensure_ca(cert_dir)
    names = list(dict.fromkeys(sans)) or ["mcp-connector"]
    cert, key = certs.issue_serving_cert(ca, ca_key, names, lifetime=SERVING_LIFETIME)
    files = ServingFiles(cert_dir / SERVING_CERT, cert_dir / SERVING_KEY, cert_dir / CA_CERT)
    _write_private(files.key_file, certs.key_pem(key))
    files.cert_file.write_bytes(certs.cert_pem(cert) + certs.cert_pem(ca))
    return files


def server_context(files: ServingFiles, client_ca_pem: bytes | None) -> ssl.SSLContext:
    """A TLS server context presenting our certificate and asking for a front-proxy client cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    # Always CERT_OPTIONAL: a connection keeps the verify mode of the context it started on,
    # even after the SNI callback moves it to a newer one.
    context.verify_mode = ssl.CERT_OPTIONAL
    if client_ca_pem:
        context.load_verify_locations(cadata=client_ca_pem.decode())
    return context


class SwappableContext:
    """The listening socket's context, whose per-connection successor can be replaced.

    ``ssl`` binds a context to a listening socket once; the SNI callback, run for every
    handshake, moves the connection onto the newest context (new request-header CA).
    """

    def __init__(self, files: ServingFiles, client_ca_pem: bytes | None) -> None:
        self._files = files
        self.current = server_context(files, client_ca_pem)
        self.listening = server_context(files, client_ca_pem)
        self.listening.sni_callback = self._pick

    def _pick(self, sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        if sock.context is not self.current:
            sock.context = self.current

    def update(self, client_ca_pem: bytes | None) -> None:
        """Use a new request-header CA for connections from now on."""
        self.current = server_context(self._files, client_ca_pem)
