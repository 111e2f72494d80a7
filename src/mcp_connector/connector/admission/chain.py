"""The admission chain for one write: mutating policies and webhooks, then validating ones.

Configurations come from informers on the app cluster and are compiled when they change (a
snapshot swapped whole). Per request: match (``matching``) apart from evaluation
(``policies``, ``mutating_policies``, ``webhooks``); each failure goes through ``_failed``
(webhooks), ``policies.decide_error`` (validating policies) or ``mutating_policies.run``
(mutating policies), the only places a failure policy is read. The mutating phase runs again
once when it changed the object (``reinvocation``), as kube-apiserver's reinvoker does. A denial is
the ApiError kube-apiserver would answer with, word for word, carrying the warnings gathered
so far.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mcp_connector import upstream
from mcp_connector.connector.admission import mutating_policies, policies, reinvocation, webhooks
from mcp_connector.connector.admission.attributes import Attributes
from mcp_connector.connector.admission.expressions import ExpressionError
from mcp_connector.connector.admission.informer import Informer
from mcp_connector.connector.admission.matching import Selector
from mcp_connector.connector.api import patches
from mcp_connector.connector.errors import ApiError, status_body
from mcp_connector.connector.logs import fields

log = logging.getLogger(__name__)

_REG = upstream.api_path("apis", "admissionregistration.k8s.io", "v1")
#: MutatingAdmissionPolicy is beta (v1beta1) since Kubernetes 1.34, off by default; watched where served.
_REG_BETA = upstream.api_path("apis", "admissionregistration.k8s.io", "v1beta1")
_REASON_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}
#: How long a write waits for the first list of the configurations before it is refused.
SYNC_WAIT = 10.0


@dataclass(frozen=True)
class Snapshot:
    """Every configuration, compiled."""

    vaps: tuple[policies.Policy, ...] = ()
    bindings: tuple[policies.Binding, ...] = ()
    mutating: tuple[webhooks.Webhook, ...] = ()
    validating: tuple[webhooks.Webhook, ...] = ()
    #: MutatingAdmissionPolicies (served as ``v1beta1`` where the app cluster enables them).
    maps: tuple[mutating_policies.MutatingPolicy, ...] = ()
    map_bindings: tuple[policies.Binding, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing at all is configured (writes skip admission)."""
        return not (self.bindings or self.mutating or self.validating or self.map_bindings)


@dataclass
class Result:
    """An admitted write: the (possibly mutated) object and the warnings for the client."""

    object: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)


