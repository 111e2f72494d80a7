"""The admission room without a cluster: matching, CEL, policy decisions and their wording."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_connector.connector.admission import chain, policies
from mcp_connector.connector.admission.attributes import Attributes, UserInfo
from mcp_connector.connector.admission.expressions import Expression, ExpressionError
from mcp_connector.connector.admission.matching import ConfigError, Match, Selector
from mcp_connector.connector.admission.webhooks import denial

OBJ = {
    "apiVersion": "example.org/v1alpha1",
    "kind": "KubernetesCluster",
    "metadata": {"name": "big", "namespace": "team", "labels": {"tier": "gold"}},
    "spec": {"parameters": {"nodes": {"count": 5}}},
}


def attrs(operation: str = "CREATE", obj: dict[str, Any] | None = OBJ, **kw: Any) -> Attributes:
    base: dict[str, Any] = {
        "operation": operation,
        "group": "example.org",
        "version": "v1alpha1",
        "resource": "kubernetesclusters",
        "kind": "KubernetesCluster",
        "namespace": "team",
        "name": "big",
        "object": obj,
        "old_object": None,
        "user": UserInfo("alice", groups=("devs",)),
    }
    return Attributes(**{**base, **kw})


def rule(**kw: Any) -> dict[str, Any]:
    return {
        "operations": ["CREATE", "UPDATE"],
        "apiGroups": ["example.org"],
        "apiVersions": ["v1alpha1"],
        "resources": ["kubernetesclusters"],
        **kw,
    }


def match(**kw: Any) -> Match:
    return Match.parse({"resourceRules": [rule()], **kw}, "spec", rules_key="resourceRules")


def test_rules_match_operations_groups_versions_resources_and_scope() -> None:
    assert match().matches(attrs(), {}, ["v1alpha1"])
    assert not match().matches(attrs("DELETE", None, old_object=OBJ), {}, ["v1alpha1"])
    cluster_scoped = Match.parse({"resourceRules": [rule(scope="Cluster")]}, "s", rules_key="resourceRules")
    assert not cluster_scoped.matches(attrs(), {}, ["v1alpha1"])
    other = Match.parse({"resourceRules": [rule(resources=["pods"])]}, "s", rules_key="resourceRules")
    assert not other.matches(attrs(), {}, ["v1alpha1"])


def test_subresources_match_only_when_named() -> None:
    status = attrs(subresource="status")
    assert not match().matches(status, {}, ["v1alpha1"])
    for resources in (["kubernetesclusters/status"], ["*/status"], ["*/*"], ["kubernetesclusters/*"]):
        m = Match.parse({"resourceRules": [rule(resources=resources)]}, "s", rules_key="resourceRules")
        assert m.matches(status, {}, ["v1alpha1"]), resources


def test_match_policy_equivalent_matches_another_served_version() -> None:
    raw = {"resourceRules": [rule(apiVersions=["v1"])]}
    assert Match.parse(raw, "s", rules_key="resourceRules").matches(attrs(), {}, ["v1alpha1", "v1"])
    exact = Match.parse({**raw, "matchPolicy": "Exact"}, "s", rules_key="resourceRules")
    assert not exact.matches(attrs(), {}, ["v1alpha1", "v1"])


def test_selectors_and_exclusions() -> None:
    selected = match(namespaceSelector={"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]})
    assert selected.matches(attrs(), {"env": "prod"}, ["v1alpha1"])
    assert not selected.matches(attrs(), {"env": "dev"}, ["v1alpha1"])
    by_object = match(objectSelector={"matchLabels": {"tier": "gold"}})
    assert by_object.matches(attrs(), {}, ["v1alpha1"])
    assert not by_object.matches(attrs(obj={**OBJ, "metadata": {"name": "x"}}), {}, ["v1alpha1"])
    excluded = match(excludeResourceRules=[rule(resourceNames=["big"])])
    assert not excluded.matches(attrs(), {}, ["v1alpha1"])


def test_a_binding_without_resource_rules_covers_what_its_policy_matches() -> None:
    narrowing = {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
    binding_match = Match.parse(narrowing, "spec.matchResources", rules_key="resourceRules", narrowing=True)
    assert binding_match.matches(attrs(), {"env": "prod"}, ["v1alpha1"])
    assert not binding_match.matches(attrs(), {"env": "dev"}, ["v1alpha1"])
    webhook_match = Match.parse(narrowing, "webhooks[0]", rules_key="rules")
    assert not webhook_match.matches(attrs(), {"env": "prod"}, ["v1alpha1"]), "a webhook without rules matches nothing"


def test_bad_selector_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="operator"):
        Selector.parse({"matchExpressions": [{"key": "a", "operator": "Near"}]}, "spec.namespaceSelector")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("object.spec.parameters.nodes.count <= 3", False),
        ("object.metadata.name.upperAscii() + ['a', 'b'].join(',')", "BIGa,b"),
        ("quantity('1Gi') == quantity('1024Mi') && quantity('2').isGreaterThan(quantity('1500m'))", True),
        ("quantity('1.5').isInteger() || quantity('1k').asInteger() == 1000", True),
        (
            "url('https://example.com:8443/x?a=1').getPort() + url('https://example.com/x').getHostname()",
            "8443example.com",
        ),
        ("[1, 3, 2].isSorted() || [1, 2, 3].sum() == 6", True),
        ("'abc123def45'.findAll('[0-9]+') == ['123', '45'] && 'abc'.find('b') == 'b'", True),
        ("object.metadata.?annotations.orValue({}).size() == 0", True),
        ("has(object.spec.parameters) && object.metadata.name.matches('^b')", True),
    ],
)
def test_expressions_with_kubernetes_libraries(source: str, expected: Any) -> None:
    assert Expression.compile(source).evaluate({"object": OBJ}) == expected


def test_expression_errors_name_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"expression 'object.spec.missing.x' resulted in error"):
        Expression.compile("object.spec.missing.x").evaluate({"object": OBJ})
    with pytest.raises(ExpressionError, match=r"compilation error: expression 'object.\('"):
        Expression.compile("object.(").evaluate({"object": OBJ})
    with pytest.raises(ExpressionError, match="resulted in error"):
        Expression.compile("quantity('lots')").evaluate({})


def vap(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "max-nodes"}, "spec": {"matchConstraints": {"resourceRules": [rule()]}, **spec}}


def binding(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "max-nodes-b"},
        "spec": {"policyName": "max-nodes", "validationActions": ["Deny"], **spec},
    }


def decide(policy: dict[str, Any], bind: dict[str, Any] | None = None, params: Any = None) -> list[policies.Decision]:
    a = attrs()
    data = {"object": a.object, "oldObject": None, "request": a.request_fields()}
    decisions, _ = policies.evaluate(
        policies.compile_policy(policy),
        policies.compile_binding(bind or binding()),
        a,
        data,
        lambda *_: params,
    )
    return decisions


def test_deny_messages_pick_message_expression_then_message_then_the_expression() -> None:
    check = "object.spec.parameters.nodes.count <= 3"
    with_expr = vap(
        validations=[
            {"expression": check, "messageExpression": "'nodes ' + string(object.spec.parameters.nodes.count) + ' > 3'"}
        ]
    )
    assert [d.message for d in decide(with_expr)] == ["nodes 5 > 3"]
    assert [d.message for d in decide(vap(validations=[{"expression": check, "message": " too big "}]))] == ["too big"]
    assert [d.message for d in decide(vap(validations=[{"expression": check}]))] == [f"failed expression: {check}"]
    assert decide(vap(validations=[{"expression": check, "reason": "Forbidden"}]))[0].reason == "Forbidden"


def test_variables_feed_validations() -> None:
    policy = vap(
        variables=[{"name": "nodes", "expression": "object.spec.parameters.nodes.count"}],
        validations=[{"expression": "variables.nodes <= 3", "message": "too many"}],
    )
    assert [d.message for d in decide(policy)] == ["too many"]


def test_match_conditions_gate_the_policy() -> None:
    policy = vap(
        matchConditions=[{"name": "gold-only", "expression": "object.metadata.labels.tier == 'silver'"}],
        validations=[{"expression": "false"}],
    )
    assert decide(policy) == []


def test_failure_policy_decides_for_expressions_that_fail() -> None:
    broken = [{"expression": "object.spec.nothing.here > 1"}]
    failed = decide(vap(validations=broken))
    assert failed[0].action == "Deny"
    assert "expression 'object.spec.nothing.here > 1' resulted in error" in failed[0].message
    assert [d.action for d in decide(vap(validations=broken, failurePolicy="Ignore"))] == ["Admit"]
    uncompilable = decide(vap(validations=[{"expression": "object.("}]))
    assert uncompilable[0].action == "Deny" and "object.(" in uncompilable[0].message


def test_params_are_read_and_a_missing_param_follows_the_binding() -> None:
    policy = vap(
        paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
        validations=[{"expression": "object.spec.parameters.nodes.count <= int(params.data.max)"}],
    )
    ref = {"paramRef": {"name": "limits", "parameterNotFoundAction": "Deny"}}
    assert decide(policy, binding(**ref), [{"data": {"max": "9"}}]) == []
    assert decide(policy, binding(**ref), [{"data": {"max": "2"}}])[0].action == "Deny"
    assert decide(policy, binding(**ref), [])[0].message == policies.NOT_FOUND_DENY
    allow = {"paramRef": {"name": "limits", "parameterNotFoundAction": "Allow"}}
    assert decide(policy, binding(**allow), []) == []


def test_the_denial_is_worded_as_kube_apiserver_words_it() -> None:
    error = chain._forbidden(attrs(), "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no")
    assert error.body["message"] == (
        'kubernetesclusters.example.org "big" is forbidden: '
        "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no"
    )
    assert error.body["details"] == {"name": "big", "group": "example.org", "kind": "kubernetesclusters"}
    generated = attrs(name="", obj={"metadata": {"generateName": "big-"}})
    assert '"big-" is forbidden' in chain._forbidden(generated, "x").body["message"]
    assert denial("v.example.com", {"message": "nope", "code": 200})["message"] == (
        'admission webhook "v.example.com" denied the request: nope'
    )
    assert denial("v.example.com", None)["code"] == 400
    assert denial("v.example.com", None)["message"].endswith("denied the request without explanation")
    assert chain.warning_header('say "hi"') == '299 - "say \\"hi\\""'


def test_admission_review_carries_the_app_side_request() -> None:
    review = attrs(dry_run=True, options={"fieldManager": "kubectl"}).review("u1")
    request = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert request["uid"] == "u1" and request["object"] == OBJ and request["oldObject"] is None
    assert request["userInfo"] == {"username": "alice", "groups": ["devs"]}
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl"}
    assert request["dryRun"] is True and request["namespace"] == "team"


def test_the_chain_denies_with_kube_apiservers_status_and_keeps_the_warnings() -> None:
    check = {"expression": "object.spec.parameters.nodes.count <= 3", "messageExpression": "'too many nodes'"}
    warn = {"metadata": {"name": "warn-b"}, "spec": {"policyName": "max-nodes", "validationActions": ["Warn"]}}
    snapshot = chain.Snapshot(
        vaps=(policies.compile_policy(vap(validations=[check])),),
        bindings=(policies.compile_binding(warn), policies.compile_binding(binding())),
    )
    admission = chain.Admission(None)  # type: ignore[arg-type]  # nothing here reaches the app cluster
    result = chain.Result(OBJ)
    with pytest.raises(chain.ApiError) as denied:
        admission._validate_policies(snapshot, attrs(), {}, {}, ["v1alpha1"], result)
    message = "ValidatingAdmissionPolicy 'max-nodes' with binding 'max-nodes-b' denied request: too many nodes"
    assert denied.value.code == 422
    assert denied.value.body["reason"] == "Invalid"
    assert denied.value.body["message"] == f'kubernetesclusters.example.org "big" is forbidden: {message}'
    assert denied.value.body["details"]["causes"] == [{"message": message}]
    assert denied.value.headers == (
        (
            "Warning",
            chain.warning_header(
                "Validation failed for ValidatingAdmissionPolicy 'max-nodes' with binding 'warn-b': too many nodes"
            ),
        ),
    )
