"""Connection Secrets: copy what the control plane writes for a claim into the app namespace.

A claim's ``writeConnectionSecretToRef.name`` is hashed on the way up (``contract``), so
Crossplane writes the Secret under a control-plane name in the claim namespace. This loop makes
the app namespace hold the same data under the name the user asked for, and removes copies whose
claim or source Secret is gone. A source Secret is copied only when it was written for that very
claim (``contract.connection_secret_written_for``): the hashed names of two claims' Secrets can
collide, and the data must never reach the other namespace. It reconciles the whole set each
time (kicked by a watch on the claim namespace's Secrets, by our own claim writes, and
periodically), which heals any missed event. Copies carry a label naming this cluster so we never
touch Secrets we did not make.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.logs import fields
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract

log = logging.getLogger(__name__)

MANAGED_LABEL = f"{contract.LABEL_DOMAIN}/connection-secret-for"
SOURCE_ANNOTATION = f"{contract.LABEL_DOMAIN}/source"


def app_secret(source: dict[str, Any], target: contract.AppRef, claim_namespace: str) -> dict[str, Any]:
    """The app-side copy of a control-plane connection Secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": target.name,
            "namespace": target.namespace,
            "labels": {MANAGED_LABEL: target.cluster_id},
            "annotations": {SOURCE_ANNOTATION: f"{claim_namespace}/{source['metadata']['name']}"},
        },
        "type": source.get("type") or "Opaque",
        "data": dict(source.get("data") or {}),
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(
        a.get("data") == b.get("data")
        and a.get("type") == b.get("type")
        and (a["metadata"].get("annotations") or {}).get(SOURCE_ANNOTATION)
        == (b["metadata"].get("annotations") or {}).get(SOURCE_ANNOTATION)
    )


async def reconcile(rt: Runtime) -> None:
    """Make the app cluster's connection Secrets match the control plane's, once."""
    cp, app = rt.control_plane, rt.app_cluster
    wanted: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for api in rt.catalog.apis:
        version = api.preferred_version.name
        path = f"/apis/{api.group}/{version}/namespaces/{rt.claim_namespace}/{api.plural}"
        selector = contract.scope_selector(rt.cluster_id, None)
        for claim in await upstream.list_all(cp, path, params={"labelSelector": selector}):
            found = contract.app_connection_secret(claim)
            if found is not None and found[0].cluster_id == rt.cluster_id:
                wanted[(found[0].namespace, found[0].name)] = (found[1], claim)
    desired: dict[tuple[str, str], dict[str, Any]] = {}
    for (namespace, name), (source_name, claim) in wanted.items():
        try:
            source = await upstream.request(cp, "GET", f"/api/v1/namespaces/{rt.claim_namespace}/secrets/{source_name}")
        except upstream.ControlPlaneRejected as e:
            if e.status == 404:
                continue
            raise
        if not contract.connection_secret_written_for(source, claim):
            continue
        target = contract.AppRef(rt.cluster_id, namespace, name)
        desired[(namespace, name)] = app_secret(source, target, rt.claim_namespace)
    existing = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s
        for s in await upstream.list_all(
            app, "/api/v1/secrets", params={"labelSelector": f"{MANAGED_LABEL}={rt.cluster_id}"}
        )
    }
    for key, secret in desired.items():
        current = existing.get(key)
        path = f"/api/v1/namespaces/{key[0]}/secrets"
        try:
            if current is None:
                await upstream.request(app, "POST", path, json_body=secret)
                log.info("connection secret copied", extra=fields(namespace=key[0], name=key[1]))
            elif not _same(current, secret):
                secret["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await upstream.request(app, "PUT", f"{path}/{key[1]}", json_body=secret)
                log.info("connection secret updated", extra=fields(namespace=key[0], name=key[1]))
        except upstream.ControlPlaneRejected as e:
            # 409 on create: a Secret of that name exists and is not ours; 404: namespace is gone.
            log.warning(
                "connection secret not written",
                extra=fields(
                    namespace=key[0], name=key[1], status=e.status, reason=str(e.body and e.body.get("reason"))
                ),
            )
    for key in existing.keys() - desired.keys():
        try:
            await upstream.request(app, "DELETE", f"/api/v1/namespaces/{key[0]}/secrets/{key[1]}")
            log.info("connection secret removed", extra=fields(namespace=key[0], name=key[1]))
        except upstream.ControlPlaneRejected as e:
            if e.status != 404:
                raise
