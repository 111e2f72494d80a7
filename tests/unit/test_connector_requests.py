"""What every control-plane call made for an app request carries, and readiness."""

from __future__ import annotations

from typing import Any

import pytest
from connector_samples import CLAIM_NS, CLUSTER, catalog

from mcp_connector.connector.api.verbs.request import Call, field_manager_of, upstream_headers
from mcp_connector.connector.http.auth import User
from mcp_connector.connector.http.health import Health
from mcp_connector.connector.http.routing import ResourceRoute
from mcp_connector.connector.runtime import Runtime

ROUTE = ResourceRoute("k8s.starter.org", "v1alpha1", "kubernetesclusters", "team-a")


def runtime(**kwargs: Any) -> Runtime:
    return Runtime(
        control_plane=None,  # type: ignore[arg-type]
        control_plane_watches=None,  # type: ignore[arg-type]
        app_cluster=None,  # type: ignore[arg-type]
        control_plane_url="https://cp",
        cluster_id=CLUSTER,
        claim_namespace=CLAIM_NS,
        authorizer=None,  # type: ignore[arg-type]
        **kwargs,
    )


def call(**kwargs: Any) -> Call:
    served = catalog().resource("k8s.starter.org", "v1alpha1", "kubernetesclusters")
    assert served is not None
    return Call(ROUTE, served, "list", {}, **kwargs)


@pytest.mark.parametrize(
    ("agent", "manager"),
    [
        ("kubectl/v1.36.4 (linux/amd64) kubernetes/abcdef", "kubectl"),
        ("manager/v0.0.0", "manager"),
        ("plain", "plain"),
        ("x\x07y/1", "xy"),
        ("m" * 200 + "/1", "m" * 128),
    ],
)
def test_field_manager_is_named_after_the_client_as_kube_apiserver_does(agent: str, manager: str) -> None:
    assert field_manager_of(agent) == manager


def test_audit_id_and_who_the_request_is_for_go_upstream() -> None:
    headers = upstream_headers(
        runtime(),
        call(audit_id="0a1b-2c", user=User("jane@example.org", ("devs",)), user_agent="kubectl/v1.36.4\n"),
    )
    assert headers == {
        "Audit-ID": "0a1b-2c",
        "User-Agent": f"mcp-connector/0.1 (cluster={CLUSTER}; user=jane@example.org) kubectl/v1.36.4",
    }


async def test_ready_once_the_catalog_is_loaded_whatever_the_control_plane_does() -> None:
    rt = runtime()
    health = Health(rt)
    assert (await health.check("/readyz"))[0] is False
    rt.catalog, rt.catalog_loaded = catalog(), True
    rt.catalog_error = "control plane https://cp is unreachable"  # a later refresh failed
    assert await health.check("/readyz") == (True, "ok")
    assert await health.check("/livez") == (True, "ok")
