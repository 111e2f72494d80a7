"""MutatingAdmissionPolicies and their bindings: compiled once, applied per request.

Follows k8s.io/apiserver's ``policy/mutating`` plugin: a policy's ``matchConstraints`` and a
binding's ``matchResources`` both have to match, ``paramRef`` picks the params (one invocation
each), ``matchConditions`` gate, ``variables`` are computed, then the mutations run in order,
each on the object the previous one produced: ``ApplyConfiguration`` (an ``Object{...}``
merged as ``structured_merge`` merges it) or ``JSONPatch`` (a list of ``JSONPatch{...}``). An
invocation that fails is a ``Failure``; ``run`` applies the policies' failure policies to them
in one place at the end of the pass, as kube-apiserver's policy dispatcher does.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_connector.connector.admission import construction, structured_merge
from mcp_connector.connector.admission.attributes import Attributes
from mcp_connector.connector.admission.expressions import Expression, ExpressionError
from mcp_connector.connector.admission.matching import ConfigError, Match
from mcp_connector.connector.admission.policies import Binding, ParamLookup, named_expressions, variable_error
from mcp_connector.connector.admission.reinvocation import Pass, Plugin
from mcp_connector.connector.api import patches
from mcp_connector.connector.logs import fields

log = logging.getLogger(__name__)

APPLY_CONFIGURATION, JSON_PATCH = "ApplyConfiguration", "JSONPatch"
_JSON_PATCH_FIELDS = frozenset(("op", "path", "from", "value"))


@dataclass(frozen=True)
class Mutation:
    """One ``mutations`` entry."""

    patch_type: str
    expression: Expression


@dataclass(frozen=True)
class MutatingPolicy:
    """A compiled MutatingAdmissionPolicy (or the reason it cannot be used)."""

    name: str
    failure_policy: str
    match: Match | None
    param_kind: tuple[str, str] | None
    match_conditions: tuple[tuple[str, Expression], ...]
    variables: tuple[tuple[str, Expression], ...]
    mutations: tuple[Mutation, ...]
    reinvoke: bool
    error: str = ""


@dataclass(frozen=True)
class Failure:
    """A policy error (``generic.PolicyError``): kept or ignored by the policy's failure policy."""

    policy: str
    binding: str
    message: str
    failure_policy: str
    reason: str = ""

    @property
    def text(self) -> str:
        """The message kube-apiserver's refusal carries (a policy's own error names no binding)."""
        if not self.binding:
            return f'policy "{self.policy}" denied request: {self.message}'
        return f"policy '{self.policy}' with binding '{self.binding}' denied request: {self.message}"


def compile_policy(raw: Mapping[str, Any]) -> MutatingPolicy:
    """Compile a policy once; a configuration error is kept and applied by its failure policy."""
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    kind = spec.get("paramKind")
    error = ""
    mutations = []
    for i, m in enumerate(spec.get("mutations") or ()):
        patch_type = str(m.get("patchType") or "")
        body = m.get("applyConfiguration") if patch_type == APPLY_CONFIGURATION else m.get("jsonPatch")
        if patch_type not in (APPLY_CONFIGURATION, JSON_PATCH) or not isinstance(body, dict):
            error = f"failed to configure policy: spec.mutations[{i}]: unsupported patchType {patch_type!r}"
            continue
        mutations.append(Mutation(patch_type, Expression.compile(str(body.get("expression") or ""), mutating=True)))
    try:
        match = Match.parse(spec.get("matchConstraints") or {}, "spec.matchConstraints", rules_key="resourceRules")
    except ConfigError as e:
        match, error = None, f"failed to configure policy: {e}"
    return MutatingPolicy(
        str(meta.get("name", "")),
        str(spec.get("failurePolicy") or "Fail"),
        match,
        (str(kind.get("apiVersion", "")), str(kind.get("kind", ""))) if isinstance(kind, dict) else None,
        named_expressions(spec.get("matchConditions"), "expression"),
        _mutating_expressions(spec.get("variables")),
        tuple(mutations),
        spec.get("reinvocationPolicy") == "IfNeeded",
        error,
    )


def _mutating_expressions(raw: Any) -> tuple[tuple[str, Expression], ...]:
    """Variables may construct objects too."""
    return tuple(
        (str(v.get("name") or ""), Expression.compile(str(v.get("expression") or ""), mutating=True)) for v in raw or ()
    )


@dataclass(frozen=True)
class Request:
    """What every invocation of one pass reads besides the object."""

    attrs: Attributes
    labels: Mapping[str, str]
    versions: Sequence[str]
    namespace_object: Mapping[str, Any]
    schema: Mapping[str, Any]
    params: ParamLookup


def run(
    policies: Sequence[MutatingPolicy], bindings: Sequence[Binding], request: Request, state: Pass, plugin: Plugin
) -> tuple[Attributes, list[Failure]]:
    """One pass of the plugin: the mutated request and the failures its failure policies keep."""
    attrs = request.attrs
    plugin.begin(state, attrs.object)
    failures: list[Failure] = []
    for policy in policies:
        if policy.match is not None and not policy.match.matches(attrs, request.labels, request.versions):
            continue
        for binding in bindings:
            if binding.policy != policy.name:
                continue
            if binding.match is not None and not binding.match.matches(attrs, request.labels, request.versions):
                continue
            if policy.error:  # reported once, for a policy some binding puts to use
                failures.append(Failure(policy.name, "", policy.error, policy.failure_policy))
                break
            params = _params(policy, binding, attrs, request.params)
            if isinstance(params, Failure):
                failures.append(params)
                continue
            for param in params:
                attrs = _invoke(policy, binding, param, attrs, request, state, plugin, failures)
    plugin.end(attrs.object)
    for failure in failures:
        if failure.failure_policy == "Ignore":
            log.warning(
                "mutating admission policy failed, failing open",
                extra=fields(policy=failure.policy, binding=failure.binding, error=failure.message),
            )
    return attrs, [f for f in failures if f.failure_policy != "Ignore"]


