"""Connection Secrets: copy what the control plane writes for a claim into the app namespace.

A claim's ``writeConnectionSecretToRef.name`` is hashed on the way up (``contract``), so
Crossplane writes the Secret under a control-plane name in the claim namespace. The app
namespace gets the same data under the name the user asked for, and copies whose claim or
source Secret is gone are removed (copies of claims a disconnect released stay). A source
Secret is copied only when it was written for that very claim
(``contract.connection_secret_written_for``): the hashed names of two claims' Secrets can
collide, and the data must never reach the other namespace. Copies carry a label
naming this cluster so we never touch Secrets we did not make.

Event-driven: the claims come from the connector's cache, whose changes name the copies to
redo; a metadata-only watch on the claim namespace's Secrets (``secrets_index``, on every
replica) names the sources that changed (other clusters' Secrets are ignored by name and their
data never travels here). Only those copies are synced. The whole set is reconciled when
leadership begins, when the served APIs change, after a lost watch and every
``--secret-resync-seconds``, which heals anything missed. When leadership begins, the copies the
warm indexes show missing or stale are synced first, so they do not wait for the full pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.history import Event
from mcp_connector.connector.errors import describe
from mcp_connector.connector.logs import fields
from mcp_connector.connector.metrics import SECRET_SYNCS
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract, names

log = logging.getLogger(__name__)

MANAGED_LABEL = f"{contract.LABEL_DOMAIN}/connection-secret-for"
SOURCE_ANNOTATION = f"{contract.LABEL_DOMAIN}/source"
#: The source's resourceVersion the copy was made from: a replica about to lead tells a stale
#: copy from its metadata alone (``secrets_index``).
SOURCE_VERSION_ANNOTATION = f"{contract.LABEL_DOMAIN}/source-resource-version"

#: An app-side Secret: (namespace, name), both parsed (core.names) before they name anything.
Key = tuple[names.ObjectName, names.SecretName]
#: Given what the claims ask for, the copies to sync before a full reconcile (None: not known).
FirstToSync = Callable[[dict[Key, tuple[names.SecretName, dict[str, Any]]]], set[Key] | None]


def source_reference(claim_namespace: str, source_name: str) -> str:
    """How a copy names its source (``SOURCE_ANNOTATION``)."""
    return f"{claim_namespace}/{source_name}"


def app_secret(source: dict[str, Any], target: Key, cluster_id: str, claim_namespace: str) -> dict[str, Any]:
    """The app-side copy of a control-plane connection Secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": target[1],
            "namespace": target[0],
            "labels": {MANAGED_LABEL: cluster_id},
            "annotations": {
                SOURCE_ANNOTATION: source_reference(claim_namespace, source["metadata"]["name"]),
                SOURCE_VERSION_ANNOTATION: str(source["metadata"].get("resourceVersion") or ""),
            },
        },
        "type": source.get("type") or "Opaque",
        "data": dict(source.get("data") or {}),
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    made_from_a, made_from_b = a["metadata"].get("annotations") or {}, b["metadata"].get("annotations") or {}
    return bool(
        a.get("data") == b.get("data")
        and a.get("type") == b.get("type")
        and all(made_from_a.get(k) == made_from_b.get(k) for k in (SOURCE_ANNOTATION, SOURCE_VERSION_ANNOTATION))
    )


def _ours(secret: dict[str, Any], cluster_id: str) -> bool:
    return ((secret.get("metadata") or {}).get("labels") or {}).get(MANAGED_LABEL) == cluster_id


def wanted_copies(
    claims: Iterable[dict[str, Any]], cluster_id: str
) -> dict[Key, tuple[names.SecretName, dict[str, Any]]]:
    """Which app Secrets this cluster's claims ask for: key -> (control-plane Secret name, claim).

    Two claims of one namespace may name the same Secret; the oldest keeps it, as with
    Crossplane, where the first claim to write a connection Secret controls it. Never the
    order the claims happen to come in, which changes with every relist.
    """
    wanted: dict[Key, tuple[names.SecretName, dict[str, Any]]] = {}
    for claim in sorted(claims, key=_age_order):
        found = contract.app_connection_secret(claim)
        if found is not None and found.cluster_id == cluster_id:
            wanted.setdefault((found.namespace, found.name), (found.source, claim))
    return wanted


def _age_order(claim: dict[str, Any]) -> tuple[str, str]:
    """Oldest first (RFC 3339 timestamps sort as text), then by (stored) name."""
    metadata = claim.get("metadata") or {}
    return str(metadata.get("creationTimestamp") or ""), str(metadata.get("name") or "")


