"""``--manage-apiservices`` with an owner: APIServices belong to the install's ClusterRole.

The app cluster is a small in-memory stand-in for the two calls the reconcile makes (list
and write APIServices, get the owner); the real garbage collector is exercised end to end
in tests/e2e/test_fleet_render.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from connector_samples import catalog

from mcp_connector import upstream
from mcp_connector.connector.cli import main as connector_main
from mcp_connector.connector.followers import apiservices

SERVICE = apiservices.ServiceRef(
    namespace="kube-system", name="mcp-connector", port=443, ca_bundle=b"CA", owner="mcp-connector"
)


class FakeAppCluster:
    """APIServices by name, and the ClusterRoles that exist (name → uid)."""

    def __init__(self, roles: dict[str, str]) -> None:
        self.roles = roles
        self.apiservices: dict[str, dict[str, Any]] = {}

    async def request(self, client: Any, method: str, path: str, *, json_body: Any = None, **_: Any) -> Any:
        if path.startswith(apiservices.OWNER_LIST_PATH):
            name = path.rsplit("/", 1)[1]
            if name not in self.roles:
                raise upstream.ControlPlaneRejected("https://app", 404, {"message": "not found"})
            return {"metadata": {"name": name, "uid": self.roles[name]}}
        if method in ("POST", "PUT"):
            body = {**json_body, "metadata": {**json_body["metadata"], "resourceVersion": "1"}}
            self.apiservices[body["metadata"]["name"]] = body
            return body
        if method == "DELETE":
            self.apiservices.pop(path.rsplit("/", 1)[1])
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    async def list_all(self, client: Any, path: str, **_: Any) -> list[dict[str, Any]]:
        return list(self.apiservices.values())


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FakeAppCluster:
    fake = FakeAppCluster({"mcp-connector": "uid-1"})
    monkeypatch.setattr(upstream, "request", fake.request)
    monkeypatch.setattr(upstream, "list_all", fake.list_all)
    return fake


async def test_owned_while_the_owner_exists_and_gone_with_it(app: FakeAppCluster) -> None:
    await apiservices.reconcile(None, catalog(), SERVICE)  # type: ignore[arg-type]
    assert app.apiservices, "one APIService per served group/version"
    for body in app.apiservices.values():
        assert body["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "name": "mcp-connector",
                "uid": "uid-1",
            }
        ]
    del app.roles["mcp-connector"]
    await apiservices.reconcile(None, catalog(), SERVICE)  # type: ignore[arg-type]
    assert app.apiservices == {}, "no APIServices while the install's owner is missing"


async def test_a_recreated_owner_is_taken_over(app: FakeAppCluster) -> None:
    await apiservices.reconcile(None, catalog(), SERVICE)  # type: ignore[arg-type]
    app.roles["mcp-connector"] = "uid-2"
    await apiservices.reconcile(None, catalog(), SERVICE)  # type: ignore[arg-type]
    assert {b["metadata"]["ownerReferences"][0]["uid"] for b in app.apiservices.values()} == {"uid-2"}


def test_fleet_commands_say_which_package_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("mcp_connector.connector.cli.plugin", lambda name: None)
    assert connector_main(["rollout", "--preview"]) == 1
    assert "needs the mcp-connector-component package" in capsys.readouterr().err
    assert connector_main(["rolout"]) == 2
    assert 'unknown command "rolout"' in capsys.readouterr().err
