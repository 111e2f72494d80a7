"""Admission webhooks called for real: an HTTPS server on 127.0.0.1 answering AdmissionReviews."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcp_connector.connector.admission import chain, mutating_policies, policies, webhooks
from mcp_connector.connector.admission.attributes import Attributes, UserInfo
from mcp_connector.connector.errors import ApiError
from testbed import pki

OBJ = {"apiVersion": "example.org/v1", "kind": "Thing", "metadata": {"name": "t", "namespace": "ns"}, "spec": {}}
ATTRS = Attributes("CREATE", "example.org", "v1", "things", "Thing", "ns", "t", OBJ, None, UserInfo("alice"))
Answer = Callable[[dict[str, Any]], Any]


@pytest.fixture
async def hook(tmp_path: Path) -> AsyncIterator[tuple[list[Answer], int, bytes]]:
    """A webhook server whose next answer is whatever the test put in the list."""
    ca = pki.make_ca("hook-ca")
    leaf = pki.issue(ca, "hook", dns_names=["hook.ns.svc"], ip_addresses=["127.0.0.1"], server=True)
    leaf.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    answers: list[Answer] = []

    async def handle(request: web.Request) -> web.Response:
        review = await request.json()
        return web.json_response(answers[0](review["request"]))

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield answers, port, ca.cert_pem
    finally:
        await runner.cleanup()


def config(port: int, ca: bytes, **hook: Any) -> webhooks.Webhook:
    raw = {
        "metadata": {"name": "c"},
        "webhooks": [
            {
                "name": "w.example.org",
                "clientConfig": {"url": f"https://127.0.0.1:{port}/x", "caBundle": base64.b64encode(ca).decode()},
                "rules": [],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                **hook,
            }
        ],
    }
    return webhooks.compile_configuration(raw, mutating=True)[0]


def review(uid: str, **response: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid, **response}}


async def never(namespace: str, name: str, port: int) -> tuple[str, int]:
    raise LookupError("no services here")


async def test_patch_warnings_and_refusal(hook: tuple[list[Answer], int, bytes]) -> None:
    answers, port, ca = hook
    patch = base64.b64encode(json.dumps([{"op": "add", "path": "/spec/x", "value": 1}]).encode()).decode()
    seen: list[dict[str, Any]] = []

    def allow(request: dict[str, Any]) -> Any:
        seen.append(request)
        return review(request["uid"], allowed=True, warnings=["w1"], patchType="JSONPatch", patch=patch)

    answers[:] = [allow]
    async with aiohttp.ClientSession() as s:
        response = await webhooks.call(s, config(port, ca), ATTRS, resolve=never)
        assert response.warnings == ("w1",)
        assert response.patch == [{"op": "add", "path": "/spec/x", "value": 1}]
        assert seen[0]["object"] == OBJ and seen[0]["userInfo"] == {"username": "alice"}

        answers[:] = [lambda r: review(r["uid"], allowed=False, warnings=["w2"], status={"message": "no"})]
        with pytest.raises(webhooks.Rejection) as refused:
            await webhooks.call(s, config(port, ca), ATTRS, resolve=never)
        assert refused.value.status["message"] == 'admission webhook "w.example.org" denied the request: no'
        assert refused.value.status["code"] == 400 and refused.value.warnings == ("w2",)

        answers[:] = [lambda r: review("someone-else", allowed=True)]
        with pytest.raises(webhooks.CallError, match="received invalid webhook response"):
            await webhooks.call(s, config(port, ca), ATTRS, resolve=never)


async def test_the_ca_bundle_is_verified_and_services_are_resolved(hook: tuple[list[Answer], int, bytes]) -> None:
    answers, port, _ = hook
    answers[:] = [lambda r: review(r["uid"], allowed=True)]
    other_ca = pki.make_ca("other").cert_pem
    async with aiohttp.ClientSession() as s:
        refused = r'failed calling webhook "w\.example\.org": failed to call webhook'
        with pytest.raises(webhooks.CallError, match=refused):
            await webhooks.call(s, config(port, other_ca), ATTRS, resolve=never)

        async def to_loopback(namespace: str, name: str, service_port: int) -> tuple[str, int]:
            assert (namespace, name, service_port) == ("ns", "hook", 443)
            return "127.0.0.1", port

        _, _, ca = hook
        by_service = config(
            0,
            ca,
            clientConfig={"service": {"namespace": "ns", "name": "hook"}, "caBundle": base64.b64encode(ca).decode()},
        )
        assert (await webhooks.call(s, by_service, ATTRS, resolve=to_loopback)).patch is None
        with pytest.raises(webhooks.CallError, match="no services here"):
            await webhooks.call(s, by_service, ATTRS, resolve=never)


async def test_a_mutating_policy_runs_again_when_a_webhook_changed_the_object(
    hook: tuple[list[Answer], int, bytes],
) -> None:
    answers, port, ca = hook
    calls: list[dict[str, Any]] = []
    patch = base64.b64encode(json.dumps([{"op": "add", "path": "/spec/x", "value": 1}]).encode()).decode()

    def add_x(request: dict[str, Any]) -> Any:
        calls.append(request)
        return review(request["uid"], allowed=True, patchType="JSONPatch", patch=patch)

    answers[:] = [add_x]
    rules = [{"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]
    seen_x = "Object{metadata: Object.metadata{labels: {'seen': has(object.spec.x) ? 'x' : 'none'}}}"
    policy = mutating_policies.compile_policy(
        {
            "metadata": {"name": "seen"},
            "spec": {
                "matchConstraints": {"resourceRules": rules},
                "reinvocationPolicy": "IfNeeded",
                "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": seen_x}}],
            },
        }
    )
    bound = policies.compile_binding({"metadata": {"name": "seen-b"}, "spec": {"policyName": "seen"}})
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    snapshot = chain.Snapshot(maps=(policy,), map_bindings=(bound,), mutating=(config(port, ca, rules=rules),))
    admission = chain.Admission(None)  # type: ignore[arg-type]  # nothing here reaches the app cluster
    request = mutating_policies.Request(ATTRS, {}, ("v1",), {}, schema, lambda *_: None)
    try:
        admitted = await admission._mutating_phase(snapshot, request, chain.Result(OBJ))
    finally:
        await admission.close()
    assert admitted.object is not None
    assert admitted.object["metadata"]["labels"] == {"seen": "x"}, "the policy ran again after the webhook"
    assert admitted.object["spec"] == {"x": 1}
    assert len(calls) == 1, "a webhook without IfNeeded is not called again"


@pytest.mark.parametrize(("side_effects", "called"), [("Some", False), ("Unknown", False), ("NoneOnDryRun", True)])
async def test_a_dry_run_never_reaches_a_webhook_with_side_effects(
    hook: tuple[list[Answer], int, bytes], side_effects: str, called: bool
) -> None:
    """kube-apiserver answers a dry run matched by a webhook with side effects with a 400, uncalled."""
    answers, port, ca = hook
    calls: list[dict[str, Any]] = []

    def allow(request: dict[str, Any]) -> Any:
        calls.append(request)
        return review(request["uid"], allowed=True)

    answers[:] = [allow]
    rules = [{"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]
    snapshot = chain.Snapshot(mutating=(config(port, ca, rules=rules, sideEffects=side_effects),))
    admission = chain.Admission(None)  # type: ignore[arg-type]  # nothing here reaches the app cluster
    dry = replace(ATTRS, dry_run=True)
    request = mutating_policies.Request(dry, {}, ("v1",), {}, {"type": "object"}, lambda *_: None)
    try:
        if called:
            await admission._mutating_phase(snapshot, request, chain.Result(OBJ))
        else:
            with pytest.raises(ApiError) as refused:
                await admission._mutating_phase(snapshot, request, chain.Result(OBJ))
            assert refused.value.code == 400
            assert refused.value.body["message"] == 'admission webhook "w.example.org" does not support dry run'
    finally:
        await admission.close()
    assert bool(calls) is called
    if called:
        assert calls[0]["dryRun"] is True
