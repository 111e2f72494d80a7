"""Local test bed: two real Kubernetes control planes run as processes, plus Pulumi helpers.

The project's end-to-end tests need a Crossplane control plane and an app cluster with the
aggregation layer, but our machines have no container runtime. So the test bed runs etcd,
kube-apiserver, kube-controller-manager and real Crossplane core as plain local processes
(see ``testbed.cluster`` and ``testbed.crossplane_core``), applies example XRDs and
Compositions (``testbed/crossplane``), and drives Pulumi offline through the Automation API
(``testbed.pulumi_env``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Namespace in the control plane where the connector creates claims. Seeded by ``cluster up``
#: so every test and script agrees on one name.
CLAIM_NAMESPACE = "mcp-claims"

#: Repository root; the test bed keeps all its state under ``REPO_ROOT/.dev`` (git-ignored).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Per-checkout scratch folder: tool links (``bin/``), Pulumi home, and by default the test bed.
DEV_DIR = REPO_ROOT / ".dev"

#: Where a test bed keeps its state, logs, kubeconfigs and data. ``MCP_TESTBED_DIR`` selects
#: another folder, so a second, independent test bed can run next to a developer's (e.g. the
#: e2e suite while ``make dev-up`` is serving a connector). Read once, at import.
STATE_DIR = Path(os.environ["MCP_TESTBED_DIR"]).resolve() if os.environ.get("MCP_TESTBED_DIR") else DEV_DIR

#: Machine-readable description of a running test bed, written by ``cluster up``.
STATE_FILE = STATE_DIR / "testbed.json"

#: Names of the two clusters, in start order.
CONTROL_PLANE = "control-plane"
APP_CLUSTER = "app-cluster"
CLUSTERS = (CONTROL_PLANE, APP_CLUSTER)

__all__ = [
    "APP_CLUSTER",
    "CLAIM_NAMESPACE",
    "CLUSTERS",
    "CONTROL_PLANE",
    "DEV_DIR",
    "REPO_ROOT",
    "STATE_DIR",
    "STATE_FILE",
]