class Admission:
    """The app cluster's admission configurations, kept current, and the chain that applies them."""

    def __init__(self, app_cluster: upstream.Client) -> None:
        self._client = app_cluster
        self.snapshot = Snapshot()
        self._informers = {
            name: Informer(app_cluster, path, self._recompile)
            for name, path in (
                ("policies", _REG.child("validatingadmissionpolicies")),
                ("bindings", _REG.child("validatingadmissionpolicybindings")),
                ("mutating", _REG.child("mutatingwebhookconfigurations")),
                ("validating", _REG.child("validatingwebhookconfigurations")),
                ("maps", _REG_BETA.child("mutatingadmissionpolicies")),
                ("map_bindings", _REG_BETA.child("mutatingadmissionpolicybindings")),
            )
        }
        self.namespaces = Informer(app_cluster, upstream.api_path("api", "v1", "namespaces"))
        self._params: dict[tuple[str, str], Informer | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Start the informers (call from the running loop)."""
        for informer in (*self._informers.values(), self.namespaces):
            self._tasks.append(asyncio.create_task(informer.run()))

    async def close(self) -> None:
        """Stop the informers and close the webhook connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def synced(self) -> bool:
        """Whether every configuration has been listed once."""
        return all(i.synced.is_set() for i in self._informers.values())

    def _recompile(self) -> None:
        items = {name: sorted(i.items.values(), key=_name) for name, i in self._informers.items()}
        self.snapshot = Snapshot(
            tuple(policies.compile_policy(p) for p in items["policies"]),
            tuple(policies.compile_binding(b) for b in items["bindings"]),
            tuple(h for c in items["mutating"] for h in webhooks.compile_configuration(c, mutating=True)),
            tuple(h for c in items["validating"] for h in webhooks.compile_configuration(c, mutating=False)),
            tuple(mutating_policies.compile_policy(p) for p in items["maps"]),
            tuple(policies.compile_binding(b) for b in items["map_bindings"]),
        )
        kinds = [p.param_kind for p in self.snapshot.vaps] + [p.param_kind for p in self.snapshot.maps]
        for kind in kinds:
            if kind is not None and kind not in self._params:
                self._params[kind] = None
                self._tasks.append(asyncio.create_task(self._watch_params(kind)))

    async def _watch_params(self, kind: tuple[str, str]) -> None:
        """Find the param kind's resource in discovery, then keep its objects (retrying until served)."""
        api_version, name = kind
        group, _, version = api_version.rpartition("/")
        try:
            base = upstream.api_path("apis", group, version) if group else upstream.api_path("api", version)
        except upstream.InvalidPathSegment:
            return  # a paramKind no API can have: its bindings fail as "not found"
        while True:
            try:
                found = await upstream.request(self._client, "GET", base)
                resource = next(
                    r["name"] for r in found.get("resources") or () if r.get("kind") == name and "/" not in r["name"]
                )
                break
            except (upstream.ControlPlaneError, StopIteration):
                await asyncio.sleep(10.0)
        informer = Informer(self._client, base.child(resource))
        self._params[kind] = informer
        await informer.run()

    def _lookup_params(
        self, kind: tuple[str, str], namespace: str, name: str, selector: Selector | None
    ) -> Sequence[dict[str, Any]] | None:
        informer = self._params.get(kind)
        if informer is None or not informer.synced.is_set():
            return None
        objects = [o for (ns, _), o in informer.items.items() if ns in ("", namespace)]
        if selector is not None:
            return [o for o in objects if selector.matches((o.get("metadata") or {}).get("labels") or {})]
        return [o for o in objects if _name(o) == name]

    async def _namespace(self, name: str) -> dict[str, Any]:
        found = self.namespaces.items.get(("", name))
        if found is None:
            try:
                found = await upstream.request(self._client, "GET", upstream.api_path("api", "v1", "namespaces", name))
            except (upstream.ControlPlaneError, upstream.InvalidPathSegment):
                found = {"metadata": {"name": name}}
        return found

    async def _resolve(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """A webhook Service's address, as the aggregator's ClusterIP resolver finds it."""
        try:
            path = upstream.api_path("api", "v1", "namespaces", namespace, "services", name)
            service = await upstream.request(self._client, "GET", path)
        except (upstream.ControlPlaneError, upstream.InvalidPathSegment) as e:
            raise LookupError(f'service "{name}" not found in namespace "{namespace}": {e}') from None
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return str(spec.get("externalName", "")), port
        if not any(p.get("port") == port for p in spec.get("ports") or ()):
            raise LookupError(f"no service port {port} found for service {name!r}")
        return str(spec.get("clusterIP", "")), port

    async def admit(
        self, attrs: Attributes, versions: Sequence[str], schema: Mapping[str, Any] | None = None
    ) -> Result:
        """Run the chain; the admitted object, or ApiError as kube-apiserver would refuse.

        ``versions`` are the resource's served versions, ``schema`` the ``openAPIV3Schema`` of
        the requested one (what an ApplyConfiguration is merged by).
        """
        if not self.synced:
            try:
                await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in self._informers.values())), SYNC_WAIT)
            except TimeoutError:
                raise _forbidden(attrs, "not yet ready to handle request") from None
        snapshot = self.snapshot
        result = Result(attrs.object)
        if snapshot.empty:
            return result
        namespace = await self._namespace(attrs.namespace)
        labels = (namespace.get("metadata") or {}).get("labels") or {}
        request = mutating_policies.Request(
            attrs, labels, versions, _namespace_object(namespace), schema or {}, self._lookup_params
        )
        attrs = await self._mutating_phase(snapshot, request, result)
        self._validate_policies(snapshot, attrs, namespace, labels, versions, result)
        await self._validate_webhooks(snapshot, attrs, labels, versions, result)
        result.object = attrs.object
        return result

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _hook_applies(
        self, hook: webhooks.Webhook, attrs: Attributes, labels: Mapping[str, str], versions: Sequence[str]
    ) -> bool:
        if hook.match is not None and not hook.match.matches(attrs, labels, versions):
            return False
        try:
            return all(c.evaluate(_data(attrs)) is True for _, c in hook.match_conditions)
        except ExpressionError as e:
            _failed(hook, attrs, webhooks.CallError(hook.name, str(e)))
            return False

    async def _mutating_phase(
        self, snapshot: Snapshot, request: mutating_policies.Request, result: Result
    ) -> Attributes:
        """MutatingAdmissionPolicies, then mutating webhooks; once more if the object changed."""
        attrs = request.attrs
        state = reinvocation.Pass()
        policy_plugin, hook_plugin = reinvocation.Plugin(), reinvocation.Plugin()
        while True:
            if attrs.operation in ("CREATE", "UPDATE") and attrs.object is not None and snapshot.map_bindings:
                request = dataclasses.replace(request, attrs=attrs)
                attrs, failures = mutating_policies.run(
                    snapshot.maps, snapshot.map_bindings, request, state, policy_plugin
                )
                if failures:
                    raise _policy_failures(attrs, failures, result)
            attrs = await self._mutate(snapshot, attrs, request.labels, request.versions, result, state, hook_plugin)
            if state.is_reinvoke or not state.should_reinvoke:
                return attrs
            state.is_reinvoke = True

    async def _mutate(
        self,
        snapshot: Snapshot,
        attrs: Attributes,
        labels: Mapping[str, str],
        versions: Sequence[str],
        result: Result,
        state: reinvocation.Pass,
        plugin: reinvocation.Plugin,
    ) -> Attributes:
        """One pass of the mutating webhooks in order (``reinvocationPolicy: IfNeeded`` ones run
        again in the second pass when the object changed after them)."""
        if attrs.object is None:
            return attrs
        plugin.begin(state, attrs.object)
        for hook in snapshot.mutating:
            if not self._hook_applies(hook, attrs, labels, versions) or plugin.skip(state, hook.name):
                continue
            before = attrs.object
            attrs = await self._call_mutating(hook, attrs, result)
            if attrs.object != before:
                plugin.changed(state)
            plugin.invoked(hook.name, hook.reinvoke)
        plugin.end(attrs.object)
        return attrs

    async def _call_mutating(self, hook: webhooks.Webhook, attrs: Attributes, result: Result) -> Attributes:
        _check_dry_run(hook, attrs)
        try:
            response = await webhooks.call(self._session_(), hook, attrs, resolve=self._resolve)
        except webhooks.Rejection as e:
            result.warnings.extend(e.warnings)
            raise ApiError(e.status, headers=_warning_headers(result)) from None
        except webhooks.CallError as e:
            _failed(hook, attrs, e, result)
            return attrs
        result.warnings.extend(response.warnings)
        if response.patch is None:
            return attrs
        try:
            patched = patches.json_patch(copy.deepcopy(attrs.object), response.patch)
        except patches.PatchError as e:
            _failed(hook, attrs, webhooks.CallError(hook.name, f"JSON Patch: {e}"), result)
            return attrs
        if not isinstance(patched, dict):
            _failed(hook, attrs, webhooks.CallError(hook.name, "JSON Patch: the result is not an object"), result)
            return attrs
        return attrs.with_object(patched)

    def _validate_policies(
        self,
        snapshot: Snapshot,
        attrs: Attributes,
        namespace: dict[str, Any],
        labels: Mapping[str, str],
        versions: Sequence[str],
        result: Result,
    ) -> None:
        data = {**_data(attrs), "namespaceObject": _namespace_object(namespace)}
        denied: list[policies.Decision] = []
        for policy in snapshot.vaps:
            if policy.match is not None and not policy.match.matches(attrs, labels, versions):
                continue
            for binding in snapshot.bindings:
                if binding.policy != policy.name:
                    continue
                if binding.match is not None and not binding.match.matches(attrs, labels, versions):
                    continue
                decisions, annotations = policies.evaluate(policy, binding, attrs, data, self._lookup_params)
                for decision in decisions:
                    if decision.action != "Deny":
                        continue
                    if "Deny" in binding.actions:
                        denied.append(decision)
                    if "Warn" in binding.actions:
                        result.warnings.append(
                            f"Validation failed for ValidatingAdmissionPolicy '{policy.name}' with binding "
                            f"'{binding.name}': {decision.message}"
                        )
                    if "Audit" in binding.actions:
                        log.info(
                            "admission audit",
                            extra=fields(policy=policy.name, binding=binding.name, message=decision.message),
                        )
                if annotations:
                    log.info("admission audit annotations", extra=fields(policy=policy.name, annotations=annotations))
        if denied:
            first = denied[0]
            message = (
                f"ValidatingAdmissionPolicy '{first.policy}' with binding '{first.binding}' denied request: "
                f"{first.message}"
            )
            reason = first.reason or "Invalid"
            error = _forbidden(attrs, message, result)
            error.body.update(reason=reason, code=_REASON_CODES.get(reason, 500))
            error.body["details"]["causes"] = [{"message": message}]
            error.code = error.body["code"]
            raise error

    async def _validate_webhooks(
        self,
        snapshot: Snapshot,
        attrs: Attributes,
        labels: Mapping[str, str],
        versions: Sequence[str],
        result: Result,
    ) -> None:
        hooks = [h for h in snapshot.validating if self._hook_applies(h, attrs, labels, versions)]
        for hook in hooks:
            _check_dry_run(hook, attrs)
        session = self._session_()
        answers = await webhooks.call_all([webhooks.call(session, h, attrs, resolve=self._resolve) for h in hooks])
        for answer in answers:
            if isinstance(answer, webhooks.Response | webhooks.Rejection):
                result.warnings.extend(answer.warnings)
        for hook, answer in zip(hooks, answers, strict=True):
            if isinstance(answer, webhooks.Rejection):
                raise ApiError(answer.status, headers=_warning_headers(result))
            if isinstance(answer, webhooks.CallError):
                _failed(hook, attrs, answer, result)
            elif isinstance(answer, BaseException):
                raise answer


