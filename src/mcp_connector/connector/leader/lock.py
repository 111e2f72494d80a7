"""The Lease as a lock: read it, create it, update it only at the resourceVersion read.

client-go's LeaseLock in three calls against the app cluster, plus a watch of that one Lease
(``changes``) so a candidate sees a renewal when it happens rather than at its next read.
Errors come back as the few cases the elector tells apart (absent, taken by another writer) or
as ``LockError`` with a cause that names the Lease and never a credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_connector import upstream
from mcp_connector.connector.errors import describe
from mcp_connector.connector.leader.record import LeaderRecord, record_of


class LockError(Exception):
    """The Lease could not be read or written (the cause names the Lease, never a credential)."""


class LeaseMissing(LockError):
    """The Lease does not exist (yet)."""


class LeaseConflict(LockError):
    """Someone else wrote the Lease first (409: it changed since it was read, or it already exists)."""


@dataclass(frozen=True)
class Observed:
    """A Lease as read: its record and the resourceVersion an update must name."""

    record: LeaderRecord
    resource_version: str


class Lock(Protocol):
    """Where the record lives; the elector's only way to the cluster."""

    def describe(self) -> str:
        """``namespace/name`` of the lock, for logs."""

    async def get(self) -> Observed:
        """The current record (raises LeaseMissing)."""

    async def create(self, record: LeaderRecord) -> Observed:
        """Create the Lease holding ``record`` (raises LeaseConflict if it exists)."""

    async def update(self, record: LeaderRecord, *, resource_version: str) -> Observed:
        """Replace the record, only if the Lease is still at ``resource_version`` (else LeaseConflict)."""

    def changes(self, resource_version: str) -> AsyncIterator[Observed]:
        """The record each time it changes after ``resource_version``, until the watch ends (LockError)."""


#: How long one watch of the Lease lasts before it is opened again (kube-apiserver's own bound
#: is longer; a short one keeps a silently broken stream from lasting).
WATCH_SECONDS = 300


class LeaseLock:
    """A ``coordination.k8s.io/v1`` Lease in the app cluster."""

    def __init__(self, client: upstream.Client, *, namespace: str, name: str, timeout: float) -> None:
        self._client = client
        self.namespace = namespace
        self.name = name
        self._timeout = timeout
        self._collection = upstream.api_path("apis", "coordination.k8s.io", "v1", "namespaces", namespace, "leases")

    def describe(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def _lease(self, record: LeaderRecord, resource_version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": record.spec()}

    async def _call(self, method: str, path: upstream.ApiPath, body: dict[str, Any] | None = None) -> Observed:
        try:
            lease = await upstream.request(self._client, method, path, json_body=body, timeout=self._timeout)
        except upstream.ControlPlaneRejected as e:
            if e.status == 404:
                raise LeaseMissing(f"Lease {self.describe()} not found") from None
            if e.status == 409:
                raise LeaseConflict(f"Lease {self.describe()} was written by another replica first") from None
            raise LockError(f"Lease {self.describe()}: {describe(e)}") from None
        except upstream.ControlPlaneError as e:
            raise LockError(f"Lease {self.describe()}: {describe(e)}") from None
        return Observed(record_of(lease), str((lease.get("metadata") or {}).get("resourceVersion") or ""))

    async def get(self) -> Observed:
        """GET the Lease."""
        return await self._call("GET", self._collection.child(self.name))

    async def create(self, record: LeaderRecord) -> Observed:
        """POST a new Lease."""
        return await self._call("POST", self._collection, self._lease(record, None))

    async def update(self, record: LeaderRecord, *, resource_version: str) -> Observed:
        """PUT the Lease at the version read (the apiserver refuses it with 409 otherwise)."""
        return await self._call("PUT", self._collection.child(self.name), self._lease(record, resource_version))

    async def changes(self, resource_version: str) -> AsyncIterator[Observed]:
        """Watch this one Lease (by name: RBAC's ``resourceNames`` allows it) from ``resource_version``."""
        params = {
            "fieldSelector": "metadata.name=" + self.name,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        try:
            async with upstream.watch(
                self._client, self._collection, params=params, idle_timeout=WATCH_SECONDS + 30
            ) as events:
                async for event in events:
                    kind, lease = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        raise LockError(f"Lease {self.describe()}: the watch ended: {lease.get('message', '')}")
                    if kind in ("ADDED", "MODIFIED") and isinstance(lease, dict):
                        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
                        yield Observed(record_of(lease), version)
        except upstream.ControlPlaneError as e:
            raise LockError(f"Lease {self.describe()}: {describe(e)}") from None
