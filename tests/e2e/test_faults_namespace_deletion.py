"""Issue 9, an app namespace deleted while the connector is down.

What happens (README, "Faults"): the app cluster's namespace controller must delete every
namespaced object in the namespace before the namespace goes, claims included, and it finds
the claim kinds through discovery. While the connector is down the aggregator still lists the
claim kinds (from its discovery cache) but answers their deletecollection with 503, so the
controller records ``NamespaceDeletionContentFailure`` ("N remaining: the server is currently
unable to handle the request"; ``NamespaceDeletionDiscoveryFailure`` once discovery drops the
group) and keeps the namespace ``Terminating``: it never finishes without the claims. The
claims stay untouched in the control plane meanwhile. Once the connector is back the
controller's next retry deletes them through it (and so in the control plane), and the
namespace goes away by itself.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from connector_fixtures import connected, wait_available
from fault_tools import GROUP, PLURAL, VERSION, claim_body

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE
from testbed.harness import Testbed
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-ns-deleted"
CLUSTER_ID = "e2e-namespace-deletion"
APISERVICE = f"{VERSION}.{GROUP}"
CLAIMS = 3
#: How long the namespace may take to go once the connector is back (the namespace controller
#: retries with a growing backoff; measured in seconds, see the README).
GONE_AFTER_RECOVERY_S = 120.0


def namespace(tb: Testbed) -> dict[str, Any] | None:
    found = tb.kubectl(APP_CLUSTER, "get", "namespace", NAMESPACE, "-o", "json", check=False)
    return yaml.safe_load(found.stdout) if found.returncode == 0 else None


def deletion_blocked(tb: Testbed) -> str:
    """The namespace controller's condition that says it could not finish (empty if none yet)."""
    ns = namespace(tb)
    assert ns is not None, "the namespace went away while the connector was down"
    assert ns["status"]["phase"] == "Terminating", ns["status"]
    for condition in ns["status"].get("conditions") or []:
        if (
            condition["type"] in ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionContentFailure")
            and condition["status"] == "True"
        ):
            return f"{condition['type']}: {condition['message']}"
    return ""


def stored_claims(tb: Testbed) -> list[dict[str, Any]]:
    selector = contract.scope_selector(CLUSTER_ID, NAMESPACE)
    return list(tb.kubectl_json(CONTROL_PLANE, "get", PLURAL, "-n", tb.claim_namespace, "-l", selector)["items"])


@pytest.mark.timeout(300)
def test_namespace_deleted_while_connector_is_down_goes_once_it_is_back(testbed: Testbed) -> None:
    testbed.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE)
    with connected(testbed, cluster_id=CLUSTER_ID) as proc:
        wait_available(testbed, [APISERVICE])
        for i in range(CLAIMS):
            testbed.kubectl(APP_CLUSTER, "apply", "-f", "-", input=yaml.safe_dump(claim_body(f"claim-{i}", NAMESPACE)))
        before = {c["metadata"]["uid"] for c in stored_claims(testbed)}
        assert len(before) == CLAIMS

        assert proc.proc is not None
        proc.proc.kill()
        proc.proc.wait(10)
        testbed.kubectl(APP_CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false")
        blocked = eventually(
            lambda: deletion_blocked(testbed), timeout=90, what="the namespace controller to report it cannot finish"
        )
        assert "unable to handle the request" in blocked or GROUP in blocked, blocked
        # The controller keeps trying; the namespace and the claims stay while the connector is down.
        assert {c["metadata"]["uid"] for c in stored_claims(testbed)} == before
        assert deletion_blocked(testbed)

        proc.start()
        back = time.monotonic()
        eventually(lambda: namespace(testbed) is None, timeout=GONE_AFTER_RECOVERY_S, every=1.0,
                   what="the namespace to go once the connector is back")  # fmt: skip
        took = time.monotonic() - back
        assert stored_claims(testbed) == []
    print(f"[figure] namespace deleted while the connector was down: gone {took:.1f}s after the connector came back")
