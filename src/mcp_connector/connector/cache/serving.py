"""The one seam between the request handlers and the cache: answer a get, list or watch, or decline.

``serve`` answers from the cache exactly when kube-apiserver's watch cache would (its
delegation rules, k8s.io/apiserver pkg/storage/cacher/delegator), in the same words, and
returns None otherwise so the request goes to the control plane as before:

* ``resourceVersion=0`` reads and ``resourceVersion=N`` reads (after waiting up to 3 s for the
  cache to reach N; then 504 "Too large resource version", as kube-apiserver answers);
* consistent reads (no resourceVersion): the control plane is asked which objects of the
  request's scope it holds at which version (a metadata-only read), and the cache answers only
  once it holds exactly those versions, so the answer is the control plane's state at that
  moment. kube-apiserver checks freshness the same way against etcd (consistent-list-from-
  cache); it can ask etcd for watch progress, the control plane offers no such thing, so the
  versions themselves are compared;
* watches from the cache's state, from a version in its history, or as a WatchList
  (``sendInitialEvents=true``, ending with the ``k8s.io/initial-events-end`` bookmark).

Declined: exact-version and continued lists (the control plane pages them), lists larger
than their limit, other versions' forms the cache does not make (Tables until tables.py),
selectors it cannot evaluate exactly, watches from a version older than its history (the
control plane still has it, or answers 410 Expired), and everything while the cache is not
ready (starting, or its upstream watch broken).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from mcp_connector import upstream
from mcp_connector.connector.api.verbs.calls import app_warnings
from mcp_connector.connector.api.verbs.request import Call, app_ref, collection_path, list_params, upstream_headers
from mcp_connector.connector.cache import fanout, forms, tables
from mcp_connector.connector.cache.cache import Cache
from mcp_connector.connector.cache.paths import Path
from mcp_connector.connector.cache.selection import Selection, parse
from mcp_connector.connector.cache.store import Entry, resource_version
from mcp_connector.connector.errors import ApiError, from_control_plane, not_found, status_body
from mcp_connector.connector.http.routing import query_flag
from mcp_connector.connector.metrics import CACHE_READS, CONSISTENT_LIST_PATHS, OPEN_WATCHES
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core import contract

log = logging.getLogger(__name__)

#: How long a read waits for the cache to reach a requested version (kube-apiserver: 3 s).
BLOCK_SECONDS = 3.0
#: How long a consistent read waits for the cache to catch up with the control plane.
CONSISTENT_SECONDS = 1.0
#: How long a watch waits for a starting cache before going to the control plane.
READY_SECONDS = 3.0
_PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
#: A single object's Table without the object: its resourceVersion and a few cells.
_TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"
_VERSION_ONLY = {"includeObject": "None"}
#: The control plane's answer to the request being served (the handlers' path).
Direct = Callable[[], Awaitable[web.StreamResponse]]


def too_large(wanted: int, current: int) -> ApiError:
    """kube-apiserver's answer when the cache did not reach a requested version in time."""
    message = f"Too large resource version: {wanted}, current: {current}"
    return ApiError(
        status_body(
            504,
            f"Timeout: {message}",
            reason="Timeout",
            details={
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            },
        ),
        headers=(("Retry-After", "1"),),
    )


def _selection(rt: Runtime, call: Call) -> Selection | None:
    list_params(rt, call, ())  # the 400s the proxied path gives for field selectors it cannot map
    return parse(
        call.route.namespace,
        call.route.name,
        call.query.get("labelSelector", ""),
        call.query.get("fieldSelector", ""),
    )


def _response(body: bytes, call: Call) -> web.Response:
    response = web.Response(body=body, headers={"Content-Type": "application/json"})
    for warning in dict.fromkeys(call.warnings):
        response.headers.add("Warning", warning)
    return response


async def _version(cache: Cache, rv: str) -> int | None:
    """The version a non-consistent read is served at; None when the request is not for the cache."""
    if rv == "0":
        return cache.rv
    try:
        wanted = resource_version(rv)
    except ValueError:
        return None  # the control plane refuses it in its own words
    if wanted <= 0:
        return None
    if not await cache.wait_for(wanted, BLOCK_SECONDS):
        if not cache.ready:
            return None
        raise too_large(wanted, cache.rv)
    return cache.rv


@dataclass(frozen=True, slots=True)
class _ScopeProof:
    """What the control plane holds of a scope: its version, and each object's (by app ref)."""

    at: int
    want: dict[tuple[str, str], int]
    warnings: tuple[str, ...]


