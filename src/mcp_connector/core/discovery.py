"""Control-plane discovery: which claim and namespaced XR APIs a Crossplane control plane offers.

Two generations of CompositeResourceDefinition are served:

* ``LegacyCluster`` XRDs (every v1 XRD) that name ``spec.claimNames``: their claims;
* v2 XRDs with ``scope: Namespaced``: their namespaced composite resources (XRs).

Cluster-scoped XRs (``scope: Cluster``, and the XRs of legacy XRDs) have no namespace
to map and are not served. Names, versions, schema and printer columns come from the
CRD Crossplane generates, and only once that CRD is Established and controlled by the
XRD, so a kind another XRD already took is never served twice. The connector (to serve
them), the component (one APIService per group/version) and the disconnect hook (what
to migrate) all ask this module, so they always agree. Pure: the caller fetches the two
lists.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from mcp_connector.core.contract import Flavor

XRD_LIST = ("apis", "apiextensions.crossplane.io", "v1", "compositeresourcedefinitions")
CRD_LIST = ("apis", "apiextensions.k8s.io", "v1", "customresourcedefinitions")

RawXrd = Mapping[str, Any]
RawCrd = Mapping[str, Any]


class RawPrinterColumn(TypedDict, total=False):
    """A CRD ``additionalPrinterColumns`` entry as the API returns it."""

    name: str
    type: str
    format: str
    description: str
    priority: int
    jsonPath: str


@dataclass(frozen=True)
class ClaimVersion:
    """One served version of a claim API."""

    name: str
    storage: bool = False
    schema: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    printer_columns: tuple[RawPrinterColumn, ...] = field(default=(), compare=False, hash=False)
    status_subresource: bool = True


@dataclass(frozen=True)
class GroupVersion:
    """An API group/version: the unit the aggregation layer routes (one APIService each)."""

    group: str
    version: str

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` string objects of this group/version carry."""
        return f"{self.group}/{self.version}"

    @property
    def apiservice_name(self) -> str:
        """The name Kubernetes requires for this group/version's APIService."""
        return f"{self.version}.{self.group}"


@dataclass(frozen=True)
class ClaimApi:
    """A claim or namespaced XR kind offered by the control plane, with everything needed to serve it.

    ``flavor`` says which of the two it is, which picks the contract's name prefix.
    """

    group: str
    kind: str
    plural: str
    singular: str
    list_kind: str
    versions: tuple[ClaimVersion, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    xrd_name: str = ""
    flavor: Flavor = Flavor.CLAIM

    @property
    def group_versions(self) -> tuple[GroupVersion, ...]:
        """Every served group/version of this claim API."""
        return tuple(GroupVersion(self.group, v.name) for v in self.versions)

    @property
    def resource(self) -> str:
        """``plural.group``, the name used for selection and the CRD name."""
        return f"{self.plural}.{self.group}"

    def version(self, name: str) -> ClaimVersion | None:
        """Return the served version called ``name``, if any."""
        return next((v for v in self.versions if v.name == name), None)

    @property
    def preferred_version(self) -> ClaimVersion:
        """The highest served version in Kubernetes version order (v1 > v1beta2 > v1alpha1)."""
        return min(self.versions, key=lambda v: version_order(v.name))


_KUBE_VERSION = re.compile(r"v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?")


def version_order(version: str) -> tuple[int, int, int, str]:
    """Sort key putting versions in Kubernetes' order, highest first.

    GA before beta before alpha, higher numbers first within each (v2 > v1 > v2beta1 >
    v1beta2 > v1alpha1); names that are not Kubernetes versions come last, alphabetically.
    This is the order kube-apiserver lists a group's versions in, and its first is the
    group's preferred version.
    """
    match = _KUBE_VERSION.fullmatch(version)
    if match is None:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), version)


def preferred_versions(apis: Iterable[ClaimApi]) -> dict[str, str]:
    """Each group's preferred version: its highest served version across all its kinds."""
    best: dict[str, str] = {}
    for api in apis:
        for v in api.versions:
            current = best.get(api.group)
            if current is None or version_order(v.name) < version_order(current):
                best[api.group] = v.name
    return best


