"""Pointing an app-cluster APIService at a process on this host.

Without a kubelet the aggregated server runs as a local process. The aggregator (with
``--enable-aggregator-routing`` off) resolves an ``ExternalName`` Service to its
``externalName`` and the Service port, so ``externalName: localhost`` + the process's port
reaches it. It still verifies TLS for ``<service>.<namespace>.svc`` against the APIService
``caBundle``, so the local server's cert must carry that name.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.kube import https_get
from testbed.pki import CertKey, issue
from testbed.waiting import eventually

#: The discovery document kubectl asks ``/apis`` for, and maps kinds to resources with.
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def service_dns_name(service: str, namespace: str) -> str:
    """The TLS server name the aggregator verifies for a Service."""
    return f"{service}.{namespace}.svc"


def serving_cert(ca: CertKey, service: str, namespace: str) -> CertKey:
    """A serving cert valid for the aggregator (service DNS name) and for direct local calls."""
    return issue(
        ca, service_dns_name(service, namespace), server=True,
        dns_names=[service_dns_name(service, namespace), "localhost"], ip_addresses=["127.0.0.1"],
    )


def apiservice_name(group: str, version: str) -> str:
    """APIService objects are named ``<version>.<group>``."""
    return f"{version}.{group}"


def manifests(
    group: str, version: str, *, service: str, namespace: str, port: int, ca_bundle: bytes,
    group_priority_minimum: int = 1000, version_priority: int = 15,
) -> list[dict[str, Any]]:
    """Namespace, ExternalName Service and APIService for one group/version."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {
                "type": "ExternalName", "externalName": "localhost",
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": apiservice_name(group, version)},
            "spec": {
                "group": group, "version": version,
                "service": {"namespace": namespace, "name": service, "port": port},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": group_priority_minimum, "versionPriority": version_priority,
            },
        },
    ]


def register(
    tb: Testbed, group: str, version: str, *, service: str, namespace: str, port: int, ca_bundle: bytes,
    wait_available_s: float | None = 60,
) -> None:
    """Apply the objects in the app cluster and (by default) wait until the aggregator reports
    the APIService Available, i.e. it reached the server and got its discovery document."""
    doc = {"apiVersion": "v1", "kind": "List",
           "items": manifests(group, version, service=service, namespace=namespace, port=port, ca_bundle=ca_bundle)}
    tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(doc))
    if wait_available_s is not None:
        tb.kubectl(
            APP_CLUSTER, "wait", "--for=condition=Available", f"--timeout={int(wait_available_s)}s",
            f"apiservice/{apiservice_name(group, version)}",
        )


def discovered(tb: Testbed, name: str) -> bool:
    """True once the app cluster's aggregated discovery lists resources for APIService ``name``.

    The aggregator updates an APIService's Available condition and its discovery document apart:
    its first fetch of the resources, made while the APIService was not yet Available, got a 503
    and left the version empty, and it fetches again only after Available turned True. Right after
    ``kubectl wait --for=condition=Available`` kubectl may therefore not know the kinds yet
    ("no matches for kind", "doesn't have a resource type").
    """
    version, group = name.split(".", 1)
    app = tb.cluster(APP_CLUSTER)
    status, body = https_get(
        f"{app.apiserver_url}/apis", ca_cert=app.ca_cert, client_cert=app.admin_cert, client_key=app.admin_key,
        timeout=30, accept=AGGREGATED_DISCOVERY,
    )
    assert status == 200, body[:300]
    for found in json.loads(body).get("items") or []:
        if found.get("metadata", {}).get("name") == group:
            for v in found.get("versions") or []:
                if v.get("version") == version:
                    return bool(v.get("resources"))
    return False


def wait_discovered(tb: Testbed, names: list[str], timeout: float = 60) -> None:
    """Wait until kubectl can map the kinds of each APIService in ``names`` (see ``discovered``)."""
    eventually(
        lambda: all(discovered(tb, name) for name in names), timeout=timeout,
        what=f"the app cluster's discovery to list the resources of {', '.join(names)}",
    )


def unregister(tb: Testbed, group: str, version: str, *, service: str, namespace: str) -> None:
    """Delete the APIService first (so namespace deletion is not blocked by an unavailable
    API), then the Service; the namespace is left for the caller."""
    tb.kubectl(APP_CLUSTER, "delete", "--ignore-not-found", "apiservice", apiservice_name(group, version))
    tb.kubectl(APP_CLUSTER, "delete", "--ignore-not-found", "-n", namespace, "service", service)
