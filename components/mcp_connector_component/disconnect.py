"""What disconnecting does to a cluster's claims in the control plane: Keep or Release.

The claims of a cluster are found by its label (``app-cluster=<cluster ID>``) in every
claim and namespaced-XR kind the control plane offers now, plus the kinds that were
connected at the last update, so narrowing ``include`` or an XRD that went away never
leaves claims behind. ``Keep`` reports; ``Release`` swaps each claim's ownership labels
for ``released-from-*`` annotations, one merge patch per claim, and lists again until a
pass finds nothing labelled, so a re-run after an interruption picks up exactly the
claims still labelled. No claim is ever deleted. A dry run reports what would happen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_connector import upstream
from mcp_connector.core import contract
from mcp_connector.core.access import AccessError, ControlPlaneAccess
from mcp_connector_component.guard import KEEP, ON_DISCONNECT, RELEASE, ClaimResource, DisconnectPlan

Log = Callable[[str], None]
#: Release passes before giving up on claims that keep appearing (a writer that was not stopped).
MAX_RELEASE_PASSES = 5


class DisconnectError(Exception):
    """The disconnect could not do what ``on_disconnect`` asks; nothing after it may run."""


@dataclass
class DisconnectReport:
    """What the disconnect found and did: app-side ``Kind namespace/name`` strings."""

    on_disconnect: str
    dry_run: bool = False
    kept: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    released_earlier: list[str] = field(default_factory=list)
    #: Kinds searched that the control plane no longer serves (``plural.group``).
    gone_kinds: list[str] = field(default_factory=list)

    def summary(self, plan: DisconnectPlan) -> str:
        """One log line with counts and names."""
        where = f"cluster {plan.cluster_id}, control-plane namespace {plan.claim_namespace}"
        if self.on_disconnect == KEEP:
            verb = "would stay" if self.dry_run else "stay"
            text = f"Keep: {len(self.kept)} claim(s) {verb} with their labels ({where})"
            names = self.kept
        elif self.dry_run:
            text = f"Release: would release {len(self.released)} claim(s) ({where})"
            names = self.released
        else:
            text = (
                f"Release: released {len(self.released)} claim(s), "
                f"{len(self.released_earlier)} already released ({where})"
            )
            names = self.released + self.released_earlier
        if names:
            text += ": " + ", ".join(names)
        if self.gone_kinds:
            text += f"; kinds no longer served by the control plane: {', '.join(self.gone_kinds)}"
        return text


def describe(kind: str, obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` as the app cluster knew the claim, for reports."""
    kind = str(obj.get("kind") or kind)
    ref = contract.app_ref_of(obj)
    if ref is not None:
        return f"{kind} {ref.namespace}/{ref.name}"
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    prefix = contract.RELEASED_ANNOTATION_PREFIX
    return (
        f"{kind} {annotations.get(f'{prefix}app-namespace', '?')}/{annotations.get(f'{prefix}app-resource-name', '?')}"
    )


def release_patch(ref: contract.AppRef) -> dict[str, Any]:
    """One merge patch that adds the released annotations and drops the ownership labels together."""
    return {
        "metadata": {
            "annotations": contract.release_annotations(ref),
            "labels": dict.fromkeys(contract.OWNERSHIP_LABELS),
        }
    }


async def kinds_to_search(client: upstream.Client, served: Sequence[ClaimResource], *, log: Log) -> list[ClaimResource]:
    """Every kind the control plane offers now, plus the ones connected at the last update."""
    kinds = {c.resource: c for c in served}
    try:
        offered = await upstream.fetch_claim_apis_by_name(client)
    except upstream.ControlPlaneError as e:
        if not served:
            raise
        log(f"mcp-connector disconnect: cannot list the control plane's claim APIs ({e}); searching the connected ones")
        offered = ()
    for api in offered:
        kinds.setdefault(api.resource, ClaimResource.of(api))
    return sorted(kinds.values(), key=lambda c: (c.group, c.kind))