def _served_crd_versions(crd: RawCrd) -> tuple[ClaimVersion, ...]:
    versions = []
    for v in crd.get("spec", {}).get("versions") or []:
        if not v.get("served", False):
            continue
        versions.append(
            ClaimVersion(
                name=v["name"],
                storage=bool(v.get("storage", False)),
                schema=(v.get("schema") or {}).get("openAPIV3Schema") or {},
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                status_subresource="status" in (v.get("subresources") or {}),
            )
        )
    return tuple(versions)


def _served_xrd_versions(xrd: RawXrd) -> tuple[ClaimVersion, ...]:
    served = [v for v in xrd.get("spec", {}).get("versions") or [] if v.get("served", False)]
    return tuple(
        ClaimVersion(
            name=v["name"],
            storage=bool(v.get("referenceable", False)),
            schema=(v.get("schema") or {}).get("openAPIV3Schema") or {},
            printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
        )
        for v in served
    )


def _is_established(crd: RawCrd) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _controller_uid(obj: Mapping[str, Any]) -> str | None:
    for owner in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner.get("uid") or "")
    return None


#: ``spec.scope`` of a v2 XRD; v1 XRDs have none and are all ``LegacyCluster``.
SCOPE_NAMESPACED = "Namespaced"
SCOPE_CLUSTER = "Cluster"
SCOPE_LEGACY_CLUSTER = "LegacyCluster"


@dataclass(frozen=True)
class Unserved:
    """An XRD (or one of its APIs) the connector does not serve, and why, for logs and previews."""

    xrd_name: str
    reason: str


@dataclass(frozen=True)
class Discovered:
    """Everything discovery found: the APIs to serve and the XRDs left out, with reasons."""

    apis: tuple[ClaimApi, ...]
    unserved: tuple[Unserved, ...] = ()


def _api_of(xrd: RawXrd, crd: RawCrd, flavor: Flavor, fallback_names: Mapping[str, Any]) -> ClaimApi | None:
    names = crd.get("spec", {}).get("names") or fallback_names
    versions = _served_crd_versions(crd) or _served_xrd_versions(xrd)
    if not versions:
        return None
    return ClaimApi(
        group=str(xrd["spec"]["group"]),
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        list_kind=names.get("listKind") or f"{names['kind']}List",
        versions=versions,
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        xrd_name=str(xrd.get("metadata", {}).get("name", "")),
        flavor=flavor,
    )


def _candidate(xrd: RawXrd) -> tuple[Flavor, Mapping[str, Any]] | str:
    """Which API an XRD offers to app clusters (flavor and names), or why it offers none."""
    spec = xrd.get("spec") or {}
    scope = spec.get("scope") or SCOPE_LEGACY_CLUSTER
    if scope == SCOPE_NAMESPACED:
        names = spec.get("names")
        return (Flavor.NAMESPACED_XR, names) if names and names.get("plural") else "the XRD names no XR kind"
    if scope == SCOPE_CLUSTER:
        return "cluster-scoped composite resources (scope: Cluster) are not served; use scope: Namespaced"
    if scope != SCOPE_LEGACY_CLUSTER:
        return f"unknown XRD scope {scope!r}"
    claim_names = spec.get("claimNames")
    if not claim_names or not claim_names.get("plural"):
        return "a LegacyCluster XRD without claimNames offers only cluster-scoped XRs, which are not served"
    return Flavor.CLAIM, claim_names


def _age_order(xrd: RawXrd) -> tuple[str, str]:
    """Oldest first, as Kubernetes gives a contested kind to the CRD made first; then by name."""
    metadata = xrd.get("metadata") or {}
    return str(metadata.get("creationTimestamp") or ""), str(metadata.get("name") or "")