async def _consistent(rt: Runtime, call: Call, cache: Cache, name: str | None) -> int | None:
    """The control plane's current version, once the cache holds exactly its state of the request's
    scope (one namespace or the whole cluster); None when it does not catch up in time.

    The proof (a metadata-only list of the scope) is shared with every consistent read of the
    same scope waiting for it (proofs.py).
    """
    namespace = call.route.namespace
    key = ("list", namespace, name)
    if not cache.proofs.worth_proving(key):
        return None
    headers = upstream_headers(rt, call)
    path = collection_path(rt, call.served)
    params = {"labelSelector": contract.scope_selector(rt.cluster_id, namespace, name)}

    async def read() -> _ScopeProof | None:
        reply = await upstream.exchange(
            rt.control_plane, "GET", path, params=params, accept=_PARTIAL_LIST, headers=headers
        )
        return _scope_proof(reply, rt.cluster_id)

    try:
        proof: _ScopeProof | None = await cache.proofs.proof(key, read)
    except upstream.ControlPlaneError as e:
        raise from_control_plane(
            e, ref=None, claim_namespace=rt.claim_namespace, namespace=namespace, cluster_id=rt.cluster_id
        ) from None
    if proof is None:
        return None  # an answer the cache cannot read: the control plane answers the request itself
    call.warnings.extend(app_warnings(rt, proof.warnings, None, namespace))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONSISTENT_SECONDS
    while cache.ready:
        if _holds(cache, namespace, name, proof.want):
            return proof.at
        left = deadline - loop.time()
        if left <= 0:
            break
        await cache.changed(left)
    cache.proofs.missed(key)
    return None


def _scope_proof(reply: upstream.Reply, cluster_id: str) -> _ScopeProof | None:
    try:
        body = reply.body
        at = resource_version((body.get("metadata") or {}).get("resourceVersion"))
        want = {}
        for item in body.get("items") or []:
            ref = contract.app_ref_of(item)
            if ref is not None and ref.cluster_id == cluster_id:
                want[(ref.namespace, ref.name)] = resource_version((item.get("metadata") or {}).get("resourceVersion"))
    except (ValueError, AttributeError, TypeError):
        log.warning("a freshness proof the cache cannot read; the control plane answers")
        return None
    return _ScopeProof(at, want, reply.warnings)


def _holds(cache: Cache, namespace: str | None, name: str | None, want: dict[tuple[str, str], int]) -> bool:
    if name is not None and namespace is not None:
        entry = cache.get(namespace, name)
        have = {(namespace, name): entry.rv} if entry is not None else {}
    else:
        have = {(e.namespace, e.name): e.rv for e in cache.store if namespace is None or e.namespace == namespace}
    return have == want


async def _consistent_entry(rt: Runtime, call: Call, cache: Cache, ref: contract.AppRef) -> Entry | None:
    """The cached object as the control plane holds it now, or None when the cache cannot show it.

    A consistent GET reads the object's version from the control plane (a GET of its
    control-plane name, as kube-apiserver reads storage for a GET without resourceVersion),
    shared with every consistent GET of the object waiting for it (proofs.py), and answers from
    the cache once the cache holds that version. The read asks for the object as a Table
    without its object: kube-apiserver gives a single object's Table the object's
    resourceVersion, so the answer is a few hundred bytes whatever the object's size. Its labels
    need no second look: versions are unique, so a cached entry of ours at that version is the
    object the control plane holds; anything else never matches and goes to the control plane.
    """
    entry = cache.get(ref.namespace, ref.name)
    key = ("get", ref.namespace, ref.name)
    if entry is None or not cache.proofs.worth_proving(key):
        return None
    path = collection_path(rt, call.served).child(entry.cp_name)
    headers = upstream_headers(rt, call)

    async def read() -> upstream.Reply:
        return await upstream.exchange(
            rt.control_plane, "GET", path, params=_VERSION_ONLY, accept=_TABLE, headers=headers
        )

    try:
        reply: upstream.Reply = await cache.proofs.proof(key, read)
    except upstream.ControlPlaneError as e:
        if isinstance(e, upstream.ControlPlaneRejected) and e.status == 404:
            raise not_found(call.served.group, call.served.api.plural, ref.name) from None
        raise from_control_plane(e, ref=ref, claim_namespace=rt.claim_namespace, cluster_id=rt.cluster_id) from None
    call.warnings.extend(app_warnings(rt, reply.warnings, ref, ref.namespace))
    try:
        wanted = resource_version((reply.body.get("metadata") or {}).get("resourceVersion"))
    except (ValueError, AttributeError):
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONSISTENT_SECONDS
    while cache.ready:
        entry = cache.get(ref.namespace, ref.name)
        if entry is not None and entry.rv == wanted:
            return entry
        left = deadline - loop.time()
        if left <= 0 or (entry is not None and entry.rv > wanted):
            break
        await cache.changed(left)
    cache.proofs.missed(key)
    return None


