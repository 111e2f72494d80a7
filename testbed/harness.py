"""The object e2e tests get from the ``testbed`` fixture: both clusters plus a kubectl helper.

Kept in the testbed package (not in conftest) so scripts and other test suites can build the
same handle from ``.dev/testbed.json`` with ``Testbed.from_state_file()``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import APP_CLUSTER, CONTROL_PLANE, STATE_FILE
from testbed.kube import kubectl as _kubectl
from testbed.state import ClusterState, TestbedState, load


@dataclass(frozen=True)
class Testbed:
    """A running test bed: ``state`` as recorded in testbed.json, and whether we started it."""

    __test__ = False  # not a pytest test class despite the name

    state: TestbedState
    started_here: bool = False

    @classmethod
    def from_state_file(cls, path: Path = STATE_FILE) -> Testbed:
        """Handle for an already running test bed (raises if there is none)."""
        state = load(path)
        if state is None:
            raise RuntimeError(f"no test bed state at {path}: run `python -m testbed.cluster up`")
        return cls(state)

    @property
    def control_plane(self) -> ClusterState:
        """The Crossplane-shaped control plane."""
        return self.state.control_plane

    @property
    def app_cluster(self) -> ClusterState:
        """The app cluster (aggregation layer configured)."""
        return self.state.app_cluster

    @property
    def claim_namespace(self) -> str:
        """Control-plane namespace holding the claims of all app clusters."""
        return self.state.claim_namespace

    def cluster(self, name: str) -> ClusterState:
        """A cluster by name: ``testbed.CONTROL_PLANE`` or ``testbed.APP_CLUSTER``."""
        if name not in (CONTROL_PLANE, APP_CLUSTER):
            raise KeyError(f"unknown cluster {name!r}; use {CONTROL_PLANE!r} or {APP_CLUSTER!r}")
        return self.state.clusters[name]

    def kubectl(
        self, cluster: str, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against ``cluster``; raises KubectlError (with stderr) on failure unless
        ``check=False``."""
        return _kubectl(self.cluster(cluster).kubeconfig, *args, input=input, check=check, timeout=timeout)

    def kubectl_json(self, cluster: str, *args: str, input: str | None = None) -> Any:
        """Run kubectl with ``-o json`` appended and return the parsed output."""
        return json.loads(self.kubectl(cluster, *args, "-o", "json", input=input).stdout)
