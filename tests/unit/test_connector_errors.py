"""Control-plane errors reach the app user as the control plane meant them.

Only a refusal of the connector's own identity is an outage (503); quota, admission-policy and
webhook denials are 403s about the request and pass through, with app-side names and headers.
The messages below are kube-apiserver's own wording for each case.
"""

from __future__ import annotations

from typing import Any

import pytest

from mcp_connector.connector.errors import from_control_plane
from mcp_connector.core import contract
from mcp_connector.upstream import ControlPlaneRejected

CP = "https://cp.example:6443"
CLAIM_NS = "mcp-claims"
REF = contract.AppRef("c1", "team-a", "db")
HASHED = contract.control_plane_name(REF)
RESOURCE = "kubernetesclusters.k8s.starter.org"


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message, **({"details": details} if details else {})}  # fmt: skip


RBAC = status(
    403,
    "Forbidden",
    f'{RESOURCE} "{HASHED}" is forbidden: User "system:serviceaccount:mcp:connector" cannot get resource '
    f'"kubernetesclusters" in API group "k8s.starter.org" in the namespace "{CLAIM_NS}"',
)
RBAC_COLLECTION = status(
    403,
    "Forbidden",
    f'{RESOURCE} is forbidden: User "connector" cannot list resource "kubernetesclusters" in API group '
    f'"k8s.starter.org" in the namespace "{CLAIM_NS}"',
)
QUOTA = status(
    403,
    "Forbidden",
    f'{RESOURCE} "{HASHED}" is forbidden: exceeded quota: claims, requested: count/{RESOURCE}=1, '
    f"used: count/{RESOURCE}=2, limited: count/{RESOURCE}=2",
    name=HASHED,
    group="k8s.starter.org",
    kind="kubernetesclusters",
)
POLICY = status(
    403,
    "Forbidden",
    f"{RESOURCE} \"{HASHED}\" is forbidden: ValidatingAdmissionPolicy 'small' with binding 'small' denied "
    "request: at most 3 nodes",
)
WEBHOOK = status(403, "", 'admission webhook "deny.example.org" denied the request: User "x" cannot do this')
TERMINATING = status(
    403, "Forbidden", f"unable to create new content in namespace {CLAIM_NS} because it is being terminated"
)


@pytest.mark.parametrize("body", [QUOTA, POLICY, WEBHOOK, TERMINATING])
def test_other_403s_reach_the_user_with_app_side_names(body: dict[str, Any]) -> None:
    error = from_control_plane(ControlPlaneRejected(CP, 403, body), ref=REF, claim_namespace=CLAIM_NS)
    assert error.code == 403
    assert error.body["reason"] == body["reason"]
    assert HASHED not in str(error.body)
    assert error.body["message"] == body["message"].replace(HASHED, "db")


@pytest.mark.parametrize("body", [RBAC, RBAC_COLLECTION])
def test_rbac_denials_of_the_connector_are_an_outage(body: dict[str, Any]) -> None:
    error = from_control_plane(ControlPlaneRejected(CP, 403, body), ref=REF, claim_namespace=CLAIM_NS)
    assert error.code == 503 and "connector's own identity" in error.body["message"]
    assert "system:serviceaccount" not in str(error.body)


def test_401_and_a_bare_403_from_a_proxy_are_credentials_problems() -> None:
    for code in (401, 403):
        rejected = ControlPlaneRejected(CP, code, status(code, "", "Forbidden"))
        rejected.from_apiserver = False
        assert from_control_plane(rejected, ref=None, claim_namespace=CLAIM_NS).code == 503
    unauthorized = ControlPlaneRejected(CP, 401, status(401, "Unauthorized", "Unauthorized"))
    assert from_control_plane(unauthorized, ref=None, claim_namespace=CLAIM_NS).code == 503


@pytest.mark.parametrize("code", [409, 422, 429])
def test_conflicts_invalids_and_throttling_pass_with_their_headers(code: int) -> None:
    body = status(code, "TooManyRequests" if code == 429 else "Conflict", f'on "{HASHED}" in namespace "{CLAIM_NS}"')
    rejected = ControlPlaneRejected(
        CP, code, body, retry_after="3", warnings=(f'299 - "{HASHED} is deprecated"', '299 - "another"')
    )
    error = from_control_plane(rejected, ref=REF, claim_namespace=CLAIM_NS)
    assert error.code == code and error.body["message"] == 'on "db" in namespace "team-a"'
    assert error.headers == (
        ("Retry-After", "3"),
        ("Warning", '299 - "db is deprecated"'),
        ("Warning", '299 - "another"'),
    )


def test_list_errors_name_the_request_namespace() -> None:
    body = status(403, "Forbidden", f'exceeded quota in namespace "{CLAIM_NS}"')
    error = from_control_plane(ControlPlaneRejected(CP, 403, body), ref=None, claim_namespace=CLAIM_NS, namespace="x")
    assert error.code == 403 and error.body["message"] == 'exceeded quota in namespace "x"'


# Nothing of the control plane's side leaks (issue 17, point 7).

CLUSTER = "5b1c0e0e-1111-2222-3333-444455556666"
SCOPE = f"{contract.APP_CLUSTER_LABEL}={CLUSTER},{contract.APP_NAMESPACE_LABEL}=team-a"
OTHER_HASH = contract.control_plane_name(contract.AppRef(CLUSTER, "team-a", "creds"))


def _leaks(text: str) -> list[str]:
    return [
        s for s in (CP, "cp.example", CLUSTER, CLAIM_NS + "/", contract.LABEL_DOMAIN + "/app-", OTHER_HASH) if s in text
    ]


@pytest.mark.parametrize(
    "message",
    [
        f'unable to parse requirement: found "(", expected: "," in "{SCOPE},a in (b"',
        f'secrets "{OTHER_HASH}" not found',
        f'Internal error occurred: failed calling webhook "v.example.org": Post "{CP}/validate?timeout=10s": EOF',
        f"{CLAIM_NS}/{OTHER_HASH}-x7k2p is being deleted",
    ],
)
def test_a_control_plane_answer_shows_nothing_internal(message: str) -> None:
    body = status(400, "BadRequest", message, name=OTHER_HASH, causes=[{"message": message, "field": OTHER_HASH}])
    for ref in (None, REF):
        error = from_control_plane(
            ControlPlaneRejected(CP, 400, body, warnings=(message,)),
            ref=ref,
            claim_namespace=CLAIM_NS,
            namespace="team-a",
            cluster_id=CLUSTER,
        )
        shown = str(error.body) + str(error.headers)
        assert not _leaks(shown), shown
        assert error.code == 400


def test_outages_say_what_not_where() -> None:
    from mcp_connector.upstream import ControlPlaneUnauthorized, ControlPlaneUnreachable

    for error in (
        ControlPlaneUnreachable(CP, "cannot connect (Cannot connect to host cp.example:6443)"),
        ControlPlaneUnauthorized(CP, "credentials rejected (HTTP 401)"),
        ControlPlaneRejected(CP, 401, status(401, "Unauthorized", "Unauthorized")),
        ControlPlaneRejected(CP, 403, RBAC),
    ):
        shown = from_control_plane(error, ref=REF, claim_namespace=CLAIM_NS, cluster_id=CLUSTER)
        assert shown.code == 503
        assert not _leaks(str(shown.body)), shown.body
