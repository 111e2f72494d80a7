"""Which fields of a claim (or namespaced XR) the app user may not write: references across tenants.

Every app cluster's claims share one control-plane namespace, and Crossplane acts on the
references an object carries. A claim whose ``spec.resourceRef`` names an unclaimed XR is bound
to it; a namespaced XR whose ``spec.crossplane.resourceRefs`` name composed resources adopts
them; ``publishConnectionDetailsTo`` writes a Secret under a name the connector cannot hash.
Written from an app cluster, each would reach objects of another tenant. This module is the one
place that says which fields those are; extend the tables, not the callers.

Pure: the connector calls ``violations`` on every write and ``restore`` on full replacements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]

#: Set by Crossplane in the control plane; the app side may send back the stored value (or
#: leave it out, and the stored value is kept), never set or change it.
CONTROL_PLANE_SET: tuple[Path, ...] = (
    ("spec", "resourceRef"),  # claim -> its XR (Crossplane v1 claims, v2 LegacyCluster claims)
    ("spec", "resourceRefs"),  # legacy XR -> its composed resources
    ("spec", "claimRef"),  # legacy XR -> its claim
    ("spec", "crossplane", "resourceRefs"),  # v2 namespaced XR -> its composed resources
)

#: Never accepted from the app side: their targets are not confined by the connector's hashing.
REFUSED: tuple[Path, ...] = (
    ("spec", "publishConnectionDetailsTo"),  # external secret stores (Crossplane v1 alpha)
)

_MISSING = object()


@dataclass(frozen=True)
class Violation:
    """One field the app user may not write, as a Kubernetes field error."""

    path: Path
    detail: str

    @property
    def field(self) -> str:
        """The field path as Kubernetes prints it (``spec.resourceRef``)."""
        return ".".join(self.path)


def _get(obj: Mapping[str, Any], path: Path) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def violations(new: Mapping[str, Any], stored: Mapping[str, Any] | None) -> list[Violation]:
    """Fields ``new`` sets that the app side may not: a control-plane reference it does not merely
    repeat from ``stored`` (None when the object does not exist yet), or a refused field.

    A null value counts as unset, as in a merge patch.
    """
    found: list[Violation] = []
    for path in CONTROL_PLANE_SET:
        value = _get(new, path)
        if value is _MISSING or value is None:
            continue
        if stored is None or _get(stored, path) != value:
            found.append(Violation(path, "set by the control plane; it cannot be set or changed from the app cluster"))
    for path in REFUSED:
        value = _get(new, path)
        if value is not _MISSING and value is not None:
            found.append(Violation(path, "not supported through the connector: it could name another tenant's objects"))
    return found


def restore(new: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` with the control-plane references it leaves out copied back from ``stored``.

    A full replacement (PUT, or a patch computed by the connector) that omits them would
    otherwise unbind the claim from its XR. Only the parents on the way are copied.
    """
    out = dict(new)
    for path in CONTROL_PLANE_SET:
        kept = _get(stored, path)
        if kept is _MISSING or _get(new, path) not in (_MISSING, None):
            continue
        node = out
        for key in path[:-1]:
            child = node.get(key)
            if child is not None and not isinstance(child, Mapping):
                break
            node[key] = node = dict(child or {})
        else:
            node[path[-1]] = kept
    return out