def cached_claims(rt: Runtime) -> list[dict[str, Any]] | None:
    """Every claim from the caches of the served APIs' preferred versions; None if one is not ready."""
    if rt.caches is None:
        return None
    claims: list[dict[str, Any]] = []
    for api in rt.catalog.apis:
        served = rt.catalog.resource(api.group, api.preferred_version.name, api.plural)
        if served is None:
            continue
        cache = rt.caches.of(served)
        if not cache.ready:
            return None
        claims.extend(entry.raw for entry in cache.store)
    return claims


async def listed_claims(rt: Runtime) -> list[dict[str, Any]]:
    claims: list[dict[str, Any]] = []
    for api in rt.catalog.apis:
        path = upstream.api_path(
            "apis", api.group, api.preferred_version.name, "namespaces", rt.claim_namespace, api.plural
        )
        selector = contract.scope_selector(rt.cluster_id, None)
        claims.extend(await upstream.list_all(rt.control_plane, path, params={"labelSelector": selector}))
    return claims


def _secrets(namespace: str) -> upstream.ApiPath:
    return upstream.api_path("api", "v1", "namespaces", namespace, "secrets")


async def _desired(
    rt: Runtime, key: Key, wanted: dict[Key, tuple[names.SecretName, dict[str, Any]]]
) -> dict[str, Any] | None:
    if key not in wanted:
        return None
    source_name, claim = wanted[key]
    try:
        source = await upstream.request(rt.control_plane, "GET", _secrets(rt.claim_namespace).child(source_name))
    except upstream.ControlPlaneRejected as e:
        if e.status == 404:
            return None
        raise
    if not contract.connection_secret_written_for(source, claim):
        return None
    return app_secret(source, key, rt.cluster_id, rt.claim_namespace)


async def _all_copies(rt: Runtime) -> dict[Key, dict[str, Any]]:
    """This cluster's copies now in the app cluster (any whose name does not parse is left alone)."""
    listed = await upstream.list_all(
        rt.app_cluster,
        upstream.api_path("api", "v1", "secrets"),
        params={"labelSelector": f"{MANAGED_LABEL}={rt.cluster_id}"},
    )
    copies: dict[Key, dict[str, Any]] = {}
    for secret in listed:
        key = key_of(secret)
        if key is not None:
            copies[key] = secret
    return copies


def key_of(secret: dict[str, Any]) -> Key | None:
    """Where a listed copy is, read from the copy itself and parsed again."""
    metadata = secret.get("metadata") or {}
    try:
        return names.parse_object_name(metadata.get("namespace")), names.parse_secret_name(metadata.get("name"))
    except names.InvalidName:
        log.warning("connection secret copy skipped: its name does not parse", extra=fields(error="invalid name"))
        return None


async def _copy(rt: Runtime, key: Key) -> dict[str, Any] | None:
    """This cluster's copy at ``key``, if there is one."""
    # A list narrowed to one name, not a GET: the connector's role lists its copies and never
    # gets one, so a connector upgrade needs no new permission.
    # The name is a parsed SecretName (a DNS-1123 subdomain): it cannot carry selector syntax.
    listed = await upstream.list_all(
        rt.app_cluster,
        _secrets(key[0]),
        params={"labelSelector": f"{MANAGED_LABEL}={rt.cluster_id}", "fieldSelector": f"metadata.name={key[1]}"},
    )
    return next((secret for secret in listed if _ours(secret, rt.cluster_id) and key_of(secret) == key), None)


