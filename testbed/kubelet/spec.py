"""What the runner needs from a Pod (made by the ReplicaSet controller), read once and typed.

Only the parts of a Pod this test bed can honour are read; anything else that would change
how the container runs (a second container, host ports, init containers) is refused with a
message, so a test never passes on a pod that was run differently from its spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

RawObject = dict[str, Any]

#: Where the kubelet mounts the ServiceAccount token, CA and namespace (kube-api-access volume).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class SpecError(ValueError):
    """The Pod template asks for something the runner cannot do."""


@dataclass(frozen=True)
class Probe:
    """An httpGet probe with the kubelet's defaults."""

    path: str
    port: int
    scheme: str
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


@dataclass(frozen=True)
class Mount:
    """One volumeMount of the container."""

    volume: str
    path: str
    read_only: bool


@dataclass(frozen=True)
class PodTemplate:
    """The container to run and everything around it."""

    namespace: str
    name: str  # the Pod's name (HOSTNAME, metadata.name)
    uid: str
    node_name: str
    revision: str  # the ReplicaSet's pod-template-hash (a digest of the template when there is none)
    labels: dict[str, str]
    annotations: dict[str, str]
    service_account: str
    automount_token: bool
    container: str  # the container's name
    image: str
    command: list[str] | None
    args: list[str]
    env: list[RawObject]
    ports: dict[str, int]  # container port by name (and by its number as text)
    mounts: list[Mount]
    volumes: dict[str, RawObject]
    run_as_user: int | None
    run_as_group: int | None
    read_only_root: bool
    drop_all_capabilities: bool
    no_new_privileges: bool
    readiness: Probe | None
    liveness: Probe | None
    grace_seconds: int

    @property
    def pod_name(self) -> str:
        """The Pod's name."""
        return self.name


def _probe(raw: RawObject | None, ports: dict[str, int]) -> Probe | None:
    if not raw:
        return None
    get = raw.get("httpGet")
    if not get:
        raise SpecError(f"only httpGet probes are supported, got {sorted(raw)}")
    port = get["port"]
    if str(port) not in ports and not isinstance(port, int):
        raise SpecError(f"probe port {port!r} names no container port")
    return Probe(
        path=get.get("path", "/"),
        port=ports.get(str(port), port if isinstance(port, int) else 0),
        scheme=get.get("scheme", "HTTP").upper(),
        initial_delay=float(raw.get("initialDelaySeconds", 0)),
        period=float(raw.get("periodSeconds", 10)),
        timeout=float(raw.get("timeoutSeconds", 1)),
        success_threshold=int(raw.get("successThreshold", 1)),
        failure_threshold=int(raw.get("failureThreshold", 3)),
    )


def from_deployment(deployment: RawObject) -> PodTemplate:
    """Read the Pod template of ``deployment`` as a Pod made from it would be read."""
    meta, template = deployment["metadata"], deployment["spec"]["template"]
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    name = f"{meta['name']}-{digest[:10]}"
    pod_meta = {**(template.get("metadata") or {}), "namespace": meta["namespace"], "name": name}
    return from_pod({"metadata": pod_meta, "spec": template.get("spec") or {}})


def from_pod(pod: RawObject) -> PodTemplate:
    """Read ``pod``; SpecError names what cannot be run."""
    meta = pod["metadata"]
    spec: RawObject = pod.get("spec") or {}
    containers = spec.get("containers") or []
    unsupported = [k for k in ("initContainers", "hostPID", "hostIPC") if spec.get(k)]
    if len(containers) != 1 or unsupported:
        raise SpecError(f"the runner runs pods of exactly one container (got {len(containers)}; {unsupported})")
    c = containers[0]
    ports: dict[str, int] = {}
    for p in c.get("ports") or []:
        ports[str(p["containerPort"])] = int(p["containerPort"])
        if p.get("name"):
            ports[p["name"]] = int(p["containerPort"])
    pod_sc: RawObject = spec.get("securityContext") or {}
    sc: RawObject = c.get("securityContext") or {}
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) and user in (None, 0):
        # The kubelet checks the image's user then; the runner only runs pods that name theirs.
        raise SpecError("runAsNonRoot is set but no non-zero runAsUser is given")
    labels = dict(meta.get("labels") or {})
    revision = labels.get("pod-template-hash") or hashlib.sha256(
        json.dumps({"metadata": {"labels": labels, "annotations": meta.get("annotations")}, "spec": spec},
                   sort_keys=True).encode()).hexdigest()  # fmt: skip
    return PodTemplate(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        node_name=spec.get("nodeName") or "",
        revision=revision,
        labels=labels,
        annotations=dict(meta.get("annotations") or {}),
        service_account=spec.get("serviceAccountName") or "default",
        automount_token=spec.get("automountServiceAccountToken", True) is not False,
        container=c.get("name") or "",
        image=c["image"],
        command=c.get("command"),
        args=[str(a) for a in c.get("args") or []],
        env=list(c.get("env") or []),
        ports=ports,
        mounts=[Mount(m["name"], m["mountPath"], bool(m.get("readOnly"))) for m in c.get("volumeMounts") or []],
        volumes={v["name"]: v for v in spec.get("volumes") or []},
        run_as_user=user,
        run_as_group=group,
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        drop_all_capabilities="ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        readiness=_probe(c.get("readinessProbe"), ports),
        liveness=_probe(c.get("livenessProbe"), ports),
        grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
    )
