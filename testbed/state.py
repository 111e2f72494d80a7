"""The machine-readable description of a running test bed (``.dev/testbed.json``).

Tests, scripts and other engineers' tools read this file instead of guessing ports or paths:
ports are chosen freshly on every ``up``. Paths are absolute so the file can be used from any
working directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import APP_CLUSTER, CLAIM_NAMESPACE, CONTROL_PLANE, STATE_FILE

#: Bumped when a field changes meaning; readers refuse other versions instead of misreading.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ClusterState:
    """One local cluster: where its apiserver listens, how to authenticate, what runs it."""

    name: str
    apiserver_url: str  # https://127.0.0.1:<port>
    kubeconfig: Path  # admin kubeconfig with embedded credentials (O=system:masters)
    ca_cert: Path  # cluster CA: signs the apiserver serving cert and client certs
    ca_key: Path
    admin_cert: Path
    admin_key: Path
    etcd_url: str
    pids: dict[str, int]  # component -> pid; each is its own process-group leader
    logs: dict[str, Path]  # component -> log file
    # Aggregation layer (app cluster only): the CA the aggregator's client cert chains to,
    # and that client cert itself, so tests can play the aggregator against a local server.
    front_proxy_ca_cert: Path | None = None
    front_proxy_ca_key: Path | None = None
    proxy_client_cert: Path | None = None
    proxy_client_key: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict with paths as strings."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif key == "logs":
                out[key] = {k: str(v) for k, v in value.items()}
            else:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        """Inverse of to_json."""
        paths = {
            "kubeconfig", "ca_cert", "ca_key", "admin_cert", "admin_key",
            "front_proxy_ca_cert", "front_proxy_ca_key", "proxy_client_cert", "proxy_client_key",
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in paths:
                kwargs[key] = Path(value) if value is not None else None
            elif key == "logs":
                kwargs[key] = {k: Path(v) for k, v in value.items()}
            elif key == "pids":
                kwargs[key] = {k: int(v) for k, v in value.items()}
            else:
                kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class TestbedState:
    """Both clusters plus shared facts (claim namespace)."""

    __test__ = False  # not a pytest test class despite the name

    clusters: dict[str, ClusterState]
    claim_namespace: str = CLAIM_NAMESPACE
    version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def control_plane(self) -> ClusterState:
        """The Crossplane-shaped control plane (claim CRDs, claim namespace)."""
        return self.clusters[CONTROL_PLANE]

    @property
    def app_cluster(self) -> ClusterState:
        """The app cluster with the aggregation layer configured."""
        return self.clusters[APP_CLUSTER]

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly dict; the layout documented in testbed/README.md."""
        return {
            "version": self.version,
            "claim_namespace": self.claim_namespace,
            "clusters": {name: c.to_json() for name, c in self.clusters.items()},
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestbedState:
        """Inverse of to_json; refuses other schema versions."""
        if data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"testbed.json version {data.get('version')!r}, expected {SCHEMA_VERSION}")
        return cls(
            clusters={n: ClusterState.from_json(c) for n, c in data["clusters"].items()},
            claim_namespace=data["claim_namespace"],
            version=data["version"],
            extra=data.get("extra", {}),
        )


def load(path: Path = STATE_FILE) -> TestbedState | None:
    """Read the state file; None if there is none (the test bed was never started or is down)."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    return TestbedState.from_json(json.loads(raw))


def save(state: TestbedState, path: Path = STATE_FILE) -> None:
    """Write the state file atomically so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
