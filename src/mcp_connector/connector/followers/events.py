"""Claim events: copy what the control plane records about this cluster's claims into the app cluster.

Crossplane records events (composition errors, binding, a blocked deletion) against the
control-plane object, ``claim-<hash>`` or ``nxr-<hash>`` in the claim namespace, where app
teams cannot look. Each is copied into the claim's app namespace with the app-side claim as
its ``involvedObject`` (the uid is the one the app side sees: the connector shows the
control-plane uid unchanged), so ``kubectl describe`` and ``kubectl events --for`` show it.

Only this cluster's events travel: the claim namespace is shared by every connected cluster,
so there is no namespace-wide watch. Each pass lists, one claim at a time, the events whose
``involvedObject.uid`` is a claim the cache holds (the cache holds exactly this cluster's
claims, by label), from the control plane's watch cache (``resourceVersion=0``). Passes
run every ``--event-poll-seconds``, one request in flight, so the cost is one LIST per claim
per pass and one LIST of the copies.

Bounded as client-go's event recorder bounds what it sends: the control plane's events are
already aggregated (repeats are one event with a ``count``) and a copy is replaced only when
the source changed; writes per claim go through a token bucket (burst 25, one more every
five minutes, client-go's spam filter); copies go when their claim goes, or by the app
cluster's event TTL. A refusal (a missing permission) is logged once with the apiserver's
message and the passes back off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from mcp_connector import upstream
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.history import Event
from mcp_connector.connector.errors import describe
from mcp_connector.connector.followers import secrets_sync
from mcp_connector.connector.logs import fields
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract, names

log = logging.getLogger(__name__)

#: Marks the connector's copies; the value is this cluster's ID.
COPY_LABEL = f"{contract.LABEL_DOMAIN}/event-copy-for"
#: The uid of the claim a copy is about (the copy goes when the claim goes).
CLAIM_UID_LABEL = f"{contract.LABEL_DOMAIN}/event-claim-uid"
#: Source events read per claim and pass.
MAX_EVENTS_PER_CLAIM = 100
#: Longest back-off between passes after a refusal.
MAX_BACKOFF = 300.0
#: After a claim changed, when its events are looked at (seconds), and once more.
SETTLE_SECONDS = 1.0
SECOND_LOOK_SECONDS = 6.0
#: Changed claims remembered for a pass of their own; past this, the next full pass comes early.
PROMPT_KEPT = 1000
_UID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
#: Fields copied from the source event as they are.
_KEPT = ("reason", "type", "count", "firstTimestamp", "lastTimestamp", "source", "reportingComponent")
#: Fields of a copy that follow its source (a changed one means a replace).
_CHANGING = ("message", "count", "lastTimestamp", "type", "reason")


def copy_name(ref: contract.AppRef, source_uid: str) -> str:
    """The copy's name: the app name and a digest of the source event, as stable as the source.

    Derived from the source event alone, so a restart or a second replica writes the same copy.
    """
    digest = hashlib.sha256(f"{ref.cluster_id}/{source_uid}".encode()).hexdigest()[:16]
    return f"{ref.name[:200].rstrip('-.')}.{digest}"


def claim_uid(claim: dict[str, Any]) -> str | None:
    """The claim's uid, parsed before it goes into a field selector or a label."""
    uid = str((claim.get("metadata") or {}).get("uid") or "")
    return uid if _UID.match(uid) else None


def app_event(
    source: dict[str, Any], claim: dict[str, Any], *, cluster_id: str, claim_namespace: str
) -> dict[str, Any] | None:
    """The app-side copy of one control-plane event about ``claim``; None when it is not this cluster's."""
    ref = contract.app_ref_of(claim)
    uid = claim_uid(claim)
    meta = source.get("metadata") or {}
    involved = source.get("involvedObject") or {}
    if ref is None or uid is None or ref.cluster_id != cluster_id or involved.get("uid") != uid or not meta.get("uid"):
        return None
    try:
        namespace = names.parse_object_name(ref.namespace)
    except names.InvalidName:
        return None
    out: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": copy_name(ref, str(meta["uid"])),
            "namespace": namespace,
            "labels": {COPY_LABEL: cluster_id, CLAIM_UID_LABEL: uid},
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion") or claim.get("apiVersion"),
            "kind": involved.get("kind") or claim.get("kind"),
            "name": ref.name,
            "namespace": namespace,
            "uid": uid,
        },
        "message": contract.rewrite_message(str(source.get("message") or ""), ref, claim_namespace=claim_namespace),
    }
    if involved.get("fieldPath"):
        out["involvedObject"]["fieldPath"] = involved["fieldPath"]
    for key in _KEPT:
        if source.get(key) is not None:
            out[key] = source[key]
    if not out.get("firstTimestamp") and source.get("eventTime"):
        out["firstTimestamp"] = out["lastTimestamp"] = _seconds(str(source["eventTime"]))
    return out


