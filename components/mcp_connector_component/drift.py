"""Discovery drift: a claim kind the last update served that the control plane no longer offers.

An XRD that is briefly not Established drops its claim API from discovery; the update would
then remove its APIService, and the app cluster would lose sight of this cluster's claims of
that kind. The Disconnect's ``before_update`` hook asks this module which removed kinds are
drift (still selected by ``include``/``exclude``, so not the user's doing) and still hold
claims of this cluster, and refuses the update unless ``allow_api_removal`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcp_connector import upstream
from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector.core.discovery import ClaimApi, ClaimApiSelection, ClaimVersion
from mcp_connector_component.disconnect import describe, labelled_claims
from mcp_connector_component.guard import ClaimResource, DisconnectPlan


def drifted(old: DisconnectPlan, new: DisconnectPlan, new_inputs: Mapping[str, Any]) -> list[ClaimResource]:
    """Kinds served at the last update, gone now, and still selected: removed by discovery, not by the user.

    With ``claim_apis`` pinned the program discovers nothing: the kinds are what the user
    pinned (often because the control plane cannot be reached, as in a destroy), so a kind
    left out is the user's doing like one dropped from ``include``, and the disconnect, not
    this check, says what happens to its claims.
    """
    if new_inputs.get("pinned"):
        return []
    selection = ClaimApiSelection(tuple(new_inputs.get("include") or ()), tuple(new_inputs.get("exclude") or ()))
    kept = {k.resource for k in new.served}
    return [k for k in old.served if k.resource not in kept and selection.matches(_as_api(k))]


def _as_api(kind: ClaimResource) -> ClaimApi:
    return ClaimApi(
        group=kind.group,
        kind=kind.kind,
        plural=kind.plural,
        singular=kind.plural,
        list_kind="",
        versions=(ClaimVersion(kind.version, storage=True),),
    )


async def claims_in(plan: DisconnectPlan, access: ControlPlaneAccess, kinds: Sequence[ClaimResource]) -> list[str]:
    """This cluster's claims in ``kinds``, described; a kind the control plane cannot list counts, named as such."""
    found: list[str] = []
    async with upstream.connected(access) as client:
        for kind in kinds:
            try:
                found += [describe(kind.kind, o) for o in await labelled_claims(client, kind, plan)]
            except upstream.ControlPlaneError as e:
                found.append(f"{kind.resource}: cannot list ({e})")
    return found
