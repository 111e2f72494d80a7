"""Selectors are read for authorization as kube-apiserver's fields and labels parsers read them."""

from __future__ import annotations

import pytest

from mcp_connector.connector.http.auth import User
from mcp_connector.connector.http.authz import Attributes, review_body
from mcp_connector.core.selectors import Requirement, authorizable, field_requirements, label_requirements


@pytest.mark.parametrize(
    ("selector", "requirements"),
    [
        ("", ()),
        ("metadata.name=x", (Requirement("metadata.name", "In", ("x",)),)),
        ("status.phase!=Done,metadata.name==x", (Requirement("metadata.name", "In", ("x",)),
                                                 Requirement("status.phase", "NotIn", ("Done",)))),
        ("a=b\\,c", (Requirement("a", "In", ("b,c",)),)),
        ("a=b,c", None),
        ("a=b\\x", None),
    ],
)  # fmt: skip
def test_field_requirements(selector: str, requirements: tuple[Requirement, ...] | None) -> None:
    assert field_requirements(selector) == requirements


@pytest.mark.parametrize(
    ("selector", "requirements"),
    [
        ("", ()),
        ("team=a", (Requirement("team", "In", ("a",)),)),
        ("team==a,tier!=web", (Requirement("team", "In", ("a",)), Requirement("tier", "NotIn", ("web",)))),
        ("x in (foo,,baz),y,z notin ()", (Requirement("x", "In", ("", "baz", "foo")), Requirement("y", "Exists"),
                                         Requirement("z", "NotIn", ("",)))),
        ("x in ()", (Requirement("x", "In", ("",)),)),
        ("!gone, example.org/app = web", (Requirement("example.org/app", "In", ("web",)),
                                          Requirement("gone", "DoesNotExist"))),
        ("team=", (Requirement("team", "In", ("",)),)),
        ("replicas>3,team=a", (Requirement("replicas", "Gt", ("3",)), Requirement("team", "In", ("a",)))),
        ("replicas<0010", (Requirement("replicas", "Lt", ("0010",)),)),
        ("team=a,", None),
        ("team=a b", None),
        ("-bad=x", None),
        ("x in (a", None),
        ("!a=b", None),
        ("replicas>\u00b2", None),  # str.isdigit() says yes; strconv.ParseInt says no
        ("replicas>9223372036854775808", None),  # beyond int64
        ("replicas<-1", None),  # an integer, but not a label value
    ],
)  # fmt: skip
def test_label_requirements(selector: str, requirements: tuple[Requirement, ...] | None) -> None:
    assert label_requirements(selector) == requirements


def test_selectors_go_into_the_subject_access_review() -> None:
    attrs = Attributes(
        User("jane"),
        "watch",
        "k8s.starter.org",
        "v1alpha1",
        "kubernetesclusters",
        namespace="team-a",
        name="x",
        field_selector=(Requirement("metadata.name", "In", ("x",)),),
        label_selector=(Requirement("team", "Exists"),),
    )
    resource = review_body(attrs)["spec"]["resourceAttributes"]
    assert resource["name"] == "x"
    assert resource["fieldSelector"] == {"requirements": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}
    assert resource["labelSelector"] == {"requirements": [{"key": "team", "operator": "Exists"}]}
    plain = review_body(Attributes(User("jane"), "get", "g", "v", "r"))["spec"]["resourceAttributes"]
    assert "fieldSelector" not in plain and "labelSelector" not in plain


@pytest.mark.parametrize(
    ("selector", "kept"),
    [
        ("team in (a,b)", (Requirement("team", "In", ("a", "b")),)),
        ("team=a", (Requirement("team", "In", ("a",)),)),
        ("team!=a", (Requirement("team", "NotIn", ("a",)),)),
        ("team notin (a)", (Requirement("team", "NotIn", ("a",)),)),
        ("team", (Requirement("team", "Exists"),)),
        ("!team", (Requirement("team", "DoesNotExist"),)),
        ("replicas>3", ()),
        ("replicas<3,team", (Requirement("team", "Exists"),)),
    ],
)
def test_the_subject_access_review_leaves_out_what_it_cannot_carry(
    selector: str, kept: tuple[Requirement, ...]
) -> None:
    """Gt and Lt have no SubjectAccessReview form; kube-apiserver leaves them out, and so do we."""
    parsed = label_requirements(selector)
    assert parsed is not None
    assert authorizable(parsed) == kept


def test_label_keys_and_values_are_checked_by_apimachinerys_rules() -> None:
    """A key's prefix is at most 253 characters: the cache read a 300-character one as valid and
    answered a list kube-apiserver refuses with a 400."""
    assert label_requirements("a" * 253 + "/b=c") is not None
    assert label_requirements("a" * 254 + "/b=c") is None
    assert label_requirements("k=" + "v" * 64) is None
    assert label_requirements("k in (" + "v" * 63 + ")") is not None


def test_a_requirement_of_many_values_matches_as_one_of_few() -> None:
    """Values are matched as a set (as labels.Requirement keeps them), whatever their number."""
    values = tuple(f"v{i}" for i in range(100_000))
    into, out = Requirement("k", "In", values), Requirement("k", "NotIn", values)
    assert into.members == frozenset(values) and into == Requirement("k", "In", values)
    assert into.matches({"k": "v99999"}) and not into.matches({"k": "w"}) and not into.matches({})
    assert out.matches({"k": "w"}) and out.matches({}) and not out.matches({"k": "v0"})
