"""ValidatingAdmissionPolicies and their bindings: compiled once, evaluated per request.

Follows k8s.io/apiserver's ``policy/validating`` plugin: a policy's ``matchConstraints`` and
a binding's ``matchResources`` both have to match, then ``paramRef`` picks the params,
``matchConditions`` gate, ``variables`` are computed, and each validation gives a decision.
A decision that failed to evaluate follows the policy's ``failurePolicy`` (``decide_error``,
the one place it is applied for policies); what a Deny decision does is the binding's
``validationActions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_connector.connector.admission.attributes import Attributes
from mcp_connector.connector.admission.expressions import Expression, ExpressionError
from mcp_connector.connector.admission.matching import ConfigError, Match, Selector

MAX_MESSAGE_BYTES = 5 * 1024
NOT_FOUND_DENY = "no params found for policy binding with `Deny` parameterNotFoundAction"


@dataclass(frozen=True)
class Validation:
    """One ``validations`` entry."""

    expression: Expression
    message: str = ""
    message_expression: Expression | None = None
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    """A compiled ValidatingAdmissionPolicy (or the reason it cannot be used)."""

    name: str
    failure_policy: str
    match: Match | None
    param_kind: tuple[str, str] | None
    match_conditions: tuple[tuple[str, Expression], ...]
    variables: tuple[tuple[str, Expression], ...]
    validations: tuple[Validation, ...]
    audit_annotations: tuple[tuple[str, Expression], ...]
    error: str = ""


@dataclass(frozen=True)
class ParamRef:
    """A binding's ``paramRef``."""

    name: str
    namespace: str
    selector: Selector | None
    not_found_action: str


@dataclass(frozen=True)
class Binding:
    """A compiled ValidatingAdmissionPolicyBinding."""

    name: str
    policy: str
    actions: tuple[str, ...]
    match: Match | None
    param_ref: ParamRef | None
    error: str = ""


@dataclass(frozen=True)
class Decision:
    """What one validation (or one failure) of one policy and binding decided."""

    policy: str
    binding: str
    action: str  # Deny, Admit
    message: str = ""
    reason: str = ""


def decide_error(failure_policy: str, policy: str, binding: str, message: str) -> Decision:
    """An expression or configuration that failed: Deny unless the policy says Ignore."""
    if failure_policy == "Ignore":
        return Decision(policy, binding, "Admit")
    if failure_policy != "Fail":
        message = f"unrecognized failure policy: '{failure_policy}'"
    return Decision(policy, binding, "Deny", message)


def named_expressions(raw: Any, key: str) -> tuple[tuple[str, Expression], ...]:
    return tuple(
        (str(e.get("name") or e.get("key") or ""), Expression.compile(str(e.get(key) or ""))) for e in raw or ()
    )


def compile_policy(raw: Mapping[str, Any]) -> Policy:
    """Compile a policy once; a configuration error is kept and applied by its failure policy."""
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    name = str(meta.get("name", ""))
    failure = str(spec.get("failurePolicy") or "Fail")
    kind = spec.get("paramKind")
    validations = tuple(
        Validation(
            Expression.compile(str(v.get("expression", ""))),
            str(v.get("message") or ""),
            Expression.compile(v["messageExpression"]) if v.get("messageExpression") else None,
            str(v.get("reason") or ""),
        )
        for v in spec.get("validations") or ()
    )
    try:
        match = Match.parse(spec.get("matchConstraints") or {}, "spec.matchConstraints", rules_key="resourceRules")
        error = ""
    except ConfigError as e:
        match, error = None, f"failed to configure policy: {e}"
    return Policy(
        name,
        failure,
        match,
        (str(kind.get("apiVersion", "")), str(kind.get("kind", ""))) if isinstance(kind, dict) else None,
        named_expressions(spec.get("matchConditions"), "expression"),
        named_expressions(spec.get("variables"), "expression"),
        validations,
        named_expressions(spec.get("auditAnnotations"), "valueExpression"),
        error,
    )


