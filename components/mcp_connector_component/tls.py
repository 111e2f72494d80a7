"""The serving certificate of an in-cluster connector, made without an extra Pulumi provider.

The aggregator dials ``<service>.<namespace>.svc`` and verifies it against the
APIService's ``caBundle``. A fresh CA and leaf are generated on every run; the
component stores them in a Secret that ignores later changes and takes the caBundle
from that Secret's stored value, so re-runs change nothing. The Secret's name carries
a ``generation``: a digest of the names the certificate must carry and of the current
rotation period. When the Service moves (another namespace or name) or a new period
begins, the generation changes, so a new Secret with a new certificate replaces the
old one, well before the old certificate expires, on any ``pulumi up``.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from mcp_connector.core import certs

LEAF_LIFETIME = datetime.timedelta(days=365)
#: A new certificate is made by the first ``pulumi up`` of every period, so none is ever older than this.
ROTATE_EVERY = datetime.timedelta(days=90)


@dataclass(frozen=True)
class ServingTls:
    """PEM texts for the TLS Secret: CA certificate, serving certificate and its key."""

    ca_pem: str
    cert_pem: str
    key_pem: str


def serving_tls(dns_names: list[str]) -> ServingTls:
    """Make a CA and a serving certificate for ``dns_names`` (the first is the subject CN).

    The CA's name carries its creation time, so a CA made by a later run is told apart.
    """
    ca, ca_key = certs.new_ca(f"mcp-connector-ca@{int(datetime.datetime.now(datetime.UTC).timestamp())}")
    cert, key = certs.issue_serving_cert(ca, ca_key, dns_names, lifetime=LEAF_LIFETIME)
    return ServingTls(
        ca_pem=certs.cert_pem(ca).decode(),
        cert_pem=certs.cert_pem(cert).decode(),
        key_pem=certs.key_pem(key).decode(),
    )


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a Service's serving certificate must carry (the aggregator uses the ``.svc`` one)."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}"]


def generation(dns_names: list[str], *, now: datetime.datetime | None = None) -> str:
    """8 hex characters naming the certificate a Service should have now (names and rotation period)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    period = int(moment.timestamp() // ROTATE_EVERY.total_seconds())
    return hashlib.sha256(f"{','.join(dns_names)}|{period}".encode()).hexdigest()[:8]