async def _get(rt: Runtime, call: Call, cache: Cache, form: forms.Form) -> web.StreamResponse | None:
    ref = app_ref(rt, call.route)
    rv = call.query.get("resourceVersion", "")
    if rv == "":
        entry = await _consistent_entry(rt, call, cache, ref)
        if entry is None:
            return None
    else:
        if await _version(cache, rv) is None:
            return None
        entry = cache.get(ref.namespace, ref.name)
        if entry is None:
            raise not_found(call.served.group, call.served.api.plural, ref.name)
    CACHE_READS.labels("get").inc()
    return _response(form.object_bytes(entry), call)


def _limit(call: Call) -> int:
    """The page size, parsed at the edge (http.params); 0 or less lists everything, as in kube-apiserver."""
    return max(0, call.params.limit)


async def _list(
    rt: Runtime, call: Call, cache: Cache, form: forms.Form, direct: Direct
) -> web.StreamResponse | None:
    rv, match = call.query.get("resourceVersion", ""), call.query.get("resourceVersionMatch", "")
    limit = _limit(call)
    if limit < 0 or call.query.get("continue") or match not in ("", "NotOlderThan"):
        return None
    if match == "NotOlderThan" and rv == "":
        return None
    if match == "" and limit > 0 and rv not in ("", "0"):
        return None  # the legacy exact-version list
    selection = _selection(rt, call)
    if selection is None:
        return None
    if rv == "":
        return await _consistent_list(rt, call, cache, form, selection, direct)
    at = await _version(cache, rv)
    return None if at is None else _listed(call, cache, form, selection, at)


async def _consistent_list(
    rt: Runtime, call: Call, cache: Cache, form: forms.Form, selection: Selection, direct: Direct
) -> web.StreamResponse:
    """A consistent LIST: proven and answered from the cache while other reads of its scope share
    the proof; a lone one by the path measured faster for its scope and selection (paths.py).

    Measured side by side (README, issue 23): under concurrency the shared proof is cheaper per
    read than every reader's own control-plane list, which costs the connector twice the CPU.
    """
    shared = cache.proofs.in_flight(("list", call.route.namespace, None))
    # A digest of what the tenant sent: kept for up to paths.SCOPES_KEPT scopes, it must not hold the selectors.
    selected = (call.route.namespace, call.query.get("labelSelector", ""), call.query.get("fieldSelector", ""))
    scope = hashlib.sha256(orjson.dumps(selected)).digest()
    path = Path.CACHE if shared else cache.paths.choose(scope)
    started = time.monotonic()
    answer: web.StreamResponse | None = None
    if path is Path.CACHE:
        at = await _consistent(rt, call, cache, None)
        answer = None if at is None else _listed(call, cache, form, selection, at)
    if answer is None:
        answer = await direct()
    if not shared:
        cache.paths.took(scope, path, time.monotonic() - started)
    CONSISTENT_LIST_PATHS.labels(path.value).inc()
    return answer


def _listed(call: Call, cache: Cache, form: forms.Form, selection: Selection, at: int) -> web.Response | None:
    """The cache's list at version ``at``; None when the control plane must page it."""
    entries = cache.select(selection)
    limit = _limit(call)
    if limit and call.query.get("resourceVersion", "") != "0" and len(entries) > limit:
        return None  # the control plane pages it (its continue tokens stay its own)
    CACHE_READS.labels("list").inc()
    served = call.served
    body = form.list_bytes(entries, kind=served.api.list_kind, api_version=served.api_version, resource_version=at)
    return _response(body, call)


def _table(call: Call, api_version: str) -> forms.Form | None:
    columns = call.served.version.printer_columns
    return tables.table_form(columns, call.query.get("includeObject"), api_version)


def _bookmark(cache: Cache, form: forms.Form) -> Any:
    served = cache.served

    def line(rv: int, initial_end: bool) -> bytes:
        return form.bookmark(rv, kind=served.api.kind, api_version=served.api_version, initial_end=initial_end)

    return line


