"""Small PKI for the test bed: CAs and leaf certificates made with ``cryptography``.

Each cluster gets a fresh CA per ``up`` (nothing secret outlives the test bed). Tests use the
same helpers to make their own serving certificates, e.g. for a fake aggregated API server whose
cert must carry the SAN ``<service>.<namespace>.svc`` that the aggregator verifies. Keys are
ECDSA P-256: Kubernetes accepts them everywhere we need and they are much faster to make than RSA.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcp_connector.core import certs

_BACKDATE = datetime.timedelta(hours=1)  # tolerate small clock differences between processes
_CA_LIFETIME = datetime.timedelta(days=3650)
_LEAF_LIFETIME = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """PEM of the certificate."""
        return certs.cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM of the private key (test material only)."""
        return certs.key_pem(self.key)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write cert and key as PEM files; the key is readable by the owner only."""
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PEM of the public half, as kube-apiserver's --service-account-key-file wants it."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def make_ca(common_name: str) -> CertKey:
    """A self-signed CA that may sign leaf certificates only (path length 0).

    The same CA the product makes for its own serving certificates (core.certs).
    """
    cert, key = certs.new_ca(common_name, lifetime=_CA_LIFETIME)
    return CertKey(cert, key)


def issue(
    ca: CertKey,
    common_name: str,
    *,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = False,
    client: bool = False,
) -> CertKey:
    """Issue a leaf certificate signed by ``ca``.

    ``server``/``client`` set the extended key usages; Go's TLS stack checks them, so a serving
    cert without serverAuth or a client cert without clientAuth is rejected by the apiservers.
    """
    key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(builder.sign(ca.key, hashes.SHA256()), key)


def load(cert_path: Path, key_path: Path) -> CertKey:
    """Load a cert/key pair written by ``CertKey.write`` (e.g. a cluster's front-proxy CA)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{key_path} is not an EC private key")
    return CertKey(cert, key)
