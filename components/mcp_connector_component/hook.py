"""The disconnect hooks: Pulumi runs them (``before_delete``) when the guard and the disconnect are deleted.

Two hooks (see ``guard`` for why two children): the check hook runs when the guard is
deleted, first of all McpConnector's children; it only reads, so a control plane that
cannot be reached stops the destroy with everything in place, and the engine's protect
check on the guard comes right after it. The disconnect hook runs when ``Disconnect`` is
deleted, which only the whole component going does; it keeps or releases. Both read
the plan from their resource's inputs, which in ``pulumi destroy --run-program`` are
the ones the program gives now (the stack's current credentials) and otherwise the
ones stored at the last update. With ``on_dry_run`` it also runs in previews, where it
only reports which claims the disconnect would keep or release.

Pulumi runs a delete hook only if the program registered it, also when the component
is no longer in the program: every program that has (or had) an McpConnector calls
``register_disconnect_hook`` unconditionally. Registration is idempotent per hook name
and engine deployment, so any number of McpConnectors (and the provider host, which
sees one construct call per component) share one registration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings as pulumi_settings

from mcp_connector import upstream
from mcp_connector.core.access import AccessError
from mcp_connector_component import drift, kubeconfigs
from mcp_connector_component.disconnect import DisconnectError, access_error, disconnect
from mcp_connector_component.guard import (
    DISCONNECT_TYPE,
    GUARD_TYPE,
    KEEP,
    DisconnectPlan,
    PlanError,
    plan_from_inputs,
)

HOOK_NAME = "mcp-connector-disconnect"
CHECK_HOOK_NAME = "mcp-connector-disconnect-check"
IDENTITY_HOOK_NAME = "mcp-connector-identity-change"
GUARD_GONE_HOOK_NAME = "mcp-connector-guard-deleted"


class DisconnectHookError(pulumi.RunError):
    """The hook stopped the delete; the message says why and what to do."""


@dataclass
class _Deployment:
    """One engine deployment as this process sees it: its hooks and the guards its program declares."""

    hook: pulumi.ResourceHook
    check: pulumi.ResourceHook
    identity: pulumi.ResourceHook
    gone: pulumi.ResourceHook
    dry_run: bool
    #: Guard name -> its connection identity, for telling a rename from a disconnect.
    guards: dict[str, pulumi.Output[tuple[str, str, str]]] = field(default_factory=dict)
    #: Guards whose registration the engine has answered. The guard is replaced delete-first,
    #: so a delete hook that runs while its own registration is still unanswered is a
    #: replacement (``pulumi up --replace``), never a disconnect; in a destroy, every
    #: registration is answered before the first delete.
    registered: set[str] = field(default_factory=set)
    #: Guards whose delete this deployment started (their check ran) and those it completed
    #: (their after_delete hook ran: past the engine's protect check). A guard started and not
    #: completed failed: protected, or its check stopped it; the Disconnect must not go on.
    guard_started: set[str] = field(default_factory=set)
    guard_deleted: set[str] = field(default_factory=set)
    #: The event loop of the program run that registered the hook (see ``_current``).
    loop: weakref.ref[asyncio.AbstractEventLoop] | None = None


_deployments: dict[object, _Deployment] = {}


def _deployment_key() -> object:
    """What identifies the engine deployment this program run talks to.

    The provider host builds a new monitor client for every construct call of the same
    deployment, so the client object cannot be the key; its channel's target (the
    engine's monitor address) can. Pulumi's mocks have no channel: there the client is.
    """
    monitor = pulumi_settings.get_monitor()
    target = getattr(getattr(monitor, "RegisterResource", None), "_target", None)
    return target if target is not None else monitor


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _current() -> _Deployment:
    """This deployment's hook, registered once per program run.

    The monitor's address alone is not enough: a process that runs many deployments one after
    another (the Automation API's inline programs) meets a port again, and a hook registered
    with a finished engine is unknown to the new one ("hook ... was not registered"). Each
    program run has an event loop of its own, while the construct calls of one deployment
    share the provider host's; so an entry counts only on the loop that made it.
    """
    key = _deployment_key()
    loop = _running_loop()
    deployment = _deployments.get(key)
    if deployment is not None and deployment.loop is not None and deployment.loop() is not loop:
        deployment = None
    if deployment is None:
        dry_run = pulumi.runtime.is_dry_run()
        hook = pulumi.ResourceHook(
            HOOK_NAME,
            lambda args: _before_delete(args, dry_run=dry_run, key=key),
            opts=pulumi.ResourceHookOptions(on_dry_run=True),
        )
        # Not in previews: the disconnect hook reports there what would happen.
        check = pulumi.ResourceHook(
            CHECK_HOOK_NAME, lambda args: _before_delete(args, dry_run=dry_run, key=key, check=True)
        )
        identity = pulumi.ResourceHook(
            IDENTITY_HOOK_NAME,
            lambda args: _before_update(args, dry_run=dry_run),
            opts=pulumi.ResourceHookOptions(on_dry_run=True),
        )
        gone = pulumi.ResourceHook(GUARD_GONE_HOOK_NAME, lambda args: _guard_deleted(args, key=key))
        deployment = _Deployment(hook, check, identity, gone, dry_run, loop=weakref.ref(loop) if loop else None)
        _deployments[key] = deployment
    return deployment


def register_disconnect_hook() -> pulumi.ResourceHook:
    """Register the disconnect hook with this program run (safe to call any number of times).

    Call it in every program that has (or had) an McpConnector, before or without
    creating one: Pulumi needs it registered to run it when a guard is deleted,
    including after the component was removed from the program. McpConnector calls it too.
    """
    return _current().hook


def check_hook() -> pulumi.ResourceHook:
    """The guard's hook (registered together with the disconnect hook)."""
    return _current().check


def guard_gone_hook() -> pulumi.ResourceHook:
    """The guard's after_delete hook (registered together with the disconnect hook)."""
    return _current().gone


def _guard_deleted(args: pulumi.ResourceHookArgs, *, key: object) -> None:
    deployment = _deployments.get(key)
    if deployment is not None:
        deployment.guard_deleted.add(args.name)


def identity_hook() -> pulumi.ResourceHook:
    """The Disconnect's before_update hook (registered together with the disconnect hook)."""
    return _current().identity


def declare_guard(name: str, identity: pulumi.Output[tuple[str, str, str]], guard: pulumi.Resource) -> None:
    """Record that this program declares the guard ``name`` for a connection (control plane, namespace, cluster)."""
    deployment = _current()
    deployment.guards[name] = identity
    guard.urn.apply(lambda _: deployment.registered.add(name))


async def _reveal(value: Any) -> Any:
    """Unwrap hook argument values: secret inputs arrive as Outputs, maps may nest them."""
    if isinstance(value, pulumi.Output):
        value = await value.future()
    if isinstance(value, Mapping):
        return {k: await _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [await _reveal(v) for v in value]
    return value


async def plan_from_hook_args(args: pulumi.ResourceHookArgs) -> DisconnectPlan:
    """The plan in the guard's inputs (those of this run in a destroy with the program, else the stored ones)."""
    try:
        return plan_from_inputs(await _reveal(args.old_inputs or {}))
    except (PlanError, TypeError, ValueError) as e:
        raise DisconnectHookError(f"mcp-connector disconnect ({args.name}): {e}") from None


async def _continues_elsewhere(plan: DisconnectPlan, guard_name: str, key: object) -> str | None:
    """The name of another guard this program declares for the same connection (a rename), if any."""
    deployment = _deployments.get(key)
    for name, identity in (deployment.guards if deployment else {}).items():
        if name != guard_name and await identity.future() == plan.identity:
            return name
    return None


#: What each hook may run on. The disconnect hook also runs on a guard whose state still binds it
#: (made by a McpConnector before the check hook existed, destroyed without an `up` in between).
_RUNS_ON = {False: (DISCONNECT_TYPE, GUARD_TYPE), True: (GUARD_TYPE,)}


async def _before_delete(args: pulumi.ResourceHookArgs, *, dry_run: bool, key: object, check: bool = False) -> None:
    """Runs when a guard (``check``) or a disconnect is about to be deleted (or, in a preview, would be)."""
    if args.type not in _RUNS_ON[check]:
        raise DisconnectHookError(
            f"mcp-connector disconnect: {args.urn} is not a {' or '.join(_RUNS_ON[check])}; "
            "it was made by another version of McpConnector. Nothing was changed."
        )
    deployment = _deployments.get(key)
    if check and deployment is not None and not dry_run:
        deployment.guard_started.add(args.name)
    if deployment is not None and args.name in deployment.guards and args.name not in deployment.registered:
        pulumi.log.info(f"mcp-connector disconnect: {args.name} is being replaced; the connection stays as it is")
        return
    plan = await plan_from_hook_args(args)
    if not check and not dry_run and deployment is not None and args.type == DISCONNECT_TYPE:
        # The engine runs a resource's delete hooks before it checks protect, and it went on to
        # this delete after the guard's failed (seen with a protected component): only a guard
        # this deployment deleted, or none at all (gone in an earlier run), lets the disconnect run.
        guard = _guard_of(args.name)
        if guard in deployment.guard_started and guard not in deployment.guard_deleted:
            raise DisconnectHookError(
                f"mcp-connector disconnect: the guard {guard} was not deleted (a protected McpConnector, or its "
                "check stopped it), so nothing is kept or released and nothing else is deleted by this hook. "
                "Unprotect the component (remove protect and run `pulumi up`) to disconnect it."
            )
    # A guard the program no longer declares, while another one it declares serves the same
    # connection: a rename, or one of two components for one cluster removed; releasing by the
    # cluster's label would take the claims the other still serves. A guard the program still
    # declares and the engine deletes is a destroy: every guard goes, so each one releases.
    declared = deployment is not None and args.name in deployment.guards
    successor = None if declared else await _continues_elsewhere(plan, args.name, key)
    if successor is not None:
        pulumi.log.info(
            f"mcp-connector disconnect: cluster {plan.cluster_id} stays connected through {successor}; "
            "its claims are not touched"
        )
        return
    try:
        access = kubeconfigs.load(plan.kubeconfig).access
        report = await disconnect(plan, access, dry_run=dry_run or check, log=pulumi.log.info if not check else _quiet)
    except AccessError as e:
        raise DisconnectHookError(str(access_error(plan, e))) from None
    except DisconnectError as e:
        raise DisconnectHookError(str(e)) from None
    except upstream.ControlPlaneError as e:
        if plan.on_disconnect == KEEP:
            # Keep changes nothing, so an unreachable control plane must not block disconnecting.
            pulumi.log.warn(f"mcp-connector disconnect (Keep): could not list the claims: {e}")
            return
        raise DisconnectHookError(_stopped(plan, e, dry_run=dry_run, check=check)) from None
    if check:
        pulumi.log.info(f"mcp-connector disconnect: checked that {plan.control_plane} answers; nothing changed yet")
        return
    prefix = "mcp-connector disconnect (preview)" if dry_run else "mcp-connector disconnect"
    pulumi.log.info(f"{prefix}: {report.summary(plan)}")


async def _before_update(args: pulumi.ResourceHookArgs, *, dry_run: bool) -> None:
    """Runs before the Disconnect is updated: a change of identity disconnects the old one, or is refused.

    The component registers its other children only once the engine has answered the
    Disconnect's registration, which it does after this hook: a refusal here leaves every
    other child of the component, the guard's plan included, as it was.
    """
    if args.type != DISCONNECT_TYPE:
        raise DisconnectHookError(f"mcp-connector identity check: {args.urn} is not a {DISCONNECT_TYPE}")
    try:
        old_inputs, new_inputs = await _reveal(args.old_inputs or {}), await _reveal(args.new_inputs or {})
        old, new = plan_from_inputs(old_inputs), plan_from_inputs(new_inputs)
    except (PlanError, TypeError, ValueError) as e:
        raise DisconnectHookError(f"mcp-connector identity check ({args.name}): {e}") from None
    changed = old.changes(new)
    if not changed:
        if not old.app_cluster and new.app_cluster:
            pulumi.log.info(
                f"McpConnector {new.connector or args.name}: its app cluster (kube-system UID {new.app_cluster}) "
                "is recorded from now on; a later update that moves it to another app cluster is a change of identity"
            )
        await _check_drift(old, new, new_inputs, dry_run=dry_run)
        return
    # The disconnect of the old identity, as on_disconnect says now.
    old = dataclasses.replace(old, on_disconnect=new.on_disconnect)
    allowed = bool(new_inputs.get("allowIdentityChange"))
    what = (
        f"McpConnector {new.connector or args.name} changes its identity ({'; '.join(changed)}) from "
        f"{_identity_text(old)} to {_identity_text(new)}: that disconnects the old identity"
    )
    if old.identity == new.identity:
        what += _same_labels(old)
    try:
        access = kubeconfigs.load(old.kubeconfig).access
        report = await disconnect(old, access, dry_run=dry_run or not allowed, log=pulumi.log.info)
        found = report.summary(old)
    except AccessError as e:
        found = f"its claims cannot be listed: {access_error(old, e)}"
        report = None
    except (DisconnectError, upstream.ControlPlaneError) as e:
        if allowed and not dry_run:
            raise DisconnectHookError(f"{what}, which stopped: {e}. Nothing else was changed; re-run.") from None
        found = f"its claims cannot be listed: {e}"
        report = None
    if dry_run:
        then = "`pulumi up` runs it" if allowed else "`pulumi up` refuses it unless allow_identity_change is true"
        pulumi.log.warn(f"{what} ({found}); {then}.")
        return
    if not allowed:
        raise DisconnectHookError(
            f"{what} ({found}). Refused: the old identity was not disconnected, its claims were not touched, "
            "and no other child of the McpConnector was changed. Set allow_identity_change to true to disconnect "
            "the old identity and connect the new one, or put the old value back and run `pulumi up` again."
        )
    if report is None:
        raise DisconnectHookError(f"{what}, which cannot run ({found}). Nothing else was changed; re-run.")
    pulumi.log.info(f"mcp-connector disconnect of the old identity: {found}")


async def _check_drift(
    old: DisconnectPlan, new: DisconnectPlan, new_inputs: Mapping[str, Any], *, dry_run: bool
) -> None:
    """An update that removes APIServices holding this cluster's claims, not by the user's choice: refused."""
    kinds = drift.drifted(old, new, new_inputs)
    if not kinds:
        return
    try:
        claims = await drift.claims_in(old, kubeconfigs.load(old.kubeconfig).access, kinds)
    except (AccessError, upstream.ControlPlaneError) as e:
        claims = [f"cannot list them ({e})"]
    if not claims:
        return
    what = (
        f"McpConnector {new.connector}: the control plane no longer offers {', '.join(k.resource for k in kinds)} "
        f"(still selected by include/exclude), so this update would remove its APIService while this cluster has "
        f"claims in it: {', '.join(claims)}"
    )
    allowed = bool(new_inputs.get("allowApiRemoval"))
    if dry_run:
        then = "`pulumi up` removes it" if allowed else "`pulumi up` refuses unless allow_api_removal is true"
        pulumi.log.warn(f"{what}. {then}, or drop the kind from include; an XRD not Established is often brief.")
    elif not allowed:
        raise DisconnectHookError(
            f"{what}. Refused: no APIService was removed and no other child of the McpConnector was "
            "changed. Wait until the XRD is Established again and re-run, drop the kind from include, or set "
            "allow_api_removal to true to remove it anyway."
        )
    else:
        pulumi.log.warn(f"{what}; removed as allow_api_removal says (the claims stay in the control plane).")


def _identity_text(plan: DisconnectPlan) -> str:
    app = f", app cluster {plan.app_cluster}" if plan.app_cluster else ""
    return f"(control plane {plan.control_plane}, namespace {plan.claim_namespace}, cluster {plan.cluster_id}{app})"


def _same_labels(old: DisconnectPlan) -> str:
    """Only the app cluster moved: the claims' labels stay the same, so Keep hands them to the new one."""
    return (
        f" (the claims keep the label of cluster {old.cluster_id}: with Keep the new app cluster serves them, "
        "as when a rebuilt cluster takes over; with Release they are released first)"
    )


def _guard_of(disconnect_name: str) -> str:
    """The guard's name for a Disconnect's (``<component>-claims`` -> ``<component>-disconnect``)."""
    return disconnect_name.removesuffix("-claims") + "-disconnect"


def _quiet(_: str) -> None:
    """The check's log: the disconnect hook reports what it finds."""


def _stopped(plan: DisconnectPlan, error: Exception, *, dry_run: bool, check: bool) -> str:
    """What a Release that cannot reach the control plane tells the user to do."""
    if dry_run:
        return f"mcp-connector disconnect (Release) could not list the claims: {error}"
    if check:
        return (
            f"mcp-connector disconnect (Release) stopped before deleting anything: {error}. "
            "The connector and everything it needs are still in place and serving this cluster. "
            "Re-run when the control plane answers, "
            "or set on_disconnect to Keep to disconnect without changing the claims."
        )
    # The guard's check passed and every other child depends on the Disconnect: the engine has
    # deleted the connector's objects before this ran (a legacy guard's hook runs before them).
    return (
        f"mcp-connector disconnect (Release) of cluster {plan.cluster_id} stopped: {error}. "
        "Claims released so far stay released; the others keep their labels. The connector's objects in the "
        "app cluster may already be deleted. Re-run `pulumi destroy --run-program` when the control plane "
        "answers: it releases the rest. Or set on_disconnect to Keep and re-run to leave the claims as they are."
    )
