"""The disconnect hook: what happens to a cluster's claims when its connector is removed.

Pulumi runs it (``before_delete``) when the component's guard Secret is deleted,
which happens before the APIServices go, so the claims are still reachable. It
only reads the guard's stored outputs (never a closure), so it also works when the
component was removed from the program: the program must still register the hook,
which is why ``register_disconnect_hook`` is called unconditionally by every
program that uses McpConnector.

``Keep`` verifies and reports; ``Release`` swaps each claim's ownership labels for
``released-from-*`` annotations, one merge patch per claim, so a re-run after an
interruption picks up exactly the claims still labelled. No claim is ever deleted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from pulumi.runtime import settings as pulumi_settings

from mcp_connector import upstream
from mcp_connector.core import contract
from mcp_connector.core.access import AccessError, from_kubeconfig
from mcp_connector.core.discovery import ClaimApi
from mcp_connector_component import manifests

HOOK_NAME = "mcp-connector-disconnect"
#: The guard Secret keeps the sealed plan in an annotation, not in ``data``: pulumi-kubernetes
#: replaces a Secret whose data changes, and replacing the guard would run the hook (a token
#: rotation must never disconnect); annotation changes are updates in place. The plan is sealed
#: because Pulumi shows annotation values in diffs, and it holds a credential.
PLAN_ANNOTATION = manifests.PLAN_ANNOTATION
#: ``data`` key of the guard (and of the key Secret) holding the sealing key; it never changes.
SEAL_KEY = manifests.GUARD_KEY
KEEP = "Keep"
RELEASE = "Release"
ON_DISCONNECT = (KEEP, RELEASE)
#: Test-only: seconds to sleep after releasing the first claim, so a test can kill the process mid-hook.
PAUSE_ENV = "MCP_CONNECTOR_DISCONNECT_PAUSE_AFTER_FIRST"

Log = Callable[[str], None]


class DisconnectError(pulumi.RunError):
    """The hook could not do what ``on_disconnect`` asks; the delete stops so it can be re-run."""


@dataclass(frozen=True)
class ClaimResource:
    """One claim kind to migrate, addressed by a served version."""

    group: str
    version: str
    plural: str
    kind: str

    def list_path(self, namespace: str) -> str:
        """The control-plane path listing this kind in ``namespace``."""
        return f"/apis/{self.group}/{self.version}/namespaces/{namespace}/{self.plural}"

    @classmethod
    def of(cls, api: ClaimApi) -> ClaimResource:
        """Address ``api`` by its preferred version."""
        return cls(api.group, api.preferred_version.name, api.plural, api.kind)


@dataclass(frozen=True)
class DisconnectPlan:
    """What the hook needs, stored in the guard Secret when the component is created or updated."""

    kubeconfig: str = field(repr=False)
    claim_namespace: str
    cluster_id: str
    on_disconnect: str
    claims: tuple[ClaimResource, ...]

    def to_json(self) -> str:
        """Serialize for the guard Secret."""
        return json.dumps(
            {
                "kubeconfig": self.kubeconfig,
                "claimNamespace": self.claim_namespace,
                "clusterId": self.cluster_id,
                "onDisconnect": self.on_disconnect,
                "claims": [c.__dict__ for c in self.claims],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> DisconnectPlan:
        """Inverse of to_json."""
        raw = json.loads(text)
        return cls(
            kubeconfig=raw["kubeconfig"],
            claim_namespace=raw["claimNamespace"],
            cluster_id=raw["clusterId"],
            on_disconnect=raw["onDisconnect"],
            claims=tuple(ClaimResource(**c) for c in raw["claims"]),
        )


def new_seal_key() -> str:
    """A fresh sealing key (base64, as stored in a Secret's ``data``)."""
    return base64.b64encode(AESSIV.generate_key(256)).decode()


def seal(plan_json: str, key_b64: str) -> str:
    """Encrypt the plan deterministically (AES-SIV): the same plan gives the same text, so no diff."""
    return base64.b64encode(AESSIV(base64.b64decode(key_b64)).encrypt(plan_json.encode(), None)).decode()


def unseal(sealed: str, key_b64: str) -> str:
    """Inverse of ``seal``."""
    try:
        return AESSIV(base64.b64decode(key_b64)).decrypt(base64.b64decode(sealed), None).decode()
    except (InvalidTag, ValueError):
        raise DisconnectError("mcp-connector disconnect: the guard's plan does not match its key") from None


@dataclass
class DisconnectReport:
    """What the hook found and did, per claim kind (app-side ``namespace/name (claim-hash)`` strings)."""

    on_disconnect: str
    kept: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    released_earlier: list[str] = field(default_factory=list)
    skipped_kinds: list[str] = field(default_factory=list)

    def summary(self, plan: DisconnectPlan) -> str:
        """One log line with counts and names."""
        where = f"cluster {plan.cluster_id}, control-plane namespace {plan.claim_namespace}"
        if self.on_disconnect == KEEP:
            text = f"Keep: {len(self.kept)} claim(s) stay with their labels ({where})"
            names = self.kept
        else:
            text = (
                f"Release: released {len(self.released)} claim(s), "
                f"{len(self.released_earlier)} already released ({where})"
            )
            names = self.released + self.released_earlier
        if names:
            text += ": " + ", ".join(names)
        if self.skipped_kinds:
            text += f"; claim kinds no longer served: {', '.join(self.skipped_kinds)}"
        return text


def _describe(kind: str, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ref = contract.app_ref_of(obj)
    if ref is None:
        annotations = meta.get("annotations") or {}
        prefix = contract.RELEASED_ANNOTATION_PREFIX
        ns, name = annotations.get(f"{prefix}app-namespace", "?"), annotations.get(f"{prefix}app-resource-name", "?")
    else:
        ns, name = ref.namespace, ref.name
    return f"{kind} {ns}/{name} ({meta.get('name')})"


def _released_from(obj: Mapping[str, Any], cluster_id: str) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return (
        annotations.get(f"{contract.RELEASED_ANNOTATION_PREFIX}app-cluster") == cluster_id
        and contract.APP_CLUSTER_LABEL not in labels
    )


def release_patch(ref: contract.AppRef) -> dict[str, Any]:
    """One merge patch that adds the released annotations and drops the ownership labels together."""
    return {
        "metadata": {
            "annotations": contract.release_annotations(ref),
            "labels": dict.fromkeys(contract.OWNERSHIP_LABELS),
        }
    }


async def disconnect(plan: DisconnectPlan, *, log: Log = pulumi.log.info) -> DisconnectReport:
    """Apply ``plan.on_disconnect`` to every claim of ``plan.cluster_id``; idempotent."""
    if plan.on_disconnect not in ON_DISCONNECT:
        raise DisconnectError(f"on_disconnect {plan.on_disconnect!r} must be one of {', '.join(ON_DISCONNECT)}")
    try:
        access = from_kubeconfig(plan.kubeconfig)
    except AccessError as e:
        raise DisconnectError(f"mcp-connector disconnect: {e}") from None
    report = DisconnectReport(plan.on_disconnect)
    selector = contract.scope_selector(plan.cluster_id, None)
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    async with upstream.connected(access) as client:
        for claim in plan.claims:
            path = claim.list_path(plan.claim_namespace)
            try:
                if plan.on_disconnect == KEEP:
                    owned = await upstream.list_all(client, path, params={"labelSelector": selector})
                    report.kept += [_describe(claim.kind, o) for o in owned]
                    continue
                everything = await upstream.list_all(client, path)
            except upstream.ControlPlaneRejected as e:
                if e.status == 404:
                    report.skipped_kinds.append(f"{claim.plural}.{claim.group}")
                    continue
                raise
            report.released_earlier += [
                _describe(claim.kind, o) for o in everything if _released_from(o, plan.cluster_id)
            ]
            for obj in everything:
                ref = contract.app_ref_of(obj)
                if ref is None or ref.cluster_id != plan.cluster_id:
                    continue
                name = obj["metadata"]["name"]
                await upstream.request(
                    client,
                    "PATCH",
                    f"{path}/{name}",
                    json_body=release_patch(ref),
                    content_type="application/merge-patch+json",
                )
                report.released.append(_describe(claim.kind, obj))
                log(f"mcp-connector disconnect: released {_describe(claim.kind, obj)}")
                if pause and len(report.released) == 1:
                    await asyncio.sleep(pause)
    return report


async def _resolve(value: Any) -> Any:
    """Unwrap a hook argument value: secret outputs arrive as Outputs."""
    if isinstance(value, pulumi.Output):
        return await value.future()
    return value


async def plan_from_outputs(outputs: Mapping[str, Any] | None) -> DisconnectPlan:
    """Read the plan back from the guard Secret's stored outputs (secret parts arrive as Outputs)."""
    outputs = outputs or {}
    metadata = await _resolve(outputs.get("metadata")) or {}
    annotations = await _resolve(metadata.get("annotations")) or {}
    sealed = await _resolve(annotations.get(PLAN_ANNOTATION))
    data = await _resolve(outputs.get("data")) or {}
    key = await _resolve(data.get(SEAL_KEY))
    if not sealed or not key:
        raise DisconnectError(f"mcp-connector disconnect: the guard Secret has no {PLAN_ANNOTATION} or key")
    return DisconnectPlan.from_json(unseal(sealed, key))


async def _before_delete(args: pulumi.ResourceHookArgs) -> None:
    """Runs when the guard Secret is about to be deleted (the connector is being disconnected)."""
    plan = await plan_from_outputs(args.old_outputs)
    try:
        report = await disconnect(plan)
    except upstream.ControlPlaneError as e:
        if plan.on_disconnect == KEEP:
            # Keep changes nothing, so an unreachable control plane must not block disconnecting.
            pulumi.log.warn(f"mcp-connector disconnect (Keep): could not verify the claims: {e}")
            return
        raise DisconnectError(f"mcp-connector disconnect (Release) stopped, re-run to finish: {e}") from None
    pulumi.log.info(f"mcp-connector disconnect: {report.summary(plan)}")


_registered: tuple[object, pulumi.ResourceHook] | None = None


def register_disconnect_hook() -> pulumi.ResourceHook:
    """Register the disconnect hook with this program run (safe to call any number of times).

    Call it in every program that has (or had) an McpConnector, before or without
    creating one: Pulumi needs it registered to run it when the component's
    children are deleted, including after the component was removed from the
    program. McpConnector calls it too.
    """
    global _registered
    monitor = pulumi_settings.get_monitor()
    if _registered is None or _registered[0] is not monitor:
        _registered = (monitor, pulumi.ResourceHook(HOOK_NAME, _before_delete))
    return _registered[1]