async def _claim_released(rt: Runtime, copy: dict[str, Any]) -> bool:
    """True when the copy's claim still exists and a disconnect released it from this cluster.

    A disconnect with Release leaves copies where the workloads use them (the README says
    so); the connector, still running while the claims are released, must not remove them.
    The source Secret names its claim in its controller reference; a claim that was deleted
    (or whose Secret is gone) means the copy goes, as before.
    """
    source = ((copy.get("metadata") or {}).get("annotations") or {}).get(SOURCE_ANNOTATION, "")
    namespace, _, name = str(source).partition("/")
    if namespace != rt.claim_namespace:
        return False
    try:
        secret = await upstream.request(
            rt.control_plane, "GET", _secrets(namespace).child(names.parse_secret_name(name))
        )
        owner = next(
            (o for o in (secret.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")), None
        )
        group, _, version = str((owner or {}).get("apiVersion", "")).partition("/")
        api = next((a for a in rt.catalog.apis if owner and a.group == group and a.kind == owner.get("kind")), None)
        if owner is None or api is None:
            return False
        claim = await upstream.request(
            rt.control_plane,
            "GET",
            upstream.api_path(
                "apis", group, version, "namespaces", namespace, api.plural, names.parse_object_name(owner.get("name"))
            ),
        )
    except (names.InvalidName, upstream.InvalidPathSegment):
        return False
    except upstream.ControlPlaneRejected as e:
        if e.status == 404:
            return False
        raise
    return contract.released_from(claim, rt.cluster_id)


async def reconcile(rt: Runtime, only: set[Key] | None = None) -> dict[Key, upstream.ControlPlaneRejected]:
    """Make the app cluster's copies match the control plane's Secrets: all, or those of ``only``.

    A copy that either cluster refuses (a missing permission in one namespace, say) does not
    hold up the others: its error is returned for the caller to log and retry. An unreachable
    cluster stops the whole pass.
    """
    claims = cached_claims(rt)
    wanted = wanted_copies(claims if claims is not None else await listed_claims(rt), rt.cluster_id)
    existing = await _all_copies(rt) if only is None else None
    keys = (set(wanted) | set(existing or {})) if only is None else set(only)
    refused: dict[Key, upstream.ControlPlaneRejected] = {}
    for key in sorted(keys):
        try:
            current, desired = await _read(rt, key, wanted, existing)
            await _sync_copy(rt, key, desired, current)
        except upstream.ControlPlaneRejected as e:
            refused[key] = e
    return refused


async def _read(
    rt: Runtime,
    key: Key,
    wanted: dict[Key, tuple[names.SecretName, dict[str, Any]]],
    existing: dict[Key, dict[str, Any]] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The copy at ``key`` as it is and as it should be.

    Read one by one, the copy (app cluster) and its source (control plane) are read at once: a
    targeted sync, and a new leader's first copies above all, wait for one round trip, not two.
    """
    if existing is not None:
        return existing.get(key), await _desired(rt, key, wanted)
    both = await asyncio.gather(_copy(rt, key), _desired(rt, key, wanted), return_exceptions=True)
    current, desired = both[0], both[1]
    if isinstance(current, BaseException):
        raise current
    if isinstance(desired, BaseException):
        raise desired
    return current, desired


def _preconditions(current: dict[str, Any]) -> dict[str, Any]:
    """DeleteOptions that hold only for this very copy: its uid and the version we read."""
    metadata = current.get("metadata") or {}
    return {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "preconditions": {"uid": metadata.get("uid"), "resourceVersion": metadata.get("resourceVersion")},
    }


async def _sync_copy(rt: Runtime, key: Key, secret: dict[str, Any] | None, current: dict[str, Any] | None) -> None:
    """Create, update or remove the one copy at ``key`` so it matches ``secret``.

    An existing copy is updated and deleted by the namespace and name read from the copy itself
    (parsed again, and equal to ``key``), pinned to its uid and resourceVersion: the app cluster
    refuses (409) if the Secret there is not the one we read. No annotation ever names a path.
    """
    app = rt.app_cluster
    if current is not None and key_of(current) != key:
        log.warning("connection secret copy skipped: it is not where it was looked for", extra=fields(name=key[1]))
        return
    try:
        if secret is None:
            if current is not None and await _claim_released(rt, current):
                log.info("connection secret kept: its claim was released", extra=fields(namespace=key[0], name=key[1]))
            elif current is not None:
                await upstream.request(app, "DELETE", _secrets(key[0]).child(key[1]), json_body=_preconditions(current))
                log.info("connection secret removed", extra=fields(namespace=key[0], name=key[1]))
        elif current is None:
            await upstream.request(app, "POST", _secrets(key[0]), json_body=secret)
            log.info("connection secret copied", extra=fields(namespace=key[0], name=key[1]))
        elif not _same(current, secret):
            secret["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            secret["metadata"]["uid"] = current["metadata"].get("uid")
            await upstream.request(app, "PUT", _secrets(key[0]).child(key[1]), json_body=secret)
            log.info("connection secret updated", extra=fields(namespace=key[0], name=key[1]))
    except upstream.ControlPlaneRejected as e:
        # 409 on create: a Secret of that name exists and is not ours (or, on update and delete,
        # the copy changed since it was read: the next pass reads it again); 404: namespace is gone.
        if e.status not in (404, 409):
            raise
        log.warning(
            "connection secret not written",
            extra=fields(namespace=key[0], name=key[1], status=e.status, reason=str(e.body and e.body.get("reason"))),
        )


class SecretSync:
    """Which copies to redo, collected from claim and Secret changes, and the loop that redoes them."""

    def __init__(self, rt: Runtime, *, every: float, first: FirstToSync | None = None) -> None:
        self._rt = rt
        self._every = every
        #: What to sync when leadership begins, before the full reconcile (``secrets_index``).
        self.first = first
        self._pending: set[Key] = set()
        self._full = True
        self._kick = asyncio.Event()
        #: Which copies come from which control-plane Secret, kept until a claim changes.
        self._by_source: dict[str, set[Key]] | None = None

    def request_full(self) -> None:
        """Reconcile every copy soon (start, served APIs changed, a watch was lost, a cache relisted)."""
        self._by_source = None
        self._full = True
        self._kick.set()

    def claim_changed(self, cache: Cache, event: Event) -> None:
        """A cached claim changed: redo the copies its old and new form ask for."""
        self._by_source = None
        for entry in (event.prev, event.entry):
            found = contract.app_connection_secret(entry.raw) if entry is not None else None
            if found is not None and found.cluster_id == self._rt.cluster_id:
                self._pending.add((found.namespace, found.name))
                self._kick.set()

    def secret_changed(self, name: str) -> None:
        """A Secret in the claim namespace changed: redo the copies made from it, if any."""
        if self._by_source is None:
            claims = cached_claims(self._rt)
            if claims is None:
                self.request_full()
                return
            by_source: dict[str, set[Key]] = {}
            for key, (source, _) in wanted_copies(claims, self._rt.cluster_id).items():
                by_source.setdefault(source, set()).add(key)
            self._by_source = by_source
        keys = self._by_source.get(name)
        if keys:
            self._pending |= keys
            self._kick.set()

    async def sync_first(self) -> None:
        """Sync the copies the warm indexes show missing or stale, at once: no debounce, no
        wait for the full reconcile, which comes next and heals whatever this missed."""
        if self.first is None or not self._rt.catalog_loaded:
            return
        claims = cached_claims(self._rt)
        keys = self.first(wanted_copies(claims, self._rt.cluster_id)) if claims is not None else None
        if not keys:
            return
        log.info("connection secrets: syncing first the copies missing or stale", extra=fields(copies=len(keys)))
        SECRET_SYNCS.labels("first").inc(len(keys))
        try:
            refused = await reconcile(self._rt, keys)
        except upstream.ControlPlaneError as e:
            log.warning("reconcile failed", extra=fields(loop="connection-secrets", error=describe(e)))
            return
        except Exception:
            log.exception("connection secret sync crashed")
            return
        for (namespace, name), error in refused.items():
            log.warning(
                "reconcile failed",
                extra=fields(loop="connection-secrets", namespace=namespace, name=name, error=describe(error)),
            )

    async def run(self, *, debounce: float = 0.1) -> None:
        """Sync what was asked for, forever; a full reconcile at least every ``every`` seconds.

        Started when leadership begins: what the warm indexes show missing or stale first, then
        the full reconcile ``request_full`` asked for.
        """
        await self.sync_first()
        while True:
            timed_out = False
            try:
                async with asyncio.timeout(self._every):
                    await self._kick.wait()
            except TimeoutError:
                timed_out = True
            await asyncio.sleep(debounce)
            self._kick.clear()
            if not self._rt.catalog_loaded:
                self._full = True  # nothing is lost: the first pass with a catalog does everything
                continue
            full = self._full or timed_out
            pending, self._pending, self._full = self._pending, set(), False
            try:
                refused: dict[Key, upstream.ControlPlaneRejected] = {}
                if full:
                    SECRET_SYNCS.labels("full").inc()
                    refused = await reconcile(self._rt)
                elif pending:
                    SECRET_SYNCS.labels("targeted").inc(len(pending))
                    refused = await reconcile(self._rt, pending)
                for (namespace, name), error in refused.items():
                    log.warning(
                        "reconcile failed",
                        extra=fields(loop="connection-secrets", namespace=namespace, name=name, error=describe(error)),
                    )
                if refused:
                    self._pending |= refused.keys()
                    await asyncio.sleep(2.0)
                    self._kick.set()
            except upstream.ControlPlaneError as e:
                log.warning("reconcile failed", extra=fields(loop="connection-secrets", error=describe(e)))
                self._pending |= pending
                self._full = self._full or full
                await asyncio.sleep(2.0)
                self._kick.set()
            except Exception:
                log.exception("connection secret sync crashed")
                self._full = True
                await asyncio.sleep(5.0)
                self._kick.set()
