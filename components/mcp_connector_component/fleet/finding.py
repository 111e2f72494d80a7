"""What of a connector an app cluster holds: for ``uninstall`` when no install state names it.

No state for a cluster does not mean no connector in it: it may have been installed from
another machine with another backend, from a Pulumi program, with ``render`` and kubectl, or
by Upbound's own chart. Saying "nothing to uninstall" then would leave a connector serving
claims while the user believes it gone. So ``uninstall`` looks: the connector's Deployments
and Services (by the ``app.kubernetes.io/name`` label every install method sets) and the
APIServices that route to them or carry the label, and says who manages them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY = "app.kubernetes.io/managed-by"
SELECTOR = f"{NAME_LABEL}=mcp-connector"
TIMEOUT = 15.0


class LookError(Exception):
    """The cluster could not be asked; the message says why (never a credential)."""


@dataclass(frozen=True)
class Found:
    """Objects of a connector in the cluster, as ``kind namespace/name`` text."""

    workloads: tuple[str, ...] = ()
    apiservices: tuple[str, ...] = ()
    managed_by: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.workloads or self.apiservices)

    def describe(self) -> str:
        """One line: what is there and who manages it."""
        parts = list(self.workloads)
        if self.apiservices:
            parts.append(f"{len(self.apiservices)} APIService(s) ({', '.join(self.apiservices)})")
        who = f"; managed by {', '.join(self.managed_by)}" if self.managed_by else ""
        return ", ".join(parts) + who


def _label(obj: Any, key: str) -> str | None:
    labels = (obj.metadata.labels or {}) if obj.metadata else {}
    value = labels.get(key)
    return str(value) if value else None


def _ref(obj: Any) -> tuple[str, str]:
    """``(namespace, name)`` of a listed object ("" for what it lacks)."""
    meta = obj.metadata
    return (str(meta.namespace or ""), str(meta.name or "")) if meta else ("", "")


def look(kubeconfig: Path, context: str) -> Found:
    """The connector's Deployments, Services and APIServices in the cluster of ``context``."""
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as e:
        raise LookError(f"cannot load kubeconfig {kubeconfig} (context {context}): {type(e).__name__}") from None
    try:
        with api:
            deployments = (
                client.AppsV1Api(api)
                .list_deployment_for_all_namespaces(label_selector=SELECTOR, _request_timeout=TIMEOUT)
                .items
            )
            services = (
                client.CoreV1Api(api)
                .list_service_for_all_namespaces(label_selector=SELECTOR, _request_timeout=TIMEOUT)
                .items
            )
            apiservices = client.ApiregistrationV1Api(api).list_api_service(_request_timeout=TIMEOUT).items
    except ApiException as e:
        raise LookError(f"the cluster answered {e.status} {e.reason}") from None
    except (HTTPError, OSError) as e:
        raise LookError(f"cannot reach the cluster: {type(e).__name__}") from None
    routes = {_ref(s) for s in services}
    served = sorted(
        _ref(a)[1]
        for a in apiservices
        if _label(a, NAME_LABEL) == "mcp-connector"
        or (a.spec and a.spec.service and (a.spec.service.namespace, a.spec.service.name) in routes)
    )
    workloads = [f"Deployment {'/'.join(_ref(d))}" for d in deployments]
    workloads += [f"Service {'/'.join(_ref(s))}" for s in services]
    managers = sorted({m for o in [*deployments, *services] if (m := _label(o, MANAGED_BY))})
    return Found(workloads=tuple(workloads), apiservices=tuple(served), managed_by=tuple(managers))