def _failed(hook: webhooks.Webhook, attrs: Attributes, error: webhooks.CallError, result: Result | None = None) -> None:
    """The webhook failure policy, in one place: Ignore logs and goes on, Fail refuses with a 500."""
    if hook.failure_policy == "Ignore":
        log.warning("failed calling webhook, failing open", extra=fields(webhook=hook.name, error=str(error)))
        return
    log.warning("failed calling webhook, failing closed", extra=fields(webhook=hook.name, error=str(error)))
    body = status_body(500, f"Internal error occurred: {error}", reason="InternalError")
    body["details"] = {"causes": [{"message": str(error)}]}
    raise ApiError(body, headers=_warning_headers(result) if result else ())


def _policy_failures(attrs: Attributes, failures: Sequence[mutating_policies.Failure], result: Result) -> ApiError:
    """The mutating policies' refusal as the policy dispatcher words it: a 403 whose message is
    the first failure's (its reason, if it has one), every failure a cause."""
    error = _forbidden(attrs, "admission request denied by policy", result)
    first = failures[0]
    error.body["message"] = first.text
    if first.reason:
        error.body["reason"] = first.reason
    error.body["details"]["causes"] = [{"message": f.text} for f in failures]
    for failure in failures:
        log.warning(
            "mutating admission policy failed, failing closed",
            extra=fields(policy=failure.policy, binding=failure.binding, error=failure.message),
        )
    return error


