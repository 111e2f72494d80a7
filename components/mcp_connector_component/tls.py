"""The serving certificate of an in-cluster connector, made without an extra Pulumi provider.

The aggregator dials ``<service>.<namespace>.svc`` and verifies it against the APIService's
``caBundle``. Two Secrets hold the TLS state, each generated once and then kept as stored
(the component ignores later changes to their data), so re-runs change nothing:

* the CA Secret (``<name>-tls-ca``): a CA and its key, valid for ten years;
* the serving Secret (``<name>-tls-<generation>``): a certificate for the Service's names,
  issued by the CA Secret's stored CA when the Secret is made, its key, and that CA.

Nothing here reads the clock to decide anything: validity is fixed at issue time, as with
pulumi-tls, and rotation is a replacement the user asks for, so an ``up`` always does what its
preview showed. The caBundle is derived from the stored state, as the union of the CA that signed
the serving certificate and the CA Secret's current CA, so rotation overlaps:

1. ``up --replace`` of the CA Secret: a new CA joins the bundle; the pods keep serving the
   certificate of the old CA, still trusted.
2. ``up --replace`` of the serving Secret: a certificate from the new CA; the pod template's
   checksum covers it, so the pods roll while both CAs are in the bundle; the APIServices
   are updated after the rollout, and the old CA leaves the bundle then.

Replacing only the serving Secret (same CA) keeps the bundle as it is while the pods roll. The
Secret's name carries a ``generation``, a digest of the names the certificate must carry, so a
Service that moves (another namespace or name) gets a new certificate.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcp_connector.core import certs

CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=1825)
#: A preview warns when a certificate has less than this left (a message only: nothing changes).
WARN_BEFORE = datetime.timedelta(days=90)


@dataclass(frozen=True)
class CaPair:
    """PEM texts for the CA Secret."""

    ca_pem: str
    key_pem: str


@dataclass(frozen=True)
class ServingTls:
    """PEM texts for the serving Secret: the CA that signed the certificate, the certificate and its key."""

    ca_pem: str
    cert_pem: str
    key_pem: str


def new_ca() -> CaPair:
    """A fresh CA (ECDSA P-256, ten years); its name carries its creation time, to tell CAs apart."""
    ca, key = certs.new_ca(
        f"mcp-connector-ca@{int(datetime.datetime.now(datetime.UTC).timestamp())}", lifetime=CA_LIFETIME
    )
    return CaPair(ca_pem=certs.cert_pem(ca).decode(), key_pem=certs.key_pem(key).decode())


def issue(ca: CaPair, dns_names: list[str]) -> ServingTls:
    """A serving certificate for ``dns_names`` (the first is the subject CN), signed by ``ca``."""
    ca_cert = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the stored CA key is not an ECDSA key")
    cert, key = certs.issue_serving_cert(ca_cert, ca_key, dns_names, lifetime=LEAF_LIFETIME)
    return ServingTls(ca_pem=ca.ca_pem, cert_pem=certs.cert_pem(cert).decode(), key_pem=certs.key_pem(key).decode())


def serving_tls(dns_names: list[str]) -> ServingTls:
    """A new CA and a serving certificate from it, in one go (``render``, which keeps no state)."""
    return issue(new_ca(), dns_names)


def trust_bundle(*encoded_pems: str) -> str:
    """Base64 of the distinct CA certificates among ``encoded_pems`` (each base64 PEM, as Secret data holds them)."""
    seen: list[str] = []
    for encoded in encoded_pems:
        pem = base64.b64decode(encoded).decode().strip() + "\n"
        if pem not in seen:
            seen.append(pem)
    return base64.b64encode("".join(seen).encode()).decode()


def expiring(encoded_pem: str, *, what: str, now: datetime.datetime | None = None) -> str | None:
    """A warning when the certificate in ``encoded_pem`` (base64 PEM) ends within WARN_BEFORE, else None."""
    cert = x509.load_pem_x509_certificate(base64.b64decode(encoded_pem))
    left = cert.not_valid_after_utc - (now or datetime.datetime.now(datetime.UTC))
    if left > WARN_BEFORE:
        return None
    return f"the {what} expires on {cert.not_valid_after_utc:%Y-%m-%d}; rotate it with 'pulumi up --replace' (README)"


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a Service's serving certificate must carry (the aggregator uses the ``.svc`` one)."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}"]


def generation(dns_names: list[str]) -> str:
    """8 hex characters naming the certificate a Service needs (a digest of its names)."""
    return hashlib.sha256(",".join(dns_names).encode()).hexdigest()[:8]