def _seconds(micro_time: str) -> str:
    """An ``eventTime`` (MicroTime) as a ``Time``: RFC 3339 to the second."""
    return micro_time.split(".")[0].rstrip("Z") + "Z"


def patch_for(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of ``current`` to change to make it ``wanted``; None when nothing changed."""
    patch = {k: wanted.get(k) for k in _CHANGING if current.get(k) != wanted.get(k)}
    return patch or None


@dataclass
class Bucket:
    """A token bucket: ``burst`` writes at once, then one every ``refill`` seconds (client-go's spam filter)."""

    burst: float = 25.0
    refill: float = 300.0
    tokens: float = 25.0
    at: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) / self.refill)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Refusals:
    """Log a refusal once per place and message; say when it is gone."""

    seen: dict[str, str] = field(default_factory=dict)

    def refused(self, where: str, error: upstream.ControlPlaneError) -> None:
        """Log ``error`` unless the same one was logged for ``where`` already."""
        text = describe(error)
        if self.seen.get(where) != text:
            self.seen[where] = text
            log.warning("event copy refused", extra=fields(where=where, error=text))

    def fine(self, where: str) -> None:
        """``where`` works again."""
        if self.seen.pop(where, None) is not None:
            log.info("event copy works again", extra=fields(where=where))


def _events(namespace: str) -> upstream.ApiPath:
    return upstream.api_path("api", "v1", "namespaces", namespace, "events")