def _check_dry_run(hook: webhooks.Webhook, attrs: Attributes) -> None:
    """A webhook with side effects cannot see a dry run: 400, as kube-apiserver answers."""
    if attrs.dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
        raise ApiError.of(400, f'admission webhook "{hook.name}" does not support dry run', reason="BadRequest")


def _forbidden(attrs: Attributes, message: str, result: Result | None = None) -> ApiError:
    """``admission.NewForbidden``: the resource, the object's name (or ``Unknown``) and why."""
    name = attrs.name
    if not name:
        meta = (attrs.object or {}).get("metadata") or {}
        name = str(meta.get("name") or meta.get("generateName") or "Unknown")
    resource = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    body = status_body(
        403,
        f'{resource} "{name}" is forbidden: {message}',
        reason="Forbidden",
        details={"name": name, "group": attrs.group, "kind": attrs.resource},
    )
    return ApiError(body, headers=_warning_headers(result) if result else ())


def warning_header(text: str) -> str:
    """A ``Warning`` header value as kube-apiserver writes it: code 299, no agent, quoted text."""
    return f"299 - {json.dumps(text, ensure_ascii=False)}"


def _warning_headers(result: Result | None) -> tuple[tuple[str, str], ...]:
    return tuple(("Warning", warning_header(w)) for w in dict.fromkeys(result.warnings if result else ()))


def _data(attrs: Attributes) -> dict[str, Any]:
    return {"object": attrs.object, "oldObject": attrs.old_object, "request": attrs.request_fields()}


def _namespace_object(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The namespace as CEL sees it: without managedFields, as kube-apiserver strips them."""
    meta = {k: v for k, v in (namespace.get("metadata") or {}).items() if k != "managedFields"}
    return {**{k: v for k, v in namespace.items() if k in ("spec", "status")}, "metadata": meta}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")
