"""Claims seen from both sides of the connector, for the tests that run whole programs.

Apply a claim through the app cluster (``apply_claim``), then look up its control-plane copy
under the hashed name (``cp_claim``) and check whose it is (``is_labelled``, ``is_released``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp_connector.core import contract
from testbed import APP_CLUSTER, CONTROL_PLANE, REPO_ROOT, aggregation
from testbed.harness import Testbed
from testbed.waiting import eventually

CLUSTER_CLAIM = REPO_ROOT / "testbed" / "crossplane" / "kubernetescluster" / "claim.yaml"
DB_CLAIM = REPO_ROOT / "testbed" / "crossplane" / "postgresqlinstance" / "claim.yaml"
CLUSTER_RESOURCE = "kubernetesclusters.k8s.starter.org"
DB_RESOURCE = "postgresqlinstances.db.example.org"


def kube_system_uid(testbed: Testbed) -> str:
    """The app cluster's default cluster ID."""
    return testbed.kubectl(APP_CLUSTER, "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout


def apiservice_exists(testbed: Testbed, name: str) -> bool:
    return testbed.kubectl(APP_CLUSTER, "get", "apiservice", name, check=False).returncode == 0


def wait_available(testbed: Testbed, name: str, timeout: float = 60) -> None:
    """Wait until the APIService is Available and kubectl can map its kinds (``aggregation.discovered``)."""
    testbed.kubectl(
        APP_CLUSTER, "wait", "--for=condition=Available", f"--timeout={int(timeout)}s", f"apiservice/{name}"
    )
    aggregation.wait_discovered(testbed, [name], timeout=timeout)


def apply_claim(testbed: Testbed, namespace: str, file: Path, prefix: str) -> None:
    """Create a claim through the app cluster (retrying while the app cluster's discovery catches up)."""
    testbed.kubectl(APP_CLUSTER, "create", "namespace", namespace, check=False)
    text = file.read_text().replace("name: my-", f"name: {prefix}-", 1)

    def applied() -> bool:
        done = testbed.kubectl(APP_CLUSTER, "apply", "-n", namespace, "-f", "-", input=text, check=False)
        assert done.returncode == 0, done.stderr
        return True

    eventually(applied, timeout=60, every=1, what=f"applying {file.name} through the app cluster")


def cp_claim(
    testbed: Testbed,
    resource: str,
    ref: contract.AppRef,
    flavor: contract.Flavor = contract.Flavor.CLAIM,
    *,
    namespace: str | None = None,
) -> dict[str, Any] | None:
    """The control-plane claim (or namespaced XR) for an app-side one (in the test bed's claim
    namespace by default), or None."""
    done = testbed.kubectl(
        CONTROL_PLANE, "get", resource, contract.control_plane_name(ref, flavor=flavor), "-n",
        namespace or testbed.claim_namespace, "-o", "json", check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    claim: dict[str, Any] = json.loads(done.stdout)
    return claim


def delete_cp_claim(testbed: Testbed, resource: str, ref: contract.AppRef, namespace: str | None = None) -> None:
    """Remove a test's claim from the control plane (cleanup)."""
    testbed.kubectl(
        CONTROL_PLANE, "delete", resource, contract.control_plane_name(ref), "-n", namespace or testbed.claim_namespace,
        "--ignore-not-found", "--wait=false",
    )  # fmt: skip


def is_labelled(claim: dict[str, Any], ref: contract.AppRef) -> bool:
    return contract.app_ref_of(claim) == ref


def is_released(claim: dict[str, Any], ref: contract.AppRef) -> bool:
    annotations = claim["metadata"].get("annotations") or {}
    labels = claim["metadata"].get("labels") or {}
    return all(annotations.get(k) == v for k, v in contract.release_annotations(ref).items()) and not any(
        k in labels for k in contract.OWNERSHIP_LABELS
    )


#: Kinds an McpConnector install creates in the app cluster.
INSTALL_KINDS = (
    "apiservices,services,secrets,serviceaccounts,deployments,poddisruptionbudgets,"
    "clusterroles,clusterrolebindings,roles,rolebindings,"
    "validatingadmissionpolicies,validatingadmissionpolicybindings"
)


def remove_install(testbed: Testbed, instance: str) -> None:
    """Delete what an install left in the app cluster after a failed test could not destroy its stack,
    so later tests do not meet an APIService nobody serves (found by the component's labels)."""
    testbed.kubectl(
        APP_CLUSTER, "delete", INSTALL_KINDS, "--all-namespaces", "--ignore-not-found", "--wait=false",
        "-l", f"app.kubernetes.io/name=mcp-connector,app.kubernetes.io/instance={instance}",
    )  # fmt: skip


def remove_released_claims(testbed: Testbed) -> int:
    """Delete the released claims left in the claim namespace (no app cluster owns them any more);
    how many. Left to pile up, Crossplane keeps reconciling them and slows the control plane."""
    released = f"{contract.RELEASED_ANNOTATION_PREFIX}app-cluster"
    removed = 0
    for resource in (CLUSTER_RESOURCE, DB_RESOURCE):
        listed = testbed.kubectl_json(CONTROL_PLANE, "get", resource, "-n", testbed.claim_namespace)
        names = [
            item["metadata"]["name"]
            for item in listed["items"]
            if released in (item["metadata"].get("annotations") or {})
            and contract.APP_CLUSTER_LABEL not in (item["metadata"].get("labels") or {})
        ]
        if names:
            testbed.kubectl(
                CONTROL_PLANE, "delete", resource, "-n", testbed.claim_namespace, "--wait=false", "--ignore-not-found",
                *names,
            )  # fmt: skip
            removed += len(names)
    return removed


def crossplane_secret_and_copy(
    testbed: Testbed, source: str, source_namespace: str, app_namespace: str, name: str
) -> dict[str, Any]:
    """Wait for the connection Secret ``source`` Crossplane writes in the control plane (controlled
    by its claim), then for the connector's copy ``name`` in the app namespace holding its data;
    return the copy. A Secret written by hand would race Crossplane's own."""
    written = eventually(
        lambda: testbed.kubectl_json(CONTROL_PLANE, "get", "secret", source, "-n", source_namespace),
        timeout=60, what="Crossplane's connection Secret for the claim",
    )  # fmt: skip

    def copied() -> dict[str, Any] | None:
        found = testbed.kubectl_json(APP_CLUSTER, "get", "secret", name, "-n", app_namespace)
        return found if found["data"] == written["data"] else None

    copy: dict[str, Any] = eventually(copied, what="the connection Secret's copy, with Crossplane's data")
    return copy