class EventMirror:
    """The passes that copy this cluster's claim events into the app cluster."""

    def __init__(self, rt: Runtime, *, every: float) -> None:
        self._rt = rt
        self._every = every
        self._buckets: dict[str, Bucket] = {}
        self.refusals = Refusals()
        #: Changed claims by uid: the times (monotonic) at which to look at their events.
        self._looks: dict[str, list[float]] = {}
        #: Set when a change arrived (the loop recomputes its next wake-up) or too many did.
        self._kick = asyncio.Event()
        self._full_soon = False

    def claim_changed(self, cache: Cache, event: Event) -> None:
        """A cached claim changed (or went): look at its events soon, twice."""
        uid = claim_uid(event.entry.raw)
        if uid is None:
            return
        if uid not in self._looks and len(self._looks) >= PROMPT_KEPT:
            self._full_soon = True  # a burst: one full pass instead of a thousand small ones
        else:
            now = time.monotonic()
            self._looks[uid] = [now + SETTLE_SECONDS, now + SECOND_LOOK_SECONDS]
        self._kick.set()

    def _due(self, now: float) -> set[str]:
        """The changed claims whose look is due at ``now`` (each look is taken once)."""
        due = set()
        for uid, looks in list(self._looks.items()):
            if looks[0] <= now:
                due.add(uid)
                looks.pop(0)
                if not looks:
                    del self._looks[uid]
        return due

    def _next_look(self) -> float | None:
        return min((looks[0] for looks in self._looks.values()), default=None)

    async def _claims(self) -> list[dict[str, Any]]:
        claims = secrets_sync.cached_claims(self._rt)
        return claims if claims is not None else await secrets_sync.listed_claims(self._rt)

    async def _sources(self, uid: str) -> list[dict[str, Any]]:
        page = await upstream.request(
            self._rt.control_plane,
            "GET",
            _events(self._rt.claim_namespace),
            params={
                "fieldSelector": f"involvedObject.uid={uid}",
                "resourceVersion": "0",
                "limit": str(MAX_EVENTS_PER_CLAIM),
            },
        )
        return [e for e in page.get("items") or [] if isinstance(e, dict)]

    async def _copies(self) -> dict[tuple[str, str], dict[str, Any]]:
        listed = await upstream.list_all(
            self._rt.app_cluster,
            upstream.api_path("api", "v1", "events"),
            params={"labelSelector": f"{COPY_LABEL}={self._rt.cluster_id}", "resourceVersion": "0"},
        )
        copies: dict[tuple[str, str], dict[str, Any]] = {}
        for event in listed:
            meta = event.get("metadata") or {}
            copies[(str(meta.get("namespace")), str(meta.get("name")))] = event
        return copies

    async def sync_once(self, only: set[str] | None = None) -> bool:
        """One pass over every claim, or over the claims whose uid is in ``only`` (and the copies of
        those among them that went); False when a cluster refused something (the caller backs off)."""
        claims = await self._claims()
        try:
            copies = await self._copies()
        except upstream.ControlPlaneRejected as e:
            self.refusals.refused("app-cluster events list", e)
            return False
        self.refusals.fine("app-cluster events list")
        clean = True
        uids: set[str] = set()
        for claim, uid in ((c, claim_uid(c)) for c in claims):
            if uid is None:
                continue
            uids.add(uid)
            if only is not None and uid not in only:
                continue
            try:
                sources = await self._sources(uid)
            except upstream.ControlPlaneRejected as e:
                self.refusals.refused("control-plane events list", e)
                return False
            self.refusals.fine("control-plane events list")
            for source in sources:
                wanted = app_event(
                    source, claim, cluster_id=self._rt.cluster_id, claim_namespace=self._rt.claim_namespace
                )
                if wanted is not None:
                    clean = await self._write(uid, wanted, copies.get(_key(wanted))) and clean
        for key, copy in copies.items():
            of = ((copy.get("metadata") or {}).get("labels") or {}).get(CLAIM_UID_LABEL)
            if of not in uids and (only is None or of in only):
                clean = await self._remove(key, copy) and clean
        if only is None:
            self._buckets = {uid: b for uid, b in self._buckets.items() if uid in uids}
        return clean

    async def _write(self, uid: str, wanted: dict[str, Any], current: dict[str, Any] | None) -> bool:
        namespace, name = _key(wanted)
        patch = None if current is None else patch_for(current, wanted)
        if current is not None and patch is None:
            return True
        if not self._buckets.setdefault(uid, Bucket()).take():
            return True  # rate-limited: the next pass with a token catches up
        where = f"app-cluster events in {namespace}"
        try:
            if current is None:
                await upstream.request(self._rt.app_cluster, "POST", _events(namespace), json_body=wanted)
            else:
                # A replace of the copy as read, pinned to its resourceVersion (409: it changed, the
                # next pass reads it again); never a patch, so the ClusterRole needs no `patch`.
                await upstream.request(
                    self._rt.app_cluster, "PUT", _events(namespace).child(name), json_body={**current, **(patch or {})}
                )
        except upstream.ControlPlaneRejected as e:
            if e.status == 409:
                return True  # another replica made it; the next pass compares
            if e.status == 404 and current is None:
                return True  # the app namespace is gone
            self.refusals.refused(where, e)
            return False
        self.refusals.fine(where)
        return True

    async def _remove(self, key: tuple[str, str], copy: dict[str, Any]) -> bool:
        try:
            await upstream.request(self._rt.app_cluster, "DELETE", _events(key[0]).child(key[1]))
        except upstream.ControlPlaneRejected as e:
            if e.status == 404:
                return True
            self.refusals.refused(f"app-cluster events in {key[0]}", e)
            return False
        return True

    async def run(self) -> None:
        """A full pass at once and every ``every`` seconds (longer after a refusal), and a pass of
        their own for the claims that changed, as their looks fall due (none while backing off)."""
        wait = self._every
        next_full = time.monotonic()
        while True:
            self._kick.clear()
            next_look = self._next_look()
            wake = next_full if next_look is None or self._full_soon else min(next_full, next_look)
            left = wake - time.monotonic()
            if left > 0 and not self._full_soon:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._kick.wait()
                continue  # recompute: a change may have brought a look forward
            if not self._rt.catalog_loaded:
                await asyncio.sleep(1.0)
                continue
            now = time.monotonic()
            full = now >= next_full or self._full_soon
            due = self._due(now)  # a full pass covers them too
            if not full and wait > self._every:
                continue  # backing off after a refusal: the next full pass tries again
            self._full_soon = False
            clean = await self._pass(None if full else due)
            if full:
                wait = self._every if clean else min(max(wait, self._every) * 2, MAX_BACKOFF)
                next_full = time.monotonic() + wait

    async def _pass(self, only: set[str] | None) -> bool:
        try:
            return await self.sync_once(only)
        except asyncio.CancelledError:
            raise
        except upstream.ControlPlaneError as e:
            self.refusals.refused("events", e)
        except Exception:
            log.exception("event copy crashed")
        return False


def _key(event: dict[str, Any]) -> tuple[str, str]:
    meta = event["metadata"]
    return str(meta["namespace"]), str(meta["name"])
