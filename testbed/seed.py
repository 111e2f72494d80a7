"""Crossplane claim APIs as test data: the XRD API, example XRDs and the claim CRDs.

Crossplane itself cannot run here (no kubelet), so the control plane gets what Crossplane would
have produced: the CompositeResourceDefinition CRD, XRD objects with the Established/Offered
conditions Crossplane sets, and the generated claim CRDs. The connector and the component
discover claim APIs from exactly these objects, so tests exercise the real discovery path.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from testbed.kube import kubectl

CROSSPLANE_DIR = Path(__file__).resolve().parent / "crossplane"

#: The CRD that defines CompositeResourceDefinition (apiextensions.crossplane.io/v1).
XRD_CRD_FILE = CROSSPLANE_DIR / "crds" / "apiextensions.crossplane.io_compositeresourcedefinitions.yaml"
XRD_CRD_NAME = "compositeresourcedefinitions.apiextensions.crossplane.io"

_FIELD_MANAGER = "mcp-testbed"


@dataclass(frozen=True)
class ClaimApi:
    """One claim API: an XRD with claimNames and the claim CRD Crossplane generates for it."""

    folder: str  # under testbed/crossplane/
    group: str
    kind: str
    plural: str
    versions: tuple[str, ...]  # served versions, in XRD order
    storage_version: str  # the XRD's referenceable version
    short_names: tuple[str, ...] = ()

    @property
    def xrd_name(self) -> str:
        """Name of the XRD object (``x<plural-of-composite>.<group>``)."""
        return f"x{self.plural}.{self.group}"

    @property
    def crd_name(self) -> str:
        """Name of the generated claim CRD (``<plural>.<group>``)."""
        return f"{self.plural}.{self.group}"

    @property
    def xrd_file(self) -> Path:
        """YAML of the XRD object."""
        return CROSSPLANE_DIR / self.folder / "xrd.yaml"

    @property
    def claim_crd_file(self) -> Path:
        """YAML of the claim CRD."""
        return CROSSPLANE_DIR / self.folder / "claim-crd.yaml"

    @property
    def example_claim_file(self) -> Path:
        """YAML of one example claim (no namespace set), for tests and manual checks."""
        return CROSSPLANE_DIR / self.folder / "claim.yaml"


KUBERNETES_CLUSTER = ClaimApi(
    folder="kubernetescluster", group="k8s.starter.org", kind="KubernetesCluster",
    plural="kubernetesclusters", versions=("v1alpha1",), storage_version="v1alpha1",
)
POSTGRESQL_INSTANCE = ClaimApi(
    folder="postgresqlinstance", group="db.example.org", kind="PostgreSQLInstance",
    plural="postgresqlinstances", versions=("v1alpha1", "v1beta1"), storage_version="v1beta1",
    short_names=("pgi",),
)
REDIS_CACHE = ClaimApi(
    folder="rediscache", group="cache.example.org", kind="RedisCache",
    plural="rediscaches", versions=("v1",), storage_version="v1",
)

#: Claim APIs present in the control plane right after ``cluster up``.
SEEDED: tuple[ClaimApi, ...] = (KUBERNETES_CLUSTER, POSTGRESQL_INSTANCE)
#: Claim APIs left out on purpose, for tests that add a claim API later.
UNSEEDED: tuple[ClaimApi, ...] = (REDIS_CACHE,)


def _namespace_manifest(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _apply(kubeconfig: Path, *files: Path, extra_stdin: str | None = None) -> None:
    args = ["apply", "--server-side", f"--field-manager={_FIELD_MANAGER}", "--force-conflicts"]
    for f in files:
        args += ["-f", str(f)]
    if extra_stdin is not None:
        args += ["-f", "-"]
    kubectl(kubeconfig, *args, input=extra_stdin)


def _wait_established(kubeconfig: Path, crd_names: list[str], timeout_s: int = 60) -> None:
    kubectl(
        kubeconfig, "wait", "--for=condition=Established", f"--timeout={timeout_s}s",
        *[f"crd/{name}" for name in crd_names],
    )


def _mark_xrds_ready(kubeconfig: Path, apis: tuple[ClaimApi, ...]) -> None:
    """Set the conditions Crossplane's XRD controllers would set once both CRDs exist."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": "Established", "status": "True", "reason": "WatchingCompositeResource", "lastTransitionTime": now},
        {"type": "Offered", "status": "True", "reason": "WatchingCompositeResourceClaim", "lastTransitionTime": now},
    ]
    patch = json.dumps({"status": {"conditions": conditions}})
    for api in apis:
        kubectl(
            kubeconfig, "patch", "compositeresourcedefinition", api.xrd_name,
            "--subresource=status", "--type=merge", "-p", patch,
        )


def seed(kubeconfig: Path, claim_namespace: str, apis: tuple[ClaimApi, ...] = SEEDED) -> None:
    """Install the XRD API, the given claim APIs and the claim namespace into a control plane.

    CRDs go first and must be Established before the XRD objects (custom resources of the XRD
    CRD) can be created; batching keeps this to four kubectl calls plus one per XRD status.
    """
    _apply(
        kubeconfig, XRD_CRD_FILE, *[a.claim_crd_file for a in apis],
        extra_stdin=_namespace_manifest(claim_namespace),
    )
    _wait_established(kubeconfig, [XRD_CRD_NAME, *[a.crd_name for a in apis]])
    _apply(kubeconfig, *[a.xrd_file for a in apis])
    _mark_xrds_ready(kubeconfig, apis)


def apply_claim_api(kubeconfig: Path, api: ClaimApi) -> None:
    """Add one claim API to a running control plane (as Crossplane would on a new XRD)."""
    _apply(kubeconfig, api.claim_crd_file)
    _wait_established(kubeconfig, [api.crd_name])
    _apply(kubeconfig, api.xrd_file)
    _mark_xrds_ready(kubeconfig, (api,))


def delete_claim_api(kubeconfig: Path, api: ClaimApi) -> None:
    """Remove a claim API again (XRD and claim CRD), waiting until both are gone."""
    kubectl(kubeconfig, "delete", "--ignore-not-found", "--wait=true", "compositeresourcedefinition", api.xrd_name)
    kubectl(kubeconfig, "delete", "--ignore-not-found", "--wait=true", "crd", api.crd_name)
