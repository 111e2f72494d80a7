"""Front-proxy authentication: only the app cluster's aggregator may call us, on a user's behalf.

The aggregator presents a client certificate signed by the request-header CA and names the
user in ``X-Remote-*`` headers. Both the CA and the allowed certificate names come from the
app cluster's ``kube-system/extension-apiserver-authentication`` ConfigMap, which can change
(CA rotation), so the settings are a replaceable value. The TLS handshake already verifies the
chain against the CA the SSL context held at connect time; the check here repeats the issuer
test against the *current* CA so a rotated-out CA stops working on kept-alive connections too.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"


class Unauthenticated(Exception):
    """The caller is not the front proxy (or named no user); answered with 401."""


@dataclass(frozen=True)
class FrontProxySettings:
    """The request-header authentication settings the app cluster publishes."""

    client_ca_pem: bytes
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_header_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    cas: tuple[x509.Certificate, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class User:
    """Who the front proxy says is asking."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def extra_dict(self) -> dict[str, list[str]]:
        """Extras in the SubjectAccessReview shape."""
        return {k: list(v) for k, v in self.extra}


def _json_list(data: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = data.get(key)
    if raw is None:
        return default
    value = orjson.loads(raw) if raw.strip() else []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{CONFIGMAP_NAME} key {key!r} is not a JSON list of strings")
    return tuple(value)


def settings_from_configmap(data: Mapping[str, str]) -> FrontProxySettings | None:
    """Parse the ConfigMap's data; None when it publishes no request-header CA."""
    ca_pem = data.get("requestheader-client-ca-file")
    if not ca_pem:
        return None
    cas = tuple(x509.load_pem_x509_certificates(ca_pem.encode()))
    return FrontProxySettings(
        client_ca_pem=ca_pem.encode(),
        allowed_names=_json_list(data, "requestheader-allowed-names", ()),
        username_headers=_json_list(data, "requestheader-username-headers", ("X-Remote-User",)),
        uid_headers=_json_list(data, "requestheader-uid-headers", ()),
        group_headers=_json_list(data, "requestheader-group-headers", ("X-Remote-Group",)),
        extra_header_prefixes=_json_list(data, "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
        cas=cas,
    )


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _issued_by_any(cert: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):  # signature, issuer or algorithm mismatch
            continue
        return True
    return False


@functools.lru_cache(maxsize=64)
def _check_front_proxy(peer_cert_der: bytes, settings: FrontProxySettings) -> None:
    """Raise Unauthenticated unless the certificate is the front proxy's under ``settings``.

    The aggregator presents the same certificate on every request, so the parse and the
    signature check are remembered per (certificate, settings); failures are not cached.
    """
    try:
        cert = x509.load_der_x509_certificate(peer_cert_der)
    except ValueError:
        raise Unauthenticated("unreadable client certificate") from None
    if not _issued_by_any(cert, settings.cas):
        raise Unauthenticated("client certificate not signed by the request-header CA")
    common_name = _common_name(cert)
    if settings.allowed_names and common_name not in settings.allowed_names:
        raise Unauthenticated(f"client certificate CN {common_name!r} is not an allowed front proxy")


class Headers:
    """The subset of a case-insensitive multi-valued header mapping we read."""

    def __init__(self, getall: Any, items: Any) -> None:
        self._getall = getall
        self._items = items

    def all(self, name: str) -> list[str]:
        """Every value of one header."""
        return list(self._getall(name, []))

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair."""
        return list(self._items())


def authenticate(peer_cert_der: bytes | None, headers: Headers, settings: FrontProxySettings | None) -> User:
    """Return the user a front-proxy request is made for, or raise Unauthenticated."""
    if settings is None:
        raise Unauthenticated("the app cluster publishes no request-header CA yet")
    if not peer_cert_der:
        raise Unauthenticated("no client certificate")
    _check_front_proxy(peer_cert_der, settings)
    name = next((v for h in settings.username_headers for v in headers.all(h) if v), "")
    if not name:
        raise Unauthenticated("the front proxy named no user")
    groups = tuple(g for h in settings.group_headers for g in headers.all(h))
    uid = next((v for h in settings.uid_headers for v in headers.all(h) if v), "")
    extra: dict[str, list[str]] = {}
    for header, value in headers.items():
        for prefix in settings.extra_header_prefixes:
            if header.lower().startswith(prefix.lower()):
                # As the request-header authenticator: lower-cased, then unescaped (``%41`` is ``A``).
                key = urllib.parse.unquote(header[len(prefix) :].lower())
                extra.setdefault(key, []).append(value)
    return User(name, groups, uid, tuple(sorted((k, tuple(v)) for k, v in extra.items())))