async def labelled_claims(client: upstream.Client, kind: ClaimResource, plan: DisconnectPlan) -> list[dict[str, Any]]:
    """The claims of ``kind`` labelled for the plan's cluster in its claim namespace."""
    selector = contract.scope_selector(plan.cluster_id, None)
    return await upstream.list_all(client, kind.list_path(plan.claim_namespace), params={"labelSelector": selector})


async def disconnect(
    plan: DisconnectPlan, access: ControlPlaneAccess, *, dry_run: bool = False, log: Log
) -> DisconnectReport:
    """Apply (or, in a dry run, report) ``plan.on_disconnect`` for every claim of ``plan.cluster_id``."""
    if plan.on_disconnect not in ON_DISCONNECT:
        raise DisconnectError(f"on_disconnect {plan.on_disconnect!r} must be one of {', '.join(ON_DISCONNECT)}")
    report = DisconnectReport(plan.on_disconnect, dry_run=dry_run)
    fence: list[Restore] = []
    async with upstream.connected(access) as client:
        try:
            await _apply(client, plan, report, fence, dry_run=dry_run, log=log)
        except Exception as e:
            if not fence:
                raise  # nothing was written: the caller's message ("stopped before ...") is exact
            # Past the fence every failure ends here, whatever raised it: the writes go back
            # (or the message says they could not), and the message lists what was released.
            raise await _stopped_after_fence(plan, report, fence[0], e) from None
        except BaseException:
            # Cancelled or interrupted: give the writes back if we still can, then stop as asked.
            if fence:
                with contextlib.suppress(Exception):
                    await fence[0]()
            raise
    return report


async def _apply(
    client: upstream.Client,
    plan: DisconnectPlan,
    report: DisconnectReport,
    fence: list[Restore],
    *,
    dry_run: bool,
    log: Log,
) -> None:
    """Keep or release every kind; appends the fence's restore to ``fence`` once it took the writes away."""
    for kind in await kinds_to_search(client, plan.served, log=log):
        try:
            owned = await labelled_claims(client, kind, plan)
        except upstream.ControlPlaneRejected as e:
            if e.status == 404:
                report.gone_kinds.append(kind.resource)
                continue
            raise
        if plan.on_disconnect == KEEP:
            report.kept += [describe(kind.kind, o) for o in owned]
            continue
        if dry_run:
            report.released += [describe(kind.kind, o) for o in owned]
            continue
        if not fence:
            fence.append(await stop_writes(client, plan, log=log))
        report.released_earlier += await _released_earlier(client, kind, plan)
        await _release_all(client, kind, plan, owned, report, log=log)


async def _stopped_after_fence(
    plan: DisconnectPlan, report: DisconnectReport, restore: Restore, error: Exception
) -> DisconnectError:
    """The error of a Release that failed once writes were fenced: what was done, what is left, how to finish."""
    released = (
        f"{len(report.released)} claim(s) released before it stopped ({', '.join(report.released)})"
        if report.released
        else "no claim was released"
    )
    try:
        await restore()
        writes = (
            f"the connector's writes were given back (RoleBinding {plan.claim_namespace}/{plan.writer_binding} "
            "restored)"
            if plan.writer_binding
            else "the connector's writes were never taken away (its credential was given as it is)"
        )
    except Exception as e:
        writes = (
            f"the connector's writes could NOT be given back ({e}): RoleBinding "
            f"{plan.claim_namespace}/{plan.writer_binding} is missing, so the connector cannot create or change "
            "claims; `pulumi up --refresh` recreates it, or re-run the disconnect to finish the Release"
        )
    return DisconnectError(
        f"mcp-connector disconnect (Release) of cluster {plan.cluster_id} stopped: {error}. {released[0].upper()}"
        f"{released[1:]}; the other claims keep their labels; {writes}. Re-run `pulumi destroy --run-program` "
        "to release the rest (released claims stay released)."
    )


Restore = Callable[[], Awaitable[None]]


