"""The claim APIs the connector serves right now, indexed for request routing.

Replaced as a whole when discovery sees a change, so a request always works against one
consistent snapshot while the served set moves underneath.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mcp_connector.core.discovery import ClaimApi, ClaimVersion, GroupVersion, group_versions, version_order


@dataclass(frozen=True)
class ServedResource:
    """One claim API at one version: what a resource path resolves to."""

    api: ClaimApi
    version: ClaimVersion

    @property
    def group(self) -> str:
        """The API group."""
        return self.api.group

    @property
    def api_version(self) -> str:
        """``group/version`` as objects carry it."""
        return f"{self.api.group}/{self.version.name}"


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot of the served claim APIs."""

    apis: tuple[ClaimApi, ...] = ()
    _by_path: dict[tuple[str, str, str], ServedResource] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, apis: Iterable[ClaimApi]) -> Catalog:
        """Index ``apis`` by (group, version, plural)."""
        apis = tuple(apis)
        index = {
            (api.group, version.name, api.plural): ServedResource(api, version)
            for api in apis
            for version in api.versions
        }
        return cls(apis, index)

    def resource(self, group: str, version: str, plural: str) -> ServedResource | None:
        """The served resource at a path, if any."""
        return self._by_path.get((group, version, plural))

    def group_versions(self) -> tuple[GroupVersion, ...]:
        """Every served group/version, sorted."""
        return group_versions(self.apis)

    def groups(self) -> tuple[str, ...]:
        """Every served group, sorted."""
        return tuple(sorted({a.group for a in self.apis}))

    def in_group(self, group: str) -> tuple[ClaimApi, ...]:
        """The claim APIs of one group."""
        return tuple(a for a in self.apis if a.group == group)

    def at(self, group: str, version: str) -> tuple[ServedResource, ...]:
        """The resources served at one group/version."""
        return tuple(r for (g, v, _), r in sorted(self._by_path.items()) if g == group and v == version)

    def versions_of(self, group: str) -> tuple[str, ...]:
        """A group's versions in Kubernetes version order; the first is the preferred one."""
        return tuple(sorted({v.name for a in self.in_group(group) for v in a.versions}, key=version_order))
