"""Which configurations apply to a request, decided as kube-apiserver decides it, before any CEL runs.

Rules (groups, versions, resources with subresources, operations, scope), ``matchPolicy``
(Equivalent lets a rule naming another served version of the same resource match),
``namespaceSelector``, ``objectSelector`` and ``excludeResourceRules``. Configurations are
parsed into these frozen values once, when they change; ``matchConditions`` are CEL and are
evaluated by the caller after these checks pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_connector.connector.admission.attributes import Attributes


class ConfigError(ValueError):
    """A configuration the connector cannot read (its failure policy decides what follows)."""


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: str
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True)
class Selector:
    """A ``metav1.LabelSelector``; the empty selector matches everything."""

    labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, raw: Any, path: str) -> Selector:
        """Read a selector, refusing what apimachinery refuses (unknown operators, values on Exists)."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: not a label selector")
        labels = tuple(sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items()))
        reqs = []
        for i, e in enumerate(raw.get("matchExpressions") or []):
            op, values = e.get("operator"), tuple(str(v) for v in e.get("values") or [])
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise ConfigError(f"{path}.matchExpressions[{i}].operator: {op!r} is not a valid selector operator")
            if (op in ("In", "NotIn")) != bool(values):
                raise ConfigError(f"{path}.matchExpressions[{i}].values: wrong number of values for {op}")
            reqs.append(Requirement(str(e.get("key", "")), op, values))
        return cls(labels, tuple(reqs))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` are selected."""
        return all(labels.get(k) == v for k, v in self.labels) and all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True)
class Rule:
    """A ``RuleWithOperations`` (webhooks) or ``NamedRuleWithOperations`` (policies)."""

    operations: tuple[str, ...]
    groups: tuple[str, ...]
    versions: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str = "*"
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Rule:
        """Read one rule as the API stores it."""
        return cls(
            tuple(raw.get("operations") or ()),
            tuple(raw.get("apiGroups") or ()),
            tuple(raw.get("apiVersions") or ()),
            tuple(raw.get("resources") or ()),
            str(raw.get("scope") or "*"),
            tuple(raw.get("resourceNames") or ()),
        )

    def _resource_matches(self, attrs: Attributes) -> bool:
        for entry in self.resources:
            resource, _, sub = entry.partition("/")
            if entry == "*/*":
                return True
            if resource in ("*", attrs.resource) and (sub == attrs.subresource or (sub == "*" and attrs.subresource)):
                return True
            if resource in ("*", attrs.resource) and not sub and not attrs.subresource:
                return True
        return False

    def matches(self, attrs: Attributes, version: str) -> bool:
        """Whether this rule covers the request at ``version`` of its resource."""
        return (
            any(o in ("*", attrs.operation) for o in self.operations)
            and any(g in ("*", attrs.group) for g in self.groups)
            and any(v in ("*", version) for v in self.versions)
            and self._resource_matches(attrs)
            and self.scope in ("*", "Namespaced")
            and (not self.names or attrs.name in self.names)
        )


@dataclass(frozen=True)
class Match:
    """Where a configuration applies: rules, exclusions, selectors and the match policy."""

    rules: tuple[Rule, ...]
    exclude: tuple[Rule, ...] = ()
    namespace_selector: Selector = Selector()
    object_selector: Selector = Selector()
    equivalent: bool = True
    #: A binding's ``matchResources`` without ``resourceRules`` covers all its policy matches.
    all_resources: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any], path: str, *, rules_key: str, narrowing: bool = False) -> Match:
        """Read a webhook's or a policy's (``matchConstraints``) or a binding's (``matchResources``,
        ``narrowing``) match fields."""
        policy = raw.get("matchPolicy") or "Equivalent"
        if policy not in ("Equivalent", "Exact"):
            raise ConfigError(f"{path}.matchPolicy: {policy!r} is not Equivalent or Exact")
        return cls(
            tuple(Rule.parse(r) for r in raw.get(rules_key) or ()),
            tuple(Rule.parse(r) for r in raw.get("excludeResourceRules") or ()),
            Selector.parse(raw.get("namespaceSelector"), f"{path}.namespaceSelector"),
            Selector.parse(raw.get("objectSelector"), f"{path}.objectSelector"),
            policy == "Equivalent",
            narrowing and not raw.get(rules_key),
        )

    def matches(self, attrs: Attributes, namespace_labels: Mapping[str, str], versions: Sequence[str]) -> bool:
        """Whether the request is covered; ``versions`` are the resource's served versions."""
        if not self.namespace_selector.matches(namespace_labels):
            return False
        if not any(self.object_selector.matches(_labels(o)) for o in (attrs.object, attrs.old_object) if o is not None):
            return False
        candidates = (
            (attrs.version, *(v for v in versions if v != attrs.version)) if self.equivalent else (attrs.version,)
        )
        if not self.all_resources and not any(r.matches(attrs, v) for r in self.rules for v in candidates):
            return False
        return not any(r.matches(attrs, v) for r in self.exclude for v in candidates)


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
