"""``--manage-apiservices``: keep one APIService per served group/version in the app cluster.

For installs without the Pulumi component: as claim APIs appear and disappear in the control
plane, the matching ``<version>.<group>`` APIServices are created, updated and deleted. Only
APIServices carrying our managed-by label are ever changed or removed.

With an owner (``--apiservice-owner``, a ClusterRole of the install), every APIService made
here carries an ownerReference to it, so deleting the install's manifests lets the garbage
collector remove the APIServices too; while the owner is missing, none are kept.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.followers.catalog import Catalog
from mcp_connector.connector.logs import fields
from mcp_connector.core.discovery import GroupVersion

log = logging.getLogger(__name__)

PATH = upstream.api_path("apis", "apiregistration.k8s.io", "v1", "apiservices")
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "mcp-connector"
OWNER_LIST_PATH = upstream.api_path("apis", "rbac.authorization.k8s.io", "v1", "clusterroles")


@dataclass(frozen=True)
class ServiceRef:
    """The Service the aggregator should send a group/version's requests to."""

    namespace: str
    name: str
    port: int
    ca_bundle: bytes
    #: ClusterRole owning the APIServices (None: they have no owner).
    owner: str | None = None


def apiservice(gv: GroupVersion, service: ServiceRef, *, preferred: bool) -> dict[str, Any]:
    """The APIService routing ``gv`` to the connector, verified by ``caBundle``."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": gv.apiservice_name, "labels": {MANAGED_BY: MANAGER}},
        "spec": {
            "group": gv.group,
            "version": gv.version,
            "service": {"namespace": service.namespace, "name": service.name, "port": service.port},
            "caBundle": base64.b64encode(service.ca_bundle).decode(),
            "groupPriorityMinimum": 1000,
            "versionPriority": 100 if preferred else 15,
        },
    }


def desired(catalog: Catalog, service: ServiceRef) -> dict[str, dict[str, Any]]:
    """Every APIService the current catalog needs, by name."""
    out = {}
    for gv in catalog.group_versions():
        preferred = catalog.versions_of(gv.group)[:1] == (gv.version,)
        out[gv.apiservice_name] = apiservice(gv, service, preferred=preferred)
    return out


async def owner_reference(client: upstream.Client, name: str) -> dict[str, Any] | None:
    """The ownerReference to ClusterRole ``name``, or None when it does not exist."""
    try:
        role = await upstream.request(client, "GET", OWNER_LIST_PATH.child(name))
    except upstream.ControlPlaneRejected as e:
        if e.status == 404:
            return None
        raise
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "name": name,
        "uid": role["metadata"]["uid"],
    }


async def reconcile(client: upstream.Client, catalog: Catalog, service: ServiceRef) -> None:
    """Create, update and delete our APIServices to match ``catalog`` (none while the owner is missing)."""
    wanted = desired(catalog, service)
    if service.owner is not None:
        owner = await owner_reference(client, service.owner)
        if owner is None:
            if wanted:
                log.info("owner ClusterRole missing; keeping no APIServices", extra=fields(owner=service.owner))
            wanted = {}
        for body in wanted.values():
            body["metadata"]["ownerReferences"] = [owner]
    ours = {
        a["metadata"]["name"]: a
        for a in await upstream.list_all(client, PATH, params={"labelSelector": f"{MANAGED_BY}={MANAGER}"})
    }
    for name, body in wanted.items():
        current = ours.get(name)
        if current is None:
            try:
                await upstream.request(client, "POST", PATH, json_body=body)
                log.info("APIService created", extra=fields(name=name))
            except upstream.ControlPlaneRejected as e:
                if e.status != 409:
                    raise
                log.warning("APIService exists and is not managed by us; leaving it", extra=fields(name=name))
        elif any(current.get("spec", {}).get(k) != v for k, v in body["spec"].items()) or (
            current["metadata"].get("ownerReferences") != body["metadata"].get("ownerReferences")
        ):
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await upstream.request(client, "PUT", PATH.child(name), json_body=body)
            log.info("APIService updated", extra=fields(name=name))
    for name in ours.keys() - wanted.keys():
        try:
            await upstream.request(client, "DELETE", PATH.child(name))
            log.info("APIService deleted", extra=fields(name=name))
        except upstream.ControlPlaneRejected as e:
            if e.status != 404:
                raise