def discover(xrds: Iterable[RawXrd], crds: Iterable[RawCrd]) -> Discovered:
    """Derive the served APIs from the control plane's XRDs and CRDs, sorted by group and kind.

    An XRD's API is served once Crossplane made its CRD, the CRD is Established and the XRD
    is its controller: until then the control plane would answer 404 for it, and a CRD
    controlled by another XRD means two XRDs asked for the same kind (the second one is not
    served; Crossplane reports it on that XRD too). No resource or kind is served twice.
    """
    crds_by_name = {c.get("metadata", {}).get("name"): c for c in crds}
    apis: list[ClaimApi] = []
    unserved: list[Unserved] = []
    taken: dict[tuple[str, str, str], str] = {}
    for xrd in sorted(xrds, key=_age_order):
        xrd_name = str((xrd.get("metadata") or {}).get("name", ""))
        group = (xrd.get("spec") or {}).get("group")
        candidate = _candidate(xrd)
        if not group or isinstance(candidate, str):
            unserved.append(Unserved(xrd_name, candidate if isinstance(candidate, str) else "the XRD names no group"))
            continue
        flavor, names = candidate
        crd_name = f"{names['plural']}.{group}"
        crd = crds_by_name.get(crd_name)
        if crd is None or not _is_established(crd):
            unserved.append(Unserved(xrd_name, f"waiting for Crossplane to establish CRD {crd_name}"))
            continue
        xrd_uid = str((xrd.get("metadata") or {}).get("uid") or "")
        if _controller_uid(crd) != xrd_uid:
            unserved.append(Unserved(xrd_name, f"CRD {crd_name} is not controlled by this XRD (another XRD took it)"))
            continue
        if flavor is Flavor.NAMESPACED_XR and crd.get("spec", {}).get("scope") != "Namespaced":
            unserved.append(Unserved(xrd_name, f"CRD {crd_name} is not namespaced"))
            continue
        api = _api_of(xrd, crd, flavor, names)
        if api is None:
            unserved.append(Unserved(xrd_name, "no served version"))
            continue
        keys = (("resource", api.group, api.plural), ("kind", api.group, api.kind))
        clash = next((taken[k] for k in keys if k in taken), None)
        if clash is not None:
            unserved.append(Unserved(xrd_name, f"{api.kind}.{api.group} is already served for XRD {clash}"))
            continue
        taken.update(dict.fromkeys(keys, xrd_name))
        apis.append(api)
    return Discovered(tuple(sorted(apis, key=lambda a: (a.group, a.kind))), tuple(unserved))


def claim_apis_from(xrds: Iterable[RawXrd], crds: Iterable[RawCrd]) -> tuple[ClaimApi, ...]:
    """The served claim and namespaced XR APIs (``discover(...).apis``)."""
    return discover(xrds, crds).apis


@dataclass(frozen=True)
class ClaimApiSelection:
    """Which discovered claim APIs to connect.

    ``include`` and ``exclude`` hold ``plural.group`` names or ``fnmatch`` patterns
    (``*.example.org``); an empty ``include`` means every claim API.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def matches(self, api: ClaimApi) -> bool:
        """True when ``api`` is selected."""
        names = (api.resource, api.group, f"{api.kind}.{api.group}")

        def hit(patterns: Sequence[str]) -> bool:
            return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)

        return (not self.include or hit(self.include)) and not hit(self.exclude)


def select(apis: Iterable[ClaimApi], selection: ClaimApiSelection) -> tuple[ClaimApi, ...]:
    """Keep the claim APIs ``selection`` matches."""
    return tuple(a for a in apis if selection.matches(a))


def group_versions(apis: Iterable[ClaimApi]) -> tuple[GroupVersion, ...]:
    """Every distinct served group/version, sorted: the APIServices to create."""
    return tuple(sorted({gv for a in apis for gv in a.group_versions}, key=lambda g: (g.group, g.version)))


def crd_names_for(xrds: Iterable[RawXrd]) -> tuple[str, ...]:
    """The CRDs whose definitions the XRDs' claim (and namespaced XR) APIs come from, by name.

    Lets a caller with little time or little access (the component's preview, the disconnect)
    read exactly those CRDs instead of listing every CRD of the control plane.
    """
    names = set()
    for xrd in xrds:
        spec = xrd.get("spec") or {}
        group = spec.get("group")
        chosen = spec.get("names") if spec.get("scope") == "Namespaced" else spec.get("claimNames")
        if group and chosen and chosen.get("plural"):
            names.add(f"{chosen['plural']}.{group}")
    return tuple(sorted(names))
