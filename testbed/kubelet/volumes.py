"""Filling a pod's volumes and environment as the kubelet does, from the app cluster's API.

Secrets and ConfigMaps are read from the API, ServiceAccount tokens come from the TokenRequest
API, the namespace and other fields from the downward API; the automatic ``kube-api-access``
volume (token, the cluster CA from ``kube-root-ca.crt``, namespace) is added unless the pod
opts out. Files are written the kubelet's way: a timestamped folder behind a ``..data``
symlink swapped atomically, so a refreshed token never shows up half-written.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.kubelet.api import Api, ApiError
from testbed.kubelet.spec import SERVICE_ACCOUNT_DIR, Mount, PodTemplate, SpecError

RawObject = dict[str, Any]

#: The kubelet's kube-api-access token lifetime; it refreshes at 80% of it.
TOKEN_SECONDS = 3607
REFRESH_AT = 0.8
AUTO_VOLUME = "kube-api-access"


class ConfigError(RuntimeError):
    """CreateContainerConfigError: a Secret, ConfigMap or key the pod needs is missing."""


@dataclass
class Filled:
    """Host folders to bind-mount, the container's environment, and when tokens need refreshing."""

    mounts: list[tuple[Path, str, bool]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    refresh_due: float = float("inf")  # time.monotonic() at which a projected token must be renewed


def _write_atomic(folder: Path, files: Mapping[str, bytes], mode: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    stamp = folder / f"..{time.time_ns()}"
    stamp.mkdir(mode=0o755)
    for rel, data in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    link = folder / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(stamp.name)
    link.replace(folder / "..data")
    for top in {rel.split("/", 1)[0] for rel in files}:
        entry = folder / top
        if not entry.is_symlink():
            entry.symlink_to(f"..data/{top}")
    for old in folder.glob("..[0-9]*"):
        if old != stamp:
            shutil.rmtree(old, ignore_errors=True)


def _decoded(obj: RawObject) -> dict[str, bytes]:
    out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()} if obj.get("kind") == "Secret" else {}
    if obj.get("kind") == "ConfigMap":
        out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


class Filler:
    """Fills one pod's volumes under ``root`` and computes its environment."""

    def __init__(self, api: Api, pod: PodTemplate, root: Path, *, pod_ip: str) -> None:
        self.api, self.pod, self.root, self.pod_ip = api, pod, root, pod_ip

    def _object(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        try:
            fetch = self.api.secret if kind == "Secret" else self.api.config_map
            return _decoded(fetch(self.pod.namespace, name))
        except ApiError as e:
            if e.status == 404:
                if optional:
                    return None
                raise ConfigError(f'{kind.lower()} "{name}" not found in namespace {self.pod.namespace}') from None
            raise

    def _keyed(self, kind: str, source: RawObject) -> dict[str, bytes]:
        name = source.get("secretName") or source.get("name") or ""
        optional = bool(source.get("optional"))
        data = self._object(kind, name, optional)
        if data is None:
            return {}
        items = source.get("items")
        if not items:
            return data
        out = {}
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise ConfigError(f"couldn't find key {item['key']} in {kind} {self.pod.namespace}/{name}")
            out[item["path"]] = data[item["key"]]
        return out

    def field_value(self, path: str) -> str:
        """A downward-API field of this pod."""
        pod = self.pod
        simple = {
            "metadata.name": pod.pod_name,
            "metadata.namespace": pod.namespace,
            "spec.serviceAccountName": pod.service_account,
            "spec.nodeName": pod.node_name,
            "status.podIP": self.pod_ip,
            "status.hostIP": "127.0.0.1",
        }
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            return (pod.labels if match.group(1) == "labels" else pod.annotations).get(match.group(2), "")
        raise SpecError(f"downward API field {path!r} is not supported by the runner")

    def _projected(self, volume: RawObject) -> tuple[dict[str, bytes], float]:
        files: dict[str, bytes] = {}
        refresh = float("inf")
        for source in volume.get("sources") or []:
            if "serviceAccountToken" in source:
                t = source["serviceAccountToken"]
                seconds = int(t.get("expirationSeconds", 3600))
                audiences = [t["audience"]] if t.get("audience") else []
                try:
                    token = self.api.token(
                        self.pod.namespace, self.pod.service_account, audiences=audiences, seconds=seconds
                    )
                except ApiError as e:
                    raise ConfigError(f"TokenRequest for serviceaccount {self.pod.service_account}: {e}") from None
                files[t["path"]] = token.encode()
                refresh = min(refresh, time.monotonic() + REFRESH_AT * seconds)
            elif "secret" in source:
                files.update(self._keyed("Secret", source["secret"]))
            elif "configMap" in source:
                files.update(self._keyed("ConfigMap", source["configMap"]))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    files[item["path"]] = self.field_value(item["fieldRef"]["fieldPath"]).encode()
            else:
                raise SpecError(f"projected source {sorted(source)} is not supported by the runner")
        return files, refresh

    def volumes(self) -> tuple[dict[str, RawObject], list[Mount]]:
        """The pod's volumes and mounts, plus kube-api-access as the kubelet adds it."""
        volumes, mounts = dict(self.pod.volumes), list(self.pod.mounts)
        if self.pod.automount_token and not any(m.path == SERVICE_ACCOUNT_DIR for m in mounts):
            volumes[AUTO_VOLUME] = {
                "name": AUTO_VOLUME,
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                            }
                        },
                    ]
                },
            }
            mounts.append(Mount(AUTO_VOLUME, SERVICE_ACCOUNT_DIR, True))
        return volumes, mounts

    def fill(self) -> Filled:
        """Write every mounted volume and resolve the environment (ConfigError when something is missing)."""
        filled = Filled()
        volumes, mounts = self.volumes()
        for mount in mounts:
            volume = volumes.get(mount.volume)
            if volume is None:
                raise SpecError(f"volumeMount {mount.volume!r} names no volume")
            folder = self.root / "volumes" / mount.volume
            read_only = mount.read_only
            if "emptyDir" in volume:
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o777)
            elif "secret" in volume:
                secret = volume["secret"]
                _write_atomic(folder, self._keyed("Secret", secret), secret.get("defaultMode", 0o644))
                read_only = True
            elif "configMap" in volume:
                cm = volume["configMap"]
                _write_atomic(folder, self._keyed("ConfigMap", cm), cm.get("defaultMode", 0o644))
                read_only = True
            elif "projected" in volume:
                files, refresh = self._projected(volume["projected"])
                _write_atomic(folder, files, volume["projected"].get("defaultMode", 0o644))
                filled.refresh_due = min(filled.refresh_due, refresh)
                read_only = True
            else:
                raise SpecError(f"volume {mount.volume!r} of type {sorted(set(volume) - {'name'})} is not supported")
            filled.mounts.append((folder, mount.path, read_only))
        filled.env = self.environment()
        return filled

    def refresh_tokens(self) -> float:
        """Rewrite projected volumes (new tokens); returns when the next refresh is due."""
        volumes, mounts = self.volumes()
        due = float("inf")
        for mount in mounts:
            volume = volumes[mount.volume]
            if "projected" in volume:
                files, refresh = self._projected(volume["projected"])
                mode = volume["projected"].get("defaultMode", 0o644)
                _write_atomic(self.root / "volumes" / mount.volume, files, mode)
                due = min(due, refresh)
        return due

    def environment(self) -> dict[str, str]:
        """The container's environment: the kubelet's service variables, then the pod's env in order."""
        host, port = self.api.host, str(self.api.port)
        env = {
            "HOSTNAME": self.pod.pod_name,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }
        for var in self.pod.env:
            name, source = var["name"], var.get("valueFrom")
            if source is None:
                env[name] = expand(str(var.get("value", "")), env)
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind, ref = ("Secret", source["secretKeyRef"]) if "secretKeyRef" in source else (
                    "ConfigMap", source["configMapKeyRef"])
                data = self._object(kind, ref["name"], bool(ref.get("optional")))
                if data is None:
                    continue
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {self.pod.namespace}/{ref['name']}")
                env[name] = data[ref["key"]].decode()
            elif "fieldRef" in source:
                env[name] = self.field_value(source["fieldRef"]["fieldPath"])
            else:
                raise SpecError(f"env {name}: {sorted(source)} is not supported by the runner")
        return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, others stay."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def clean(root: Path) -> None:
    """Remove what a stopped pod was given: its volumes and its environment file (Secrets)."""
    shutil.rmtree(root / "volumes", ignore_errors=True)
    (root / "env").unlink(missing_ok=True)
    os.makedirs(root, exist_ok=True)
