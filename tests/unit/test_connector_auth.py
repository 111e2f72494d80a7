"""Front-proxy authentication, SubjectAccessReview caching and option validation (no network)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcp_connector.connector import options
from mcp_connector.connector.http.auth import Headers, Unauthenticated, User, authenticate, settings_from_configmap
from mcp_connector.connector.http.authz import Attributes, Authorizer, review_body
from mcp_connector.core.selectors import Requirement


def _cert(cn: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None, *, ca: bool = False) -> Any:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


CA, CA_KEY = _cert("front-proxy-ca", ca=True)
OTHER_CA, OTHER_KEY = _cert("other-ca", ca=True)
CONFIGMAP = {
    "requestheader-client-ca-file": CA.public_bytes(serialization.Encoding.PEM).decode(),
    "requestheader-allowed-names": '["front-proxy-client"]',
    "requestheader-username-headers": '["X-Remote-User"]',
    "requestheader-group-headers": '["X-Remote-Group"]',
    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
}


def headers(pairs: list[tuple[str, str]]) -> Headers:
    def getall(name: str, default: list[str]) -> list[str]:
        return [v for k, v in pairs if k.lower() == name.lower()] or default

    return Headers(getall, lambda: pairs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_front_proxy_user_groups_and_extras() -> None:
    settings = settings_from_configmap(CONFIGMAP)
    client, _ = _cert("front-proxy-client", (CA.subject, CA_KEY))
    user = authenticate(
        der(client),
        headers(
            [
                ("X-Remote-User", "alice"),
                ("X-Remote-Group", "devs"),
                ("X-Remote-Group", "system:authenticated"),
                ("X-Remote-Extra-Scopes%2Fa", "x"),
                ("X-Remote-Extra-Scopes%2Fa", "y"),
                ("X-Remote-Extra-Case%41", "z"),
            ]
        ),
        settings,
    )
    # Lower-cased before it is unescaped, as kube-apiserver's request-header authenticator reads it.
    extras = (("caseA", ("z",)), ("scopes/a", ("x", "y")))
    assert user == User("alice", ("devs", "system:authenticated"), "", extras)


@pytest.mark.parametrize("case", ["no cert", "other ca", "wrong cn", "no user", "no settings"])
def test_refusals(case: str) -> None:
    settings = settings_from_configmap(CONFIGMAP)
    good, _ = _cert("front-proxy-client", (CA.subject, CA_KEY))
    cert: bytes | None = der(good)
    user = [("X-Remote-User", "alice")]
    if case == "no cert":
        cert = None
    elif case == "other ca":
        cert = der(_cert("front-proxy-client", (OTHER_CA.subject, OTHER_KEY))[0])
    elif case == "wrong cn":
        cert = der(_cert("intruder", (CA.subject, CA_KEY))[0])
    elif case == "no user":
        user = []
    elif case == "no settings":
        settings = None
    with pytest.raises(Unauthenticated):
        authenticate(cert, headers(user), settings)


async def test_authorizer_caches_allowed_and_denied_separately_and_bounded() -> None:
    now = [0.0]
    calls: list[dict[str, Any]] = []

    async def review(body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body)
        return {"status": {"allowed": body["spec"]["user"] == "alice"}}

    authz = Authorizer(review, allowed_ttl=10, denied_ttl=2, max_entries=3, clock=lambda: now[0])
    alice = Attributes(User("alice"), "get", "g", "v", "r", namespace="ns", name="n")
    bob = Attributes(User("bob"), "get", "g", "v", "r", namespace="ns", name="n")
    assert (await authz.authorize(alice)).allowed and not (await authz.authorize(bob)).allowed
    await authz.authorize(alice)
    await authz.authorize(bob)
    assert len(calls) == 2
    now[0] = 3  # the denial expired, the allowance did not
    await authz.authorize(alice)
    await authz.authorize(bob)
    assert len(calls) == 3
    for i in range(5):
        await authz.authorize(Attributes(User(f"u{i}"), "list", "g", "v", "r"))
    assert len(authz) == 3


async def test_decisions_are_kept_under_a_digest_of_the_review_not_the_tenants_values() -> None:
    """The cache is bounded in entries; what a tenant sent (a selector of a thousand values, a
    user's thousand groups) must not be what each entry holds."""
    calls: list[dict[str, Any]] = []

    async def review(body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body)
        return {"status": {"allowed": True}}

    authz = Authorizer(review)
    values = tuple(f"v{i}" for i in range(1000))
    user = User("alice", tuple(f"team-{i}" for i in range(1000)))
    wide = Attributes(user, "list", "g", "v", "r", namespace="ns", label_selector=(Requirement("k", "In", values),))
    narrow = Attributes(user, "list", "g", "v", "r", namespace="ns", label_selector=(Requirement("k", "In", ("v0",)),))
    for attrs in (wide, wide, narrow, narrow):
        assert (await authz.authorize(attrs)).allowed
    assert len(calls) == 2 and len(authz) == 2
    assert calls[0]["spec"]["resourceAttributes"]["labelSelector"]["requirements"][0]["values"] == list(values)
    assert all(isinstance(key, bytes) and len(key) == 32 for key in authz._cache)


async def test_concurrent_askers_share_one_review_and_a_caller_giving_up_cancels_it_for_nobody() -> None:
    calls = 0
    release = asyncio.Event()

    async def review(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"status": {"allowed": True}}

    authz = Authorizer(review)
    attrs = Attributes(User("alice"), "watch", "g", "v", "r", namespace="ns")
    quitter = asyncio.ensure_future(authz.authorize(attrs))
    askers = [asyncio.ensure_future(authz.authorize(attrs)) for _ in range(20)]
    await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    decisions = await asyncio.gather(*askers)
    assert calls == 1 and all(d.allowed for d in decisions)
    assert (await authz.authorize(attrs)).allowed and calls == 1  # then from the cache


def test_review_body_names_the_request() -> None:
    body = review_body(
        Attributes(User("a", ("g1",), "uid", (("k", ("v",)),)), "patch", "g", "v", "r", "status", "ns", "n")
    )
    assert body["spec"]["resourceAttributes"] == {
        "verb": "patch",
        "group": "g",
        "version": "v",
        "resource": "r",
        "subresource": "status",
        "namespace": "ns",
        "name": "n",
    }
    assert body["spec"]["extra"] == {"k": ["v"]} and body["spec"]["uid"] == "uid"
    assert orjson.dumps(body)


def test_options_collect_every_problem_with_flag_names() -> None:
    problems = options.validate(options.parse(["--port", "nope", "--tls-cert-file", "/nonexistent"], env={}))
    text = "\n".join(problems)
    for flag in (
        "--control-plane-kubeconfig",
        "--claim-namespace",
        "--port",
        "--tls-cert-file",
        "--tls-cert-file/--tls-key-file",
    ):
        assert flag in text, text


def test_options_from_environment() -> None:
    opts = options.parse(
        [],
        env={
            "MCP_CONNECTOR_CLAIM_NAMESPACE": "claims",
            "MCP_CONNECTOR_MANAGE_APISERVICES": "true",
            "MCP_CONNECTOR_TLS_SAN": "a.example,b.example",
        },
    )
    assert (
        opts.get("claim-namespace") == "claims" and opts.manage_apiservices and opts.sans == ("a.example", "b.example")
    )
    assert opts.get("port") == "8443"