async def _watch(
    request: web.Request, rt: Runtime, call: Call, cache: Cache, form: forms.Form
) -> web.StreamResponse | None:
    query = call.query
    rv, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
    initial_events = query.get("sendInitialEvents")
    bookmarks = query_flag(query, "allowWatchBookmarks")
    if initial_events is not None:
        if (
            initial_events not in ("true", "false")
            or match != "NotOlderThan"
            or (initial_events == "true" and not bookmarks)
        ):
            return None  # refused by the control plane in its own words
    elif match:
        return None
    if form.headers_once and bookmarks:
        return None  # bookmarks as Table rows: the control plane's own conversion
    selection = _selection(rt, call)
    if selection is None:
        return None
    if call.route.name is not None:
        app_ref(rt, call.route)
    if not await cache.wait_ready(READY_SECONDS):
        return None
    send_initial = initial_events == "true" or (initial_events is None and rv in ("", "0"))
    start = cache.rv
    if initial_events == "true" and rv == "":
        at = await _consistent(rt, call, cache, selection.exact_name if call.route.namespace else None)
        if at is None:
            return None
        start = max(at, cache.rv)
    elif rv not in ("", "0"):
        try:
            wanted = resource_version(rv)
        except ValueError:
            return None
        if initial_events == "true":
            if not await cache.wait_for(wanted, BLOCK_SECONDS):
                if not cache.ready:
                    return None
                raise too_large(wanted, cache.rv)
            start = cache.rv
        else:
            if cache.history.expired(wanted):
                return await _expired(request, call, wanted, cache.history.start)
            if not cache.history.covers(wanted):
                return None  # older than the cache's last list: the control plane answers it
            start = wanted
    if not cache.ready:
        return None
    # From here to the watcher's registration nothing awaits: the snapshot, the history
    # replayed and the registration see one version of the cache.
    watcher = fanout.Watcher(
        selection, form, bookmarks=bookmarks, bookmark=_bookmark(cache, form), limit_bytes=cache.watch_bytes
    )
    initial: list[bytes] = []
    if send_initial:
        initial = [
            part
            for i, e in enumerate(cache.select(selection))
            for part in forms.event_parts("ADDED", form.event_bytes(e, headers=i == 0 and form.headers_once))
        ]
        if initial:
            watcher.first = False
        if initial_events == "true" and bookmarks:
            initial.append(watcher.bookmark_line(start, True))
        after = start
    else:
        after = start
        for event in cache.history.since(after):
            watcher.offer(event)
    watcher.after = after
    cache.watchers.add(watcher)
    if rt.draining.is_set():
        watcher.close()  # shutting down: the initial events, then a clean end (the client re-watches elsewhere)
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache", "Audit-ID": call.audit_id},
    )
    response.enable_chunked_encoding()
    OPEN_WATCHES.inc()
    CACHE_READS.labels("watch").inc()
    try:
        await response.prepare(request)
        await fanout.pump(
            response.write,
            watcher,
            initial,
            deadline=fanout.deadline_of(call.params.timeout_seconds),
            current=lambda: max(cache.rv, watcher.after),
        )
    except (ConnectionResetError, BrokenPipeError, asyncio.CancelledError) as e:
        if isinstance(e, asyncio.CancelledError):
            raise
    finally:
        OPEN_WATCHES.dec()
        watcher.close()
        cache.watchers.discard(watcher)
    if watcher.reason:
        log.info("watch ended early", extra={"fields": {"reason": watcher.reason}})
    return response


async def _expired(request: web.Request, call: Call, wanted: int, oldest: int) -> web.StreamResponse:
    """kube-apiserver's answer to a watch its window no longer reaches: 200, one 410 ERROR event.

    Its cacher answers so (not with an HTTP 410) once the request is parsed and authorized;
    clients then list again.
    """
    status = status_body(410, f"too old resource version: {wanted} ({oldest})", reason="Expired")
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache", "Audit-ID": call.audit_id},
    )
    response.enable_chunked_encoding()
    CACHE_READS.labels("watch").inc()
    await response.prepare(request)
    await response.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
    return response


async def serve(request: web.Request, rt: Runtime, call: Call, direct: Direct) -> web.StreamResponse | None:
    """Answer a get, list or watch from the cache, or return None to send it to the control plane.

    ``direct`` is the control plane's answer to the request; a consistent LIST may choose it
    itself, to time it (paths.py).
    """
    if rt.caches is None or call.route.subresource not in (None, "status"):
        return None
    if call.verb not in ("get", "list", "watch"):
        return None
    form = forms.negotiate(call.output, listing=call.verb == "list", table=functools.partial(_table, call))
    if form is None:
        return None
    cache = rt.caches.of(call.served)
    if call.verb == "watch":
        return await _watch(request, rt, call, cache, form)
    if not cache.ready:
        return None
    if call.verb == "get":
        return await _get(rt, call, cache, form)
    return await _list(rt, call, cache, form, direct)


__all__ = ["serve", "too_large"]
