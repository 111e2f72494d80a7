"""How upstream failures read in the connector's log: a missing permission names itself."""

from __future__ import annotations

from mcp_connector.connector.errors import describe
from mcp_connector.upstream import ControlPlaneRejected, ControlPlaneUnauthorized

APP = "https://127.0.0.1:6443"
FORBIDDEN = (
    'secrets is forbidden: User "system:serviceaccount:kube-system:mcp-connector" cannot list resource'
    ' "secrets" in API group "" at the cluster scope'
)


def test_forbidden_names_the_missing_permission() -> None:
    error = ControlPlaneRejected(APP, 403, {"kind": "Status", "reason": "Forbidden", "message": FORBIDDEN})
    text = describe(error)
    assert text.startswith(f"{APP} forbade the request (HTTP 403): {FORBIDDEN}")
    assert "credentials" not in text, "a 403 is a missing permission, not a bad token"


def test_unauthorized_says_the_credentials_were_refused() -> None:
    for error in (
        ControlPlaneRejected(APP, 401, {"message": "Unauthorized"}),
        ControlPlaneUnauthorized(APP, "credentials rejected (HTTP 401)"),
    ):
        assert "refused the connector's credentials" in describe(error)
        assert "forbade" not in describe(error)
