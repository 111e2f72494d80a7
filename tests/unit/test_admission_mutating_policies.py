"""MutatingAdmissionPolicies without a cluster: object construction, the merge, the order and reinvocation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcp_connector.connector.admission import chain, construction, mutating_policies, policies, reinvocation
from mcp_connector.connector.admission.attributes import Attributes, UserInfo
from mcp_connector.connector.admission.expressions import Expression
from mcp_connector.connector.admission.structured_merge import MergeError, apply_configuration

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "zones": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "x-kubernetes-map-type": "atomic",
                    "additionalProperties": {"type": "string"},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}
OBJ: dict[str, Any] = {
    "apiVersion": "example.org/v1alpha1",
    "kind": "KubernetesCluster",
    "metadata": {"name": "big", "namespace": "team", "labels": {"tier": "gold"}},
    "spec": {"size": "large", "zones": ["a"], "ports": [{"name": "http", "port": 80}]},
}
RULES = {
    "resourceRules": [
        {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": ["example.org"],
            "apiVersions": ["*"],
            "resources": ["kubernetesclusters"],
        }
    ]
}


def attrs(obj: dict[str, Any] = OBJ, operation: str = "CREATE") -> Attributes:
    return Attributes(
        operation, "example.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster", "team", "big", obj, None,
        UserInfo("alice"),
    )  # fmt: skip


def evaluate(source: str, data: dict[str, Any] | None = None) -> Any:
    return Expression.compile(source, mutating=True).evaluate({"object": OBJ, **(data or {})})


def test_object_construction_is_evaluated_as_tagged_maps_whose_type_names_follow_the_fields() -> None:
    value = evaluate("Object{metadata: Object.metadata{labels: {'a': object.spec.size}}, spec: Object.spec{}}")
    assert construction.type_of(value) == "Object"
    assert construction.strip(value) == {"metadata": {"labels": {"a": "large"}}, "spec": {}}
    patch = evaluate("[JSONPatch{op: 'add', path: '/metadata/labels/' + jsonpatch.escapeKey('x/y~z'), value: 1}]")
    assert [construction.strip(p) for p in patch] == [{"op": "add", "path": "/metadata/labels/x~1y~0z", "value": 1}]
    # Optional fields, a leading dot, escaped field names; braces inside strings and maps left alone.
    value = evaluate(".Object{spec: Object.spec{?size: optional.none(), `free`: {'k{': 'Object{'}}}")
    assert construction.strip(value) == {"spec": {"free": {"k{": "Object{"}}}
    with pytest.raises(construction.ConstructionError, match=r'unexpected type name "Object\.spec\.wrong"'):
        construction.strip(evaluate("Object{spec: Object.spec.wrong{}}"))


def test_an_apply_configuration_merges_by_the_schema() -> None:
    patch = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {"zones": ["b", "a"], "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9}]},
    }
    merged = apply_configuration(OBJ, patch, SCHEMA)
    assert merged["metadata"]["labels"] == {"tier": "gold", "team": "a"}
    assert merged["spec"]["size"] == "large"
    assert merged["spec"]["zones"] == ["a", "b"]
    assert merged["spec"]["ports"] == [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9}]
    assert OBJ["metadata"]["labels"] == {"tier": "gold"}, "the live object is not changed"
    with pytest.raises(
        MergeError, match=r"may not mutate atomic arrays, maps or structs: \.spec\.tags, \.spec\.selector"
    ):
        apply_configuration(OBJ, {"spec": {"tags": ["x"], "selector": {"a": "b"}}}, SCHEMA)
    with pytest.raises(MergeError, match=r"may not mutate atomic .*: \.spec\.free\.list"):
        apply_configuration(OBJ, {"spec": {"free": {"list": [1], "map": {"k": 1}}}}, SCHEMA)
    with pytest.raises(MergeError, match=r"\.spec\.nope: field not declared in schema"):
        apply_configuration(OBJ, {"spec": {"nope": 1}}, SCHEMA)


def policy(name: str, *mutations: dict[str, Any], **spec: Any) -> mutating_policies.MutatingPolicy:
    raw = {"metadata": {"name": name}, "spec": {"matchConstraints": RULES, "mutations": list(mutations), **spec}}
    return mutating_policies.compile_policy(raw)


def binding(policy_name: str, **spec: Any) -> policies.Binding:
    return policies.compile_binding(
        {"metadata": {"name": f"{policy_name}-b"}, "spec": {"policyName": policy_name, **spec}}
    )


def apply(expression: str) -> dict[str, Any]:
    return {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": expression}}


def json_patch(expression: str) -> dict[str, Any]:
    return {"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}


def run(
    maps: list[mutating_policies.MutatingPolicy], params: Any = None
) -> tuple[Attributes, list[mutating_policies.Failure]]:
    request = mutating_policies.Request(attrs(), {}, ("v1alpha1",), {}, SCHEMA, lambda *_: params)
    bindings = [binding(p.name) for p in maps]
    return mutating_policies.run(maps, bindings, request, reinvocation.Pass(), reinvocation.Plugin())


def test_mutations_run_in_order_each_on_the_last_ones_result_and_variables_see_it() -> None:
    p = policy(
        "sizes",
        apply("Object{spec: Object.spec{size: 'small'}}"),
        json_patch("[JSONPatch{op: 'add', path: '/metadata/labels/size', value: variables.size}]"),
        json_patch(
            "[JSONPatch{op: 'test', path: '/spec/size', value: 'huge'}, JSONPatch{op: 'remove', path: '/spec'}]"
        ),
        variables=[{"name": "unused", "expression": "object.nope"}, {"name": "size", "expression": "object.spec.size"}],
    )
    mutated, failures = run([p])
    assert failures == []
    assert mutated.object is not None
    assert mutated.object["spec"]["size"] == "small"
    assert mutated.object["metadata"]["labels"] == {"tier": "gold", "size": "small"}, (
        "a failed test leaves it as it was"
    )


def test_failures_follow_the_failure_policy_and_name_the_expression() -> None:
    broken = "Object{metadata: Object.metadata{labels: {'x': object.spec.nope}}}"
    mutated, failures = run([policy("broken", apply(broken), apply("Object{spec: Object.spec{size: 'small'}}"))])
    assert [f.text for f in failures] == [
        f"policy 'broken' with binding 'broken-b' denied request: expression '{broken}' resulted in error: "
        "no such key: nope"
    ]
    assert mutated.object is not None and mutated.object["spec"]["size"] == "small", "the next mutation still runs"
    assert run([policy("ignored", apply(broken), failurePolicy="Ignore")])[1] == []
    _, failures = run([policy("wrong", apply("{'spec': {}}"))])
    assert "must evaluate to an Object" in failures[0].message
    _, failures = run([policy("params", apply("Object{}"), paramKind={"apiVersion": "v1", "kind": "ConfigMap"})])
    assert failures == [], "a binding without paramRef runs with no params"


def test_params_not_found_refuse_with_deny_as_kube_apiserver_words_it() -> None:
    p = policy("params", apply("Object{}"), paramKind={"apiVersion": "v1", "kind": "ConfigMap"})
    request = mutating_policies.Request(attrs(), {}, ("v1alpha1",), {}, SCHEMA, lambda *_: [])
    b = binding("params", paramRef={"name": "missing", "parameterNotFoundAction": "Deny"})
    _, failures = mutating_policies.run([p], [b], request, reinvocation.Pass(), reinvocation.Plugin())
    assert failures[0].text == (
        "policy 'params' with binding 'params-b' denied request: failed to configure binding: "
        "no params found for policy binding with `Deny` parameterNotFoundAction"
    )
    unknown = mutating_policies.Request(attrs(), {}, ("v1alpha1",), {}, SCHEMA, lambda *_: None)
    _, failures = mutating_policies.run([p], [b], unknown, reinvocation.Pass(), reinvocation.Plugin())
    assert failures[0].text == (
        'policy "params" denied request: failed to configure policy: '
        "failed to find resource referenced by paramKind: 'v1, Kind=ConfigMap'"
    )


def phase(maps: list[mutating_policies.MutatingPolicy], operation: str = "CREATE") -> Attributes:
    snapshot = chain.Snapshot(maps=tuple(maps), map_bindings=tuple(binding(p.name) for p in maps))
    admission = chain.Admission(None)  # type: ignore[arg-type]  # nothing here reaches the app cluster
    request = mutating_policies.Request(attrs(operation=operation), {}, ("v1alpha1",), {}, SCHEMA, lambda *_: None)
    return asyncio.run(admission._mutating_phase(snapshot, request, chain.Result(OBJ)))


def test_an_if_needed_policy_runs_again_when_a_later_one_changed_the_object() -> None:
    seen = apply("Object{metadata: Object.metadata{labels: {'seen': 'b' in object.metadata.labels ? 'b' : 'none'}}}")
    adds_b = apply("Object{metadata: Object.metadata{labels: {'b': 'yes'}}}")
    again = phase([policy("a", seen, reinvocationPolicy="IfNeeded"), policy("b", adds_b)])
    assert again.object is not None and again.object["metadata"]["labels"]["seen"] == "b"
    once = phase([policy("a", seen, reinvocationPolicy="Never"), policy("b", adds_b)])
    assert once.object is not None and once.object["metadata"]["labels"]["seen"] == "none"


def test_the_chain_refuses_with_the_first_failure_as_the_policy_dispatcher_does() -> None:
    broken = policy("broken", apply("Object{spec: Object.spec{size: object.nope}}"))
    with pytest.raises(chain.ApiError) as refused:
        phase([broken])
    assert refused.value.code == 403
    assert refused.value.body["reason"] == "Invalid"
    assert refused.value.body["message"].startswith("policy 'broken' with binding 'broken-b' denied request: ")
    assert phase([broken], operation="DELETE").object == OBJ, "mutating policies never see a delete"
