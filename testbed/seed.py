"""Crossplane test data: example XRDs of both generations, applied to the control plane.

Real Crossplane runs against the control plane (``testbed.crossplane_core``), so the test bed
only applies what a platform team would: XRDs (and the claim namespace). Crossplane's XRD
controller makes the claim and XR CRDs and sets the XRDs' ``Established``/``Offered``
conditions; the connector and the component discover the APIs from exactly those objects.

Two generations are seeded: v1 XRDs with ``claimNames`` (claims, ``LegacyCluster``) and a v2
XRD with ``scope: Namespaced`` (namespaced XRs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from testbed.kube import kubectl

CROSSPLANE_DIR = Path(__file__).resolve().parent / "crossplane"

#: The CRD that defines CompositeResourceDefinition (installed by Crossplane's init).
XRD_CRD_NAME = "compositeresourcedefinitions.apiextensions.crossplane.io"

_FIELD_MANAGER = "mcp-testbed"
_WAIT_S = 120  # Crossplane deletes an XRD's XRs first; slow on a loaded machine


@dataclass(frozen=True)
class ClaimApi:
    """One API the connector serves: a claim (v1 XRD) or a namespaced XR (v2 XRD)."""

    folder: str  # under testbed/crossplane/
    group: str
    kind: str
    plural: str
    versions: tuple[str, ...]  # served versions, in XRD order
    storage_version: str  # the XRD's referenceable version
    short_names: tuple[str, ...] = ()
    namespaced_xr: bool = False  # a v2 XRD's namespaced XR, not a claim

    @property
    def xrd_name(self) -> str:
        """Name of the XRD: ``<XR plural>.<group>`` (claims' XRs are named ``x<plural>``)."""
        return f"{self.plural}.{self.group}" if self.namespaced_xr else f"x{self.plural}.{self.group}"

    @property
    def crd_name(self) -> str:
        """Name of the claim or XR CRD Crossplane generates (``<plural>.<group>``)."""
        return f"{self.plural}.{self.group}"

    @property
    def offered_condition(self) -> str:
        """The XRD condition Crossplane sets once this API is served: ``Offered`` (claims) or ``Established``."""
        return "Established" if self.namespaced_xr else "Offered"

    @property
    def xrd_file(self) -> Path:
        """YAML of the XRD object."""
        return CROSSPLANE_DIR / self.folder / "xrd.yaml"

    @property
    def composition_file(self) -> Path | None:
        """YAML of the Composition that composes this API's XRs with the test bed's function, if any."""
        path = CROSSPLANE_DIR / self.folder / "composition.yaml"
        return path if path.is_file() else None

    @property
    def example_claim_file(self) -> Path:
        """YAML of one example claim or XR (no namespace set), for tests and manual checks."""
        return CROSSPLANE_DIR / self.folder / ("xr.yaml" if self.namespaced_xr else "claim.yaml")


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
BUCKET = ClaimApi(
    folder="bucket", group="storage.example.org", kind="Bucket",
    plural="buckets", versions=("v1alpha1",), storage_version="v1alpha1", namespaced_xr=True,
)
QUEUE = ClaimApi(
    folder="queue", group="messaging.example.org", kind="Queue",
    plural="queues", versions=("v1",), storage_version="v1", namespaced_xr=True,
)

#: APIs present in the control plane right after ``cluster up``.
SEEDED: tuple[ClaimApi, ...] = (KUBERNETES_CLUSTER, POSTGRESQL_INSTANCE, BUCKET)
#: APIs left out on purpose, for tests that add an API later.
UNSEEDED: tuple[ClaimApi, ...] = (REDIS_CACHE, QUEUE)


def _namespace_manifest(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _apply(kubeconfig: Path, *files: Path, extra_stdin: str | None = None) -> None:
    args = ["apply", "--server-side", f"--field-manager={_FIELD_MANAGER}", "--force-conflicts"]
    for f in files:
        args += ["-f", str(f)]
    if extra_stdin is not None:
        args += ["-f", "-"]
    kubectl(kubeconfig, *args, input=extra_stdin)


def _conditions(obj: dict[str, object]) -> dict[str, str]:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return {str(c.get("type")): str(c.get("status")) for c in conditions or [] if isinstance(c, dict)}


def _files(api: ClaimApi) -> list[Path]:
    return [api.xrd_file, *([api.composition_file] if api.composition_file else [])]


def apply(kubeconfig: Path, claim_namespace: str, apis: tuple[ClaimApi, ...] = SEEDED) -> None:
    """Apply the claim namespace, the XRDs of ``apis`` and their Compositions; Crossplane does the rest."""
    _apply(kubeconfig, *[f for a in apis for f in _files(a)], extra_stdin=_namespace_manifest(claim_namespace))


def offered(kubeconfig: Path, apis: tuple[ClaimApi, ...] = SEEDED) -> bool:
    """True once Crossplane serves every API of ``apis`` (one kubectl call, for polling)."""
    found = json.loads(kubectl(kubeconfig, "get", "compositeresourcedefinitions", "-o", "json").stdout)
    by_name = {x["metadata"]["name"]: _conditions(x) for x in found.get("items") or []}
    return all(by_name.get(a.xrd_name, {}).get(a.offered_condition) == "True" for a in apis)


def apply_claim_api(kubeconfig: Path, api: ClaimApi) -> None:
    """Add one API to a running control plane and wait until Crossplane serves it."""
    _apply(kubeconfig, *_files(api))
    kubectl(
        kubeconfig, "wait", f"--for=condition={api.offered_condition}", f"--timeout={_WAIT_S}s",
        f"compositeresourcedefinition/{api.xrd_name}",
    )
    kubectl(kubeconfig, "wait", "--for=condition=Established", f"--timeout={_WAIT_S}s", f"crd/{api.crd_name}")


def delete_claim_api(kubeconfig: Path, api: ClaimApi) -> None:
    """Remove an API again: delete its XRD (and Composition) and wait until Crossplane removed its CRD."""
    if api.composition_file:
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(api.composition_file))
    kubectl(
        kubeconfig, "delete", "--ignore-not-found", "--wait=true", f"--timeout={_WAIT_S}s",
        "compositeresourcedefinition", api.xrd_name,
    )
    kubectl(kubeconfig, "wait", "--for=delete", f"--timeout={_WAIT_S}s", f"crd/{api.crd_name}", check=False)
    if kubectl(kubeconfig, "get", "crd", api.crd_name, check=False).returncode == 0:
        raise RuntimeError(f"CRD {api.crd_name} still exists {_WAIT_S}s after its XRD {api.xrd_name} was deleted")