async def stop_writes(client: upstream.Client, plan: DisconnectPlan, *, log: Log) -> Restore:
    """Take the connector's write access away (its RoleBinding) before releasing; return how to give it back.

    Only possible when the component made the connector's identity (``writer_binding``). A
    Release that fails gives the access back, so a connection the user keeps still works;
    one that is killed leaves it away, which a re-run of the disconnect does not need and
    ``pulumi up --refresh`` restores.
    """
    if not plan.writer_binding:
        return _nothing
    bindings = upstream.api_path(
        "apis", "rbac.authorization.k8s.io", "v1", "namespaces", plan.claim_namespace, "rolebindings"
    )
    path = bindings.child(plan.writer_binding)
    try:
        saved = await upstream.request(client, "GET", path)
    except upstream.ControlPlaneRejected as e:
        if e.status == 404:
            return _nothing  # already taken away by an interrupted run
        raise
    await upstream.request(client, "DELETE", path)
    where = f"{plan.claim_namespace}/{plan.writer_binding}"
    log(f"mcp-connector disconnect: stopped the connector's writes (RoleBinding {where} removed)")

    async def restore() -> None:
        """Recreate the binding; raises when it cannot (the caller says so). Already there counts as done."""
        metadata = {k: v for k, v in saved["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
        body = {**saved, "metadata": metadata}
        try:
            await upstream.request(client, "POST", bindings, json_body=body)
        except upstream.ControlPlaneRejected as e:
            if e.status != 409:
                raise
        log(f"mcp-connector disconnect: gave the connector's writes back (RoleBinding {where} restored)")

    return restore


async def _nothing() -> None:
    return None


async def _released_earlier(client: upstream.Client, kind: ClaimResource, plan: DisconnectPlan) -> list[str]:
    """Claims an earlier disconnect of this cluster released, for the report.

    Annotations cannot be selected, but a released claim has no ``app-cluster`` label: listing
    only such claims skips the connected claims of every cluster sharing the namespace.
    """
    unlabelled = await upstream.list_all(
        client, kind.list_path(plan.claim_namespace), params={"labelSelector": f"!{contract.APP_CLUSTER_LABEL}"}
    )
    return [describe(kind.kind, o) for o in unlabelled if contract.released_from(o, plan.cluster_id)]


async def _release_all(
    client: upstream.Client,
    kind: ClaimResource,
    plan: DisconnectPlan,
    owned: list[dict[str, Any]],
    report: DisconnectReport,
    *,
    log: Log,
) -> None:
    """Release until a pass finds nothing labelled, so claims created meanwhile are not left behind."""
    path = kind.list_path(plan.claim_namespace)
    for _ in range(MAX_RELEASE_PASSES):
        if not owned:
            return
        for obj in owned:
            ref = contract.app_ref_of(obj)
            if ref is None or ref.cluster_id != plan.cluster_id:
                continue
            await upstream.request(
                client,
                "PATCH",
                path.child(obj["metadata"]["name"]),
                json_body=release_patch(ref),
                content_type="application/merge-patch+json",
            )
            report.released.append(describe(kind.kind, obj))
            log(f"mcp-connector disconnect: released {describe(kind.kind, obj)}")
        owned = await labelled_claims(client, kind, plan)
    raise DisconnectError(
        f"mcp-connector disconnect (Release): {kind.resource} claims of cluster {plan.cluster_id} keep appearing "
        f"after {MAX_RELEASE_PASSES} passes; something still creates them. Stop it and re-run."
    )


def access_error(plan: DisconnectPlan, error: AccessError) -> DisconnectError:
    """The disconnect's own error for credentials that cannot be used at all."""
    return DisconnectError(f"mcp-connector disconnect of {plan.connector or 'the connector'}: {error}")


__all__ = [
    "KEEP",
    "ON_DISCONNECT",
    "RELEASE",
    "DisconnectError",
    "DisconnectReport",
    "disconnect",
    "release_patch",
]
