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
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVING_CERT = "tls.crt"
SERVING_KEY = "tls.key"


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


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ensure_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = cert_dir / CA_CERT, cert_dir / CA_KEY
    if ca_cert.exists() and ca_key.exists():
        cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-connector-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key, _key_pem(key))
    ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def ensure_serving_cert(cert_dir: Path, sans: Iterable[str]) -> ServingFiles:
    """Create (or reuse) the CA in ``cert_dir`` and issue a fresh serving certificate for ``sans``."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ensure_ca(cert_dir)
    sans = list(dict.fromkeys(sans))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0] if sans else "mcp-connector")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = ServingFiles(cert_dir / SERVING_CERT, cert_dir / SERVING_KEY, cert_dir / CA_CERT)
    _write_private(files.key_file, _key_pem(key))
    files.cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
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
