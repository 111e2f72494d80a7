"""Admission webhooks: compiled once, called with AdmissionReview v1 over HTTPS.

As kube-apiserver calls them: to the configured URL, or to the Service resolved as the
aggregator resolves it (ExternalName: its name; ClusterIP: its address and port) with the TLS
name ``<service>.<namespace>.svc``, verifying the ``caBundle`` (the system roots without one).
A call that fails is a ``CallError`` (the chain applies the failure policy); a response that
refuses is a ``Rejection`` carrying the Status kube-apiserver would answer with.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from mcp_connector.connector.admission.attributes import Attributes
from mcp_connector.connector.admission.expressions import Expression
from mcp_connector.connector.admission.matching import ConfigError, Match

DEFAULT_TIMEOUT = 10
MAX_RESPONSE_BYTES = 3 * 1024 * 1024


class CallError(Exception):
    """The webhook could not be called or answered nonsense (``ErrCallingWebhook``)."""

    def __init__(self, webhook: str, reason: str) -> None:
        super().__init__(f'failed calling webhook "{webhook}": {reason}')


class Rejection(Exception):
    """The webhook refused the request; ``status`` is the Status to answer with."""

    def __init__(self, status: dict[str, Any], warnings: tuple[str, ...] = ()) -> None:
        super().__init__(status.get("message", ""))
        self.status = status
        self.warnings = warnings


@dataclass(frozen=True)
class Webhook:
    """One compiled webhook of a (Validating|Mutating)WebhookConfiguration."""

    name: str
    configuration: str
    mutating: bool
    match: Match | None
    failure_policy: str
    side_effects: str
    timeout: int
    reinvoke: bool
    url: str
    service: tuple[str, str, str, int] | None  # namespace, name, path, port
    ca_bundle: bytes
    match_conditions: tuple[tuple[str, Expression], ...]
    error: str = ""


def compile_configuration(raw: Mapping[str, Any], *, mutating: bool) -> list[Webhook]:
    """Every webhook of one configuration, in its order."""
    configuration = str((raw.get("metadata") or {}).get("name", ""))
    hooks = []
    for i, hook in enumerate(raw.get("webhooks") or ()):
        client = hook.get("clientConfig") or {}
        service = client.get("service")
        error = ""
        try:
            match = Match.parse(hook, f"webhooks[{i}]", rules_key="rules")
        except ConfigError as e:
            match, error = None, str(e)
        if "v1" not in (hook.get("admissionReviewVersions") or ["v1"]):
            error = "webhook does not accept v1 AdmissionReview"
        hooks.append(
            Webhook(
                name=str(hook.get("name", "")),
                configuration=configuration,
                mutating=mutating,
                match=match,
                failure_policy=str(hook.get("failurePolicy") or "Fail"),
                side_effects=str(hook.get("sideEffects") or "Unknown"),
                timeout=int(hook.get("timeoutSeconds") or DEFAULT_TIMEOUT),
                reinvoke=hook.get("reinvocationPolicy") == "IfNeeded",
                url=str(client.get("url") or ""),
                service=(
                    (
                        str(service.get("namespace", "")),
                        str(service.get("name", "")),
                        str(service.get("path") or "/"),
                        int(service.get("port") or 443),
                    )
                    if isinstance(service, dict)
                    else None
                ),
                ca_bundle=base64.b64decode(client.get("caBundle") or ""),
                match_conditions=tuple(
                    (str(c.get("name", "")), Expression.compile(str(c.get("expression", ""))))
                    for c in hook.get("matchConditions") or ()
                ),
                error=error,
            )
        )
    return hooks


@functools.lru_cache(maxsize=64)
def _context(ca_bundle: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context = ssl.create_default_context(cadata=ca_bundle.decode("ascii", "replace"))
    return context


#: Resolves a Service (namespace, name, port) to (host, port) as the aggregator does.
ServiceResolver = Callable[[str, str, int], Awaitable[tuple[str, int]]]


@dataclass(frozen=True)
class Response:
    """What an allowing webhook answered: its warnings, and the patched object of a mutating one."""

    warnings: tuple[str, ...]
    patch: list[Any] | None


async def call(
    session: aiohttp.ClientSession, hook: Webhook, attrs: Attributes, *, resolve: ServiceResolver
) -> Response:
    """Send one AdmissionReview and read the answer; CallError or Rejection when not allowed."""
    if hook.error:
        raise CallError(hook.name, hook.error)
    uid = str(uuid.uuid4())
    server_name = None
    if hook.service is not None:
        namespace, name, path, port = hook.service
        try:
            host, port = await resolve(namespace, name, port)
        except LookupError as e:
            raise CallError(hook.name, str(e)) from None
        url = f"https://{host}:{port}{path}"
        server_name = f"{name}.{namespace}.svc"
    else:
        url = hook.url
    body = orjson.dumps(attrs.review(uid))
    try:
        async with session.post(
            url,
            params={"timeout": f"{hook.timeout}s"},  # as kube-apiserver's client asks
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            ssl=_context(hook.ca_bundle),
            server_hostname=server_name,
            timeout=aiohttp.ClientTimeout(total=hook.timeout),
            allow_redirects=False,
        ) as reply:
            content = await reply.content.read(MAX_RESPONSE_BYTES + 1)
            status = reply.status
    except TimeoutError:
        raise CallError(hook.name, f'failed to call webhook: Post "{url}": context deadline exceeded') from None
    except (aiohttp.ClientError, OSError, ValueError) as e:
        raise CallError(hook.name, f'failed to call webhook: Post "{url}": {e}') from None
    if status != 200:
        raise CallError(hook.name, f"failed to call webhook: the server responded with the status code {status}")
    try:
        review = orjson.loads(content)
        response = review["response"]
        if response.get("uid") != uid:
            raise ValueError(f"expected response.uid={uid}, got {response.get('uid')}")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CallError(hook.name, f"received invalid webhook response: {e}") from None
    warnings = tuple(str(w) for w in response.get("warnings") or ())
    if not response.get("allowed"):
        raise Rejection(denial(hook.name, response.get("status")), warnings)
    patch = None
    if response.get("patch"):
        if not hook.mutating or response.get("patchType") != "JSONPatch":
            raise CallError(hook.name, "received invalid webhook response: unexpected patch or patchType")
        patch = orjson.loads(base64.b64decode(response["patch"]))
        if not isinstance(patch, list):
            raise CallError(hook.name, "received invalid webhook response: the patch is not a JSON patch")
    return Response(warnings, patch)


def denial(webhook: str, result: Any) -> dict[str, Any]:
    """The Status kube-apiserver answers for a webhook's refusal (``webhookerrors.ToStatusErr``)."""
    status: dict[str, Any] = dict(result) if isinstance(result, dict) else {}
    code = int(status.get("code") or 0)
    denied_by = f'admission webhook "{webhook}" denied the request'
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    status.update(
        kind="Status",
        apiVersion="v1",
        metadata={},
        status="Failure",
        message=message,
        code=code if code >= 400 else 400,
    )
    if status.get("status") in ("", "Success"):
        status["status"] = "Failure"
    return status


async def call_all(calls: list[Awaitable[Response]]) -> list[Response | BaseException]:
    """Validating webhooks run in parallel, as kube-apiserver runs them."""
    return list(await asyncio.gather(*calls, return_exceptions=True))