def _params(
    policy: MutatingPolicy, binding: Binding, attrs: Attributes, lookup: ParamLookup
) -> Sequence[dict[str, Any] | None] | Failure:
    """``CollectParams``: one invocation per param, a configuration failure, or none at all."""

    def failed(message: str) -> Failure:
        return Failure(policy.name, binding.name, f"failed to configure binding: {message}", policy.failure_policy)

    if binding.error:
        return Failure(policy.name, binding.name, binding.error, policy.failure_policy)
    ref = binding.param_ref
    if policy.param_kind is None or ref is None:
        return [None]
    found = lookup(policy.param_kind, ref.namespace or attrs.namespace, ref.name, ref.selector)
    if found is None:
        api_version, kind = policy.param_kind
        message = (
            f"failed to configure policy: failed to find resource referenced by paramKind: '{api_version}, Kind={kind}'"
        )
        return Failure(policy.name, "", message, policy.failure_policy)
    if not found and ref.not_found_action == "Deny":
        return failed("no params found for policy binding with `Deny` parameterNotFoundAction")
    return list(found)


def _invoke(
    policy: MutatingPolicy,
    binding: Binding,
    param: dict[str, Any] | None,
    attrs: Attributes,
    request: Request,
    state: Pass,
    plugin: Plugin,
    failures: list[Failure],
) -> Attributes:
    def fail(message: str) -> None:
        failures.append(Failure(policy.name, binding.name, message, policy.failure_policy, "Invalid"))

    data = _data(attrs, request, param)
    try:
        if not all(c.evaluate(data) is True for _, c in policy.match_conditions):
            return attrs
    except ExpressionError as e:
        fail(str(e))
        return attrs
    key = f"{policy.name}/{binding.name}/{_param_key(param)}"
    if plugin.skip(state, key):
        return attrs
    before = attrs.object
    for mutation in policy.mutations:
        if attrs.object is None:
            continue
        data = _data(attrs, request, param)
        variables, errors = _variables(policy, data)
        data["variables"] = variables
        try:
            attrs = attrs.with_object(_mutate(mutation, attrs.object, data, request.schema))
        except ExpressionError as e:
            fail(variable_error(str(e), errors))
        except MutationError as e:
            fail(str(e))
    if attrs.object != before:
        plugin.changed(state)
    plugin.invoked(key, policy.reinvoke)
    return attrs


def _variables(policy: MutatingPolicy, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The variables for one mutation, on the object as the mutations before it left it (kube-apiserver
    makes a new lazy map per evaluation); the errors of those that failed, raised only where used."""
    variables: dict[str, Any] = {}
    errors: dict[str, str] = {}
    scope = {**data, "variables": variables}
    for name, expression in policy.variables:
        try:
            variables[name] = expression.evaluate(scope)
        except ExpressionError as e:
            errors[name] = str(e)
    return variables, errors


class MutationError(ValueError):
    """A mutation's result that cannot be applied; the message is kube-apiserver's."""


def _mutate(mutation: Mutation, obj: dict[str, Any], data: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    value = mutation.expression.evaluate(data)
    if mutation.patch_type == APPLY_CONFIGURATION:
        return _apply_configuration(mutation.expression, value, obj, schema)
    return _json_patch(mutation.expression, value, obj)


def _apply_configuration(
    expression: Expression, value: Any, obj: dict[str, Any], schema: Mapping[str, Any]
) -> dict[str, Any]:
    if construction.type_of(value) != "Object":
        raise MutationError(
            f"expression '{expression.source}' must evaluate to an Object (ApplyConfiguration), "
            f"got {type(value).__name__}"
        )
    try:
        patch = construction.strip(value)
    except construction.ConstructionError as e:
        raise MutationError(str(e)) from None
    patch.update(apiVersion=obj.get("apiVersion"), kind=obj.get("kind"))
    try:
        return structured_merge.apply_configuration(obj, patch, schema)
    except structured_merge.MergeError as e:
        raise MutationError(f"error applying patch: {e}") from None


def _json_patch(expression: Expression, value: Any, obj: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, list):
        raise MutationError("type mismatch: JSONPatchType.expression should evaluate to array")
    operations = []
    for item in value:
        if construction.type_of(item) != "JSONPatch":
            raise MutationError(
                f"type mismatch: expression '{expression.source}' should evaluate to array of JSONPatch"
            )
        try:
            op = construction.strip(item)
        except construction.ConstructionError as e:
            raise MutationError(str(e)) from None
        unknown = sorted(set(op) - _JSON_PATCH_FIELDS)
        if unknown:
            raise MutationError(f"expression '{expression.source}': JSONPatch has no field {unknown[0]!r}")
        if op.get("from") == "":
            del op["from"]
        operations.append(op)
    try:
        patched = patches.json_patch(copy.deepcopy(obj), operations)
    except patches.PatchTestFailed:
        return obj
    except patches.PatchError as e:
        raise MutationError(f"JSONPath: {e}") from None
    if not isinstance(patched, dict):
        raise MutationError("JSONPath: the result is not an object")
    return patched


def _data(attrs: Attributes, request: Request, param: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "object": attrs.object,
        "oldObject": attrs.old_object,
        "request": attrs.request_fields(),
        "namespaceObject": request.namespace_object,
        "params": param,
        "variables": {},
    }


def _param_key(param: Mapping[str, Any] | None) -> str:
    meta = (param or {}).get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
