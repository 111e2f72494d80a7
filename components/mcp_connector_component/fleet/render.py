"""The manifests that connect a cluster without Pulumi: for ``kubectl apply``, Argo CD or Flux.

The objects come from the component's own builders (``manifests``, ``credentials``,
``tls``), so a rendered install and a Pulumi install differ only where they must:

* the connector runs with ``--manage-apiservices`` and keeps one APIService per claim API
  current itself (nothing else would when an XRD appears later), so its ClusterRole may
  manage APIServices and no APIService is rendered;
* the APIServices it creates are owned by its ClusterRole, so deleting the rendered
  objects (``kubectl delete -f``, a GitOps prune) garbage-collects them too;
* there is no disconnect hook: removing the manifests leaves every claim in the control
  plane with its labels (``Keep``); reconnecting with the same cluster ID brings them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from mcp_connector_component import kubeconfigs, manifests
from mcp_connector_component.credentials import DEFAULT_UPBOUND_HOST, upbound_kubeconfig
from mcp_connector_component.fleet.values import ConnectorValues
from mcp_connector_component.tls import generation, service_dns_names, serving_tls

#: ``app.kubernetes.io/managed-by`` of rendered objects (the component's say ``pulumi``).
MANAGED_BY = "mcp-connector-render"
NAME = "mcp-connector"


def credentials_kubeconfig(values: ConnectorValues) -> str | None:
    """The control-plane kubeconfig the credentials Secret holds (None: an existing Secret is used)."""
    if values.token is not None:
        return upbound_kubeconfig(
            host=values.host or DEFAULT_UPBOUND_HOST,
            account=values.account or "",
            control_plane=values.control_plane or "",
            token=values.token,
        )
    if values.control_plane_kubeconfig is None:
        return None
    # The same inlining the component does: the pod cannot read files or run exec plugins.
    return kubeconfigs.static_for_connector(values.control_plane_kubeconfig, what="control_plane_kubeconfig")


def objects(values: ConnectorValues, *, name: str = NAME, create_namespace: bool = False) -> list[manifests.RawObject]:
    """Every object of a connector install, in apply order (validate ``values`` first)."""
    names = manifests.Names(base=name, namespace=values.namespace, managed_by=MANAGED_BY)
    mode = manifests.parse_mode(values.mode)
    out: list[manifests.RawObject] = []
    if create_namespace:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": values.namespace, "labels": manifests.labels(names)},
            }
        )
    kubeconfig = credentials_kubeconfig(values)
    credentials_name = values.control_plane_secret or names.credentials_secret
    if kubeconfig is not None:
        out.append(manifests.credentials_secret(names, kubeconfig))
    out += [
        manifests.service_account(names),
        manifests.cluster_role(names, manage_apiservices=True),
        manifests.cluster_role_binding(names),
        manifests.auth_delegator_binding(names),
        manifests.auth_reader_binding(names),
        manifests.leader_role(names),
        manifests.leader_role_binding(names),
        manifests.admission_policy(names, manage_apiservices=True, apiservice_owner=names.cluster_role),
        manifests.admission_policy_binding(names),
    ]
    if isinstance(mode, manifests.InCluster):
        dns_names = service_dns_names(names.service, names.namespace)
        tls = serving_tls(dns_names)
        tls_name = f"{names.tls_secret}-{generation(dns_names)}"
        out.append(
            manifests.tls_secret(
                names,
                name=tls_name,
                data=manifests.tls_secret_data(cert_pem=tls.cert_pem, key_pem=tls.key_pem, ca_pem=tls.ca_pem),
            )
        )
        settings = manifests.ConnectorSettings(
            claim_namespace=values.claim_namespace,
            cluster_id=values.cluster_id,
            manage_apiservices=True,
            apiservice_owner=names.cluster_role,
        )
        replicas = values.replicas or manifests.DEFAULT_REPLICAS
        out.append(
            manifests.deployment(
                names,
                image=values.image,
                replicas=replicas,
                settings=settings,
                checksum=manifests.config_checksum(
                    kubeconfig, values.claim_namespace, values.cluster_id, list(values.include), list(values.exclude)
                ),
                credentials_secret_name=credentials_name,
                tls_secret_name=tls_name,
            )
        )
        if replicas > 1:
            out.append(manifests.pod_disruption_budget(names))
    out.append(manifests.service(names, mode))
    return out


def to_yaml(docs: Iterable[manifests.RawObject]) -> str:
    """A multi-document YAML stream, as ``kubectl apply -f -`` reads it."""
    return "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def file_name(index: int, obj: manifests.RawObject) -> str:
    """``NN-kind-name.yaml``: apply order survives ``kubectl apply -f <folder>`` (alphabetical)."""
    return f"{index:02d}-{str(obj['kind']).lower()}-{obj['metadata']['name'].replace(':', '-')}.yaml"


def write_folder(folder: Path, docs: list[manifests.RawObject]) -> list[Path]:
    """One file per object in ``folder`` (created); returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, obj in enumerate(docs):
        path = folder / file_name(index, obj)
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        written.append(path)
    return written
