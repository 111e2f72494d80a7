"""Control-plane discovery: which claim APIs a Crossplane control plane offers.

A claim API exists where a CompositeResourceDefinition names ``spec.claimNames``;
its names, versions, schema and printer columns come from the claim CRD Crossplane
generates for it. The connector (to serve them), the component (one APIService per
group/version) and the disconnect hook (which claims to migrate) all ask this module,
so they always agree. Pure: the caller fetches the two lists.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

XRD_LIST_PATH = "/apis/apiextensions.crossplane.io/v1/compositeresourcedefinitions"
CRD_LIST_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

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
    """A claim kind offered by the control plane, with everything needed to serve it."""

    group: str
    kind: str
    plural: str
    singular: str
    list_kind: str
    versions: tuple[ClaimVersion, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    xrd_name: str = ""

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


def claim_apis_from(xrds: Iterable[RawXrd], crds: Iterable[RawCrd]) -> tuple[ClaimApi, ...]:
    """Derive the claim APIs from the control plane's XRDs and CRDs, sorted by group and kind.

    An XRD offers a claim API only once its claim CRD exists and is Established: until
    then the control plane would answer 404 for it, so it is not served (nor given an
    APIService) yet.
    """
    crds_by_name = {c.get("metadata", {}).get("name"): c for c in crds}
    apis = []
    for xrd in xrds:
        spec = xrd.get("spec") or {}
        claim_names = spec.get("claimNames")
        group = spec.get("group")
        if not claim_names or not group:
            continue
        crd = crds_by_name.get(f"{claim_names['plural']}.{group}")
        if crd is None or not _is_established(crd):
            continue
        names = crd.get("spec", {}).get("names") or claim_names
        versions = _served_crd_versions(crd) or _served_xrd_versions(xrd)
        if not versions:
            continue
        apis.append(
            ClaimApi(
                group=group,
                kind=names["kind"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                list_kind=names.get("listKind") or f"{names['kind']}List",
                versions=versions,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                xrd_name=str(xrd.get("metadata", {}).get("name", "")),
            )
        )
    return tuple(sorted(apis, key=lambda a: (a.group, a.kind)))


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
