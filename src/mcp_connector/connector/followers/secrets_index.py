"""What every replica keeps warm of connection Secrets, so a new leader copies what is behind first.

A replica that wins the Lease used to start with a full reconcile: read every copy, then GET
every claim's source Secret in turn, while the one copy a tenant waits for could come last.
Every replica already caches the claims (it serves reads); here it also keeps, metadata only,
the claim namespace's Secrets (name, resourceVersion, controller reference) and this cluster's
copies in the app cluster (where, and which source version each was made from). The moment it
leads, ``first_to_sync`` diffs the two in memory, without a request, and the copies that are
missing or stale are synced before the full reconcile. Only reads happen here: nothing is
written while not leading.

The Secrets' watch also tells the leader's ``SecretSync`` which sources changed, by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from mcp_connector import upstream
from mcp_connector.connector.errors import describe
from mcp_connector.connector.followers.secrets_sync import (
    MANAGED_LABEL,
    SOURCE_ANNOTATION,
    SOURCE_VERSION_ANNOTATION,
    Key,
    SecretSync,
    key_of,
    source_reference,
)
from mcp_connector.connector.logs import fields
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract, names

log = logging.getLogger(__name__)

_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
#: What is kept of each object's metadata (a copy's data, a source's data never come here).
_KEPT = ("name", "namespace", "resourceVersion", "ownerReferences")
_KEPT_ANNOTATIONS = (SOURCE_ANNOTATION, SOURCE_VERSION_ANNOTATION)

K = TypeVar("K", bound=Hashable)
#: An object's metadata, cut down to ``_KEPT`` and our annotations.
Meta = dict[str, Any]


def _kept(metadata: Mapping[str, Any]) -> Meta:
    kept = {k: metadata[k] for k in _KEPT if k in metadata}
    annotations = metadata.get("annotations") or {}
    kept["annotations"] = {k: annotations[k] for k in _KEPT_ANNOTATIONS if k in annotations}
    return kept


class MetadataIndex(Generic[K]):
    """One collection's objects by key, metadata only, kept current by a list then a watch.

    ``changed`` is called with each changed object's name; ``relisted`` after every list but
    the first (what changed while the watch was down is unknown). ``ready`` is False until the
    first list and from a lost watch until the next list.
    """

    def __init__(
        self,
        name: str,
        client: upstream.Client,
        path: upstream.ApiPath,
        *,
        key: Callable[[Meta], K | None],
        params: Mapping[str, str] | None = None,
        changed: Callable[[str], None] = lambda name: None,
        relisted: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self._client = client
        self._path = path
        self._key = key
        self._params = dict(params or {})
        self._changed = changed
        self._relisted = relisted
        self.items: dict[K, Meta] = {}
        self.ready = False
        #: The failure last logged: a lasting one (a Role without ``watch``) is logged once, not every retry.
        self._failing: str | None = None

    async def _list(self) -> str:
        query = {**self._params, "limit": "500"}
        items: dict[K, Meta] = {}
        while True:
            page = await upstream.request(self._client, "GET", self._path, params=query, accept=_METADATA_LIST)
            for obj in page.get("items") or []:
                meta = _kept(obj.get("metadata") or {})
                key = self._key(meta)
                if key is not None:
                    items[key] = meta
            listed = page.get("metadata") or {}
            if not listed.get("continue"):
                self.items = items
                return str(listed.get("resourceVersion") or "")
            query["continue"] = str(listed["continue"])

    def _apply(self, kind: str, meta: Meta) -> None:
        key = self._key(meta)
        if key is None:
            return
        if kind == "DELETED":
            self.items.pop(key, None)
        else:
            self.items[key] = meta
        self._changed(str(meta.get("name") or ""))

    async def run(self) -> None:
        """List, then watch from that version, forever; relist after a lost watch."""
        backoff, first = 1.0, True
        while True:
            try:
                version = await self._list()
                self.ready = True
                if not first:
                    self._relisted()
                first = False
                query = {**self._params, "resourceVersion": version, "allowWatchBookmarks": "true"}
                while True:  # a watch ended by the server's timeout resumes from the last version
                    query["timeoutSeconds"] = "300"
                    async with upstream.watch(self._client, self._path, params=query, accept=_METADATA) as events:
                        backoff = 1.0
                        if self._failing is not None:
                            log.info("secret index watching again", extra=fields(index=self.name, path=self._path))
                            self._failing = None
                        async for event in events:
                            obj = event.get("object") or {}
                            meta = obj.get("metadata") or {}
                            if event.get("type") == "ERROR":
                                raise upstream.ControlPlaneRejected(self._path, int(obj.get("code") or 500), obj)
                            if meta.get("resourceVersion"):
                                query["resourceVersion"] = str(meta["resourceVersion"])
                            if event.get("type") != "BOOKMARK":
                                self._apply(str(event.get("type")), _kept(meta))
            except asyncio.CancelledError:
                raise
            except upstream.ControlPlaneError as e:
                self.ready = False
                if describe(e) != self._failing:
                    self._failing = describe(e)
                    log.warning(
                        "secret index watch failed; relisting (a new leader reconciles everything meanwhile)",
                        extra=fields(index=self.name, path=self._path, error=self._failing, retry_in=backoff),
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                self.ready = False
                log.exception("secret index watch crashed; relisting", extra=fields(index=self.name, path=self._path))
                await asyncio.sleep(5.0)


def _copy_key(meta: Meta) -> Key | None:
    return key_of({"metadata": meta})


def _source_name(meta: Meta) -> str | None:
    return str(meta["name"]) if meta.get("name") else None


def first_to_sync(
    wanted: Mapping[Key, tuple[names.SecretName, dict[str, Any]]],
    sources: Mapping[str, Meta],
    copies: Mapping[Key, Meta],
    claim_namespace: str,
) -> set[Key]:
    """The copies the warm view shows missing or stale: no copy of a source there is, a copy of
    another source or of an older version of it, a copy of a source that is gone or was written
    for another claim. Copies no claim asks for are left to the full reconcile (their claims
    may have been released, which takes reads to tell).
    """
    keys: set[Key] = set()
    for key, (source_name, claim) in wanted.items():
        source, copy = sources.get(source_name), copies.get(key)
        if source is None or not contract.connection_secret_written_for({"metadata": source}, claim):
            if copy is not None:
                keys.add(key)
            continue
        made_from = (copy or {}).get("annotations") or {}
        if (
            copy is None
            or made_from.get(SOURCE_ANNOTATION) != source_reference(claim_namespace, source_name)
            or made_from.get(SOURCE_VERSION_ANNOTATION) != source.get("resourceVersion")
        ):
            keys.add(key)
    return keys


class SecretIndexes:
    """The claim namespace's Secrets and this cluster's copies, warm on every replica."""

    def __init__(self, rt: Runtime, sync: SecretSync) -> None:
        self._rt = rt
        self.sources: MetadataIndex[str] = MetadataIndex(
            "sources",
            rt.control_plane_watches,
            upstream.api_path("api", "v1", "namespaces", rt.claim_namespace, "secrets"),
            key=_source_name,
            changed=sync.secret_changed,
            relisted=sync.request_full,
        )
        self.copies: MetadataIndex[Key] = MetadataIndex(
            "copies",
            rt.app_cluster,
            upstream.api_path("api", "v1", "secrets"),
            key=_copy_key,
            params={"labelSelector": f"{MANAGED_LABEL}={rt.cluster_id}"},
        )

    def first_to_sync(self, wanted: Mapping[Key, tuple[names.SecretName, dict[str, Any]]]) -> set[Key] | None:
        """What to sync before the full reconcile; None when either index is not current."""
        if not (self.sources.ready and self.copies.ready):
            return None
        return first_to_sync(wanted, self.sources.items, self.copies.items, self._rt.claim_namespace)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Start keeping both current (every replica, leading or not)."""
        return [
            asyncio.create_task(self.sources.run(), name="secret-index:sources"),
            asyncio.create_task(self.copies.run(), name="secret-index:copies"),
        ]