def compile_binding(raw: Mapping[str, Any]) -> Binding:
    """Compile a binding once."""
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    ref = spec.get("paramRef")
    error, match, param_ref = "", None, None
    try:
        if spec.get("matchResources") is not None:
            match = Match.parse(
                spec["matchResources"], "spec.matchResources", rules_key="resourceRules", narrowing=True
            )
        if isinstance(ref, dict):
            selector = Selector.parse(ref["selector"], "spec.paramRef.selector") if "selector" in ref else None
            param_ref = ParamRef(
                str(ref.get("name") or ""),
                str(ref.get("namespace") or ""),
                selector,
                str(ref.get("parameterNotFoundAction") or "Deny"),
            )
    except ConfigError as e:
        error = f"failed to configure binding: {e}"
    return Binding(
        str(meta.get("name", "")),
        str(spec.get("policyName", "")),
        tuple(spec.get("validationActions") or ()),
        match,
        param_ref,
        error,
    )


#: Looks up params: (apiVersion, kind), namespace, name or selector -> objects; None: kind unknown.
ParamLookup = Callable[[tuple[str, str], str, str, Selector | None], Sequence[dict[str, Any]] | None]


def evaluate(
    policy: Policy,
    binding: Binding,
    attrs: Attributes,
    data: Mapping[str, Any],
    params: ParamLookup,
) -> tuple[list[Decision], dict[str, str]]:
    """Decisions and audit annotations of one policy under one (matching) binding."""
    if policy.error or binding.error:
        return [decide_error(policy.failure_policy, policy.name, binding.name, policy.error or binding.error)], {}
    if policy.param_kind is None:
        return _evaluate_with(policy, binding, {**data, "params": None})
    ref = binding.param_ref
    if ref is None:
        return [
            decide_error(policy.failure_policy, policy.name, binding.name, "failed to configure binding: no paramRef")
        ], {}
    namespace = ref.namespace or attrs.namespace
    found = params(policy.param_kind, namespace, ref.name, ref.selector)
    if found is None:
        api_version, kind = policy.param_kind
        message = (
            "failed to configure binding: failed to find resource referenced by paramKind: "
            f"'{api_version}, Kind={kind}'"
        )
        return [decide_error(policy.failure_policy, policy.name, binding.name, message)], {}
    if not found:
        if ref.not_found_action == "Allow":
            return [], {}
        return [Decision(policy.name, binding.name, "Deny", NOT_FOUND_DENY)], {}
    decisions: list[Decision] = []
    annotations: dict[str, str] = {}
    for param in found:
        d, a = _evaluate_with(policy, binding, {**data, "params": param})
        decisions += d
        annotations.update(a)
    return decisions, annotations


def _evaluate_with(policy: Policy, binding: Binding, data: dict[str, Any]) -> tuple[list[Decision], dict[str, str]]:
    fail = policy.failure_policy
    try:
        for _, condition in policy.match_conditions:
            if condition.evaluate(data) is not True:
                return [], {}
    except ExpressionError as e:
        return [decide_error(fail, policy.name, binding.name, str(e))], {}
    variables: dict[str, Any] = {}
    data["variables"] = variables
    errors: dict[str, str] = {}
    for name, expression in policy.variables:
        try:
            variables[name] = expression.evaluate(data)
        except ExpressionError as e:
            errors[name] = str(e)
    decisions = []
    for validation in policy.validations:
        try:
            if validation.expression.evaluate(data) is True:
                continue
        except ExpressionError as e:
            decisions.append(decide_error(fail, policy.name, binding.name, variable_error(str(e), errors)))
            continue
        message = _message(validation, data)
        decisions.append(Decision(policy.name, binding.name, "Deny", message, validation.reason or "Invalid"))
    annotations = {}
    for key, expression in policy.audit_annotations:
        try:
            value = expression.evaluate(data)
        except ExpressionError as e:
            decisions.append(decide_error(fail, policy.name, binding.name, str(e)))
            continue
        if isinstance(value, str):
            annotations[f"{policy.name}/{key}"] = value[:10240]
    return decisions, annotations


def variable_error(message: str, errors: Mapping[str, str]) -> str:
    """A variable that failed makes the expressions using it fail with its own error."""
    for name, error in errors.items():
        if f"no such key: {name}" in message:
            return error
    return message


def _message(validation: Validation, data: Mapping[str, Any]) -> str:
    """messageExpression's result, else message, else ``failed expression: ...``, as kube-apiserver picks."""
    if validation.message_expression is not None:
        try:
            value = validation.message_expression.evaluate(data)
        except ExpressionError:
            value = None
        if isinstance(value, str):
            value = value.strip()
            if value and len(value) <= MAX_MESSAGE_BYTES and "\n" not in value:
                return value
    if validation.message.strip():
        return validation.message.strip()
    return f"failed expression: {validation.expression.source.strip()}"
