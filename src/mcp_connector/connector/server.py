"""Run the connector: connect both clusters, start the followers, serve HTTPS until stopped.

Everything that can change while we run (claim APIs, the front-proxy CA, connection Secrets,
APIServices) is a follower kicking a reconcile; the HTTP server only reads their snapshots.
A control plane that is down at start is not fatal: the server comes up (``/readyz`` says
not ready, requests get 503) and the followers retry until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web

from mcp_connector import upstream
from mcp_connector.connector.admission.chain import Admission
from mcp_connector.connector.cache import reflector
from mcp_connector.connector.cache.history import Budget
from mcp_connector.connector.cache.registry import Caches
from mcp_connector.connector.config import Config, ConfigError
from mcp_connector.connector.errors import from_control_plane
from mcp_connector.connector.followers import apiservices, events, follow, secrets_index, secrets_sync
from mcp_connector.connector.followers.catalog import Catalog
from mcp_connector.connector.http import app, auth, framing
from mcp_connector.connector.http.authz import SAR_PATH, Authorizer
from mcp_connector.connector.http.fairshare import Gates
from mcp_connector.connector.http.health import Health
from mcp_connector.connector.http.tls import SwappableContext
from mcp_connector.connector.http.tokens import TOKEN_REVIEW_PATH, TokenAuthenticator
from mcp_connector.connector.leader.election import Elector
from mcp_connector.connector.leader.leading import LeaderTasks
from mcp_connector.connector.leader.lock import LeaseLock
from mcp_connector.connector.logs import fields
from mcp_connector.connector.metrics import SERVED_APIS
from mcp_connector.connector.runtime import Runtime
from mcp_connector.core.discovery import CRD_LIST, XRD_LIST, Unserved

log = logging.getLogger(__name__)

CONFIGMAP_PATH = upstream.api_path("api", "v1", "namespaces", auth.CONFIGMAP_NAMESPACE, "configmaps")

#: Connections beyond the users' share, for the connector's own calls (followers, Secret sync, probes).
OWN_CONNECTIONS = 50


def _client(access: Any, token_file: str | None, timeout: float, connections: int) -> upstream.Client:
    """A pooled aiohttp client (see upstream.AioClient); over HTTP/1.1 each open watch holds a connection."""
    return upstream.AioClient(access, timeout=timeout, max_connections=connections, token_file=token_file)


async def cluster_id_of(app_cluster: upstream.Client) -> str:
    """The default cluster ID: the UID of the app cluster's kube-system namespace."""
    namespace = await upstream.request(app_cluster, "GET", upstream.api_path("api", "v1", "namespaces", "kube-system"))
    return str(namespace["metadata"]["uid"])


async def read_front_proxy(app_cluster: upstream.Client) -> auth.FrontProxySettings | None:
    """The request-header settings the app cluster publishes now (None if it publishes none)."""
    configmap = await upstream.request(app_cluster, "GET", CONFIGMAP_PATH.child(auth.CONFIGMAP_NAME))
    return auth.settings_from_configmap(configmap.get("data") or {})


def _dump_tasks() -> None:
    """SIGUSR1: log where every task is waiting (for diagnosing a stuck follower)."""
    for task in asyncio.all_tasks():
        frames: list[str] = []
        awaiting: Any = task.get_coro()
        while awaiting is not None and len(frames) < 30:
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "ag_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}:{frame.f_code.co_name}")
            awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "ag_await", None)
        log.warning("task", extra=fields(task=task.get_name(), stack=" <- ".join(frames)[-1500:]))


async def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT."""
    cp_access, cp_token, timeout, limits = (
        config.control_plane,
        config.control_plane_token_file,
        config.upstream_timeout,
        config.limits,
    )
    # Two control-plane pools: requests never wait for a connection an open watch holds, and
    # the fair-share limits keep each pool from filling up (http/fairshare.py).
    control_plane = _client(cp_access, cp_token, timeout, limits.requests + OWN_CONNECTIONS)
    control_plane_watches = _client(cp_access, cp_token, timeout, limits.watches + OWN_CONNECTIONS)
    app_cluster = _client(config.app_cluster, config.app_token_file, timeout, limits.requests + OWN_CONNECTIONS)
    try:
        await _serve(config, control_plane, control_plane_watches, app_cluster)
    finally:
        for client in (control_plane, control_plane_watches, app_cluster):
            await client.aclose()


async def _serve(
    config: Config,
    control_plane: upstream.Client,
    control_plane_watches: upstream.Client,
    app_cluster: upstream.Client,
) -> None:
    try:
        cluster_id = config.cluster_id or await cluster_id_of(app_cluster)
        front_proxy = await read_front_proxy(app_cluster)
    except upstream.ControlPlaneError as e:
        raise ConfigError(f"--app-kubeconfig: the app cluster cannot be used: {e}") from None

    async def review(body: dict[str, Any]) -> dict[str, Any]:
        return await upstream.request(app_cluster, "POST", SAR_PATH, json_body=body)

    async def review_token(body: dict[str, Any]) -> dict[str, Any]:
        return await upstream.request(app_cluster, "POST", TOKEN_REVIEW_PATH, json_body=body)

    rt = Runtime(
        control_plane=control_plane,
        control_plane_watches=control_plane_watches,
        app_cluster=app_cluster,
        control_plane_url=config.control_plane.url,
        cluster_id=cluster_id,
        claim_namespace=config.claim_namespace,
        authorizer=Authorizer(
            review,
            allowed_ttl=config.authz_allowed_ttl,
            denied_ttl=config.authz_denied_ttl,
            max_entries=config.authz_cache_size,
        ),
        front_proxy=front_proxy,
        watch_idle_timeout=config.watch_idle_timeout,
        gates=Gates(config.limits),
        tokens=TokenAuthenticator(review_token),
        caches=Caches(
            reflector.Upstream(control_plane, control_plane_watches, config.claim_namespace, config.watch_idle_timeout),
            cluster_id,
            budget=Budget(config.cache_history_bytes),
            watch_bytes=config.watch_queue_bytes,
        ),
    )
    rt.admission = Admission(app_cluster)
    rt.admission.start()
    context = SwappableContext(config.serving, front_proxy.client_ca_pem if front_proxy else None)

    apiservice_trigger: follow.Trigger | None = None
    if config.service is not None:
        service = config.service

        async def sync_apiservices() -> None:
            if rt.catalog_loaded:
                await apiservices.reconcile(app_cluster, rt.catalog, service)

        apiservice_trigger = follow.Trigger("apiservices", sync_apiservices, every=120)

    secrets = secrets_sync.SecretSync(rt, every=config.secret_resync_seconds)
    # Warm on every replica, so a new leader syncs what is missing or stale before its full reconcile.
    secret_indexes = secrets_index.SecretIndexes(rt, secrets)
    secrets.first = secret_indexes.first_to_sync
    if rt.caches is not None:
        rt.caches.listeners.append(secrets.claim_changed)
        rt.caches.relisted.append(secrets.request_full)

    unserved: tuple[Unserved, ...] = ()

    async def refresh_catalog() -> None:
        nonlocal unserved
        try:
            found = await upstream.discover_apis(control_plane)
        except upstream.ControlPlaneError as e:
            rt.catalog_error = str(from_control_plane(e, ref=None, claim_namespace=config.claim_namespace))
            raise
        apis = found.apis
        if found.unserved != unserved:
            unserved = found.unserved
            for entry in unserved:
                log.info("XRD not served", extra=fields(xrd=entry.xrd_name, reason=entry.reason))
        changed = apis != rt.catalog.apis or not rt.catalog_loaded
        rt.catalog, rt.catalog_loaded = Catalog.of(apis), True
        SERVED_APIS.set(len(apis))
        if rt.caches is not None:
            rt.caches.sync(rt.catalog)
        if changed:
            log.info("serving claim and XR APIs", extra=fields(apis=[a.resource for a in apis]))
            secrets.request_full()
            if apiservice_trigger is not None:
                apiservice_trigger.kick()

    async def refresh_front_proxy() -> None:
        settings = await read_front_proxy(app_cluster)
        if settings != rt.front_proxy:
            rt.front_proxy = settings
            context.update(settings.client_ca_pem if settings else None)
            log.info(
                "front-proxy settings changed",
                extra=fields(allowed_names=list(settings.allowed_names) if settings else []),
            )

    catalog_trigger = follow.Trigger("claim-apis", refresh_catalog, every=300)
    proxy_trigger = follow.Trigger("front-proxy", refresh_front_proxy, every=300)
    with contextlib.suppress(upstream.ControlPlaneError):
        await refresh_catalog()
    tasks = [asyncio.create_task(t.run()) for t in (catalog_trigger, proxy_trigger)]
    tasks += secret_indexes.tasks()
    tasks += [
        asyncio.create_task(follow.follow(control_plane_watches, upstream.api_path(*XRD_LIST), catalog_trigger)),
        asyncio.create_task(follow.follow(control_plane_watches, upstream.api_path(*CRD_LIST), catalog_trigger)),
        asyncio.create_task(
            follow.follow(
                app_cluster,
                CONFIGMAP_PATH,
                proxy_trigger,
                params={"fieldSelector": f"metadata.name={auth.CONFIGMAP_NAME}"},
            )
        ),
    ]
    writers = _writers(config, rt, secrets, apiservice_trigger)
    elector: Elector | None = None
    if config.leader is None:
        writers.start()
    else:
        lease = config.leader
        elector = Elector(
            LeaseLock(app_cluster, namespace=lease.namespace, name=lease.name, timeout=lease.timing.retry_period),
            lease.identity,
            timing=lease.timing,
            started=writers.start,
            stopped=writers.stop,
        )
    elector_task = asyncio.create_task(elector.run()) if elector is not None else None
    # aiohttp's shutdown waits its timeout for handlers to finish, then, not yet cancelling them,
    # waits it again before it cancels: half of ours each, so a request stuck upstream is ended
    # once --shutdown-timeout-seconds have passed, within terminationGracePeriodSeconds (0 would
    # mean no bound at all to aiohttp, so never less than 10 ms).
    runner = framing.runner(app.build(rt, Health(rt)), shutdown_timeout=max(config.shutdown_timeout / 2, 0.01))
    await runner.setup()
    # A deep accept queue (the kernel caps it at somaxconn, as for Go servers): a burst of new
    # connections from one client must not push other clients' connects into SYN retries.
    site = web.TCPSite(runner, config.bind_address, config.port, ssl_context=context.listening, backlog=4096)
    await site.start()
    log.info(
        "serving",
        extra=fields(
            address=f"https://{config.bind_address}:{config.port}",
            control_plane=config.control_plane.url,
            cluster_id=cluster_id,
            claim_namespace=config.claim_namespace,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    try:
        await stop.wait()
        await _drain(config, rt, writers, elector, elector_task)
    finally:
        log.info("stopping")
        writers.stop()
        # Stop listening and finish what is in flight (up to --shutdown-timeout-seconds) while the
        # caches and followers still run, then stop them.
        await runner.cleanup()
        for task in [*tasks, *([elector_task] if elector_task else [])]:
            task.cancel()
        await asyncio.gather(*tasks, *([elector_task] if elector_task else []), return_exceptions=True)
        await writers.drain()
        if rt.caches is not None:
            await rt.caches.close()
        await rt.admission.close()
        log.info("stopped")


def _writers(
    config: Config, rt: Runtime, secrets: secrets_sync.SecretSync, apiservice_trigger: follow.Trigger | None
) -> LeaderTasks:
    """What only the leader runs: connection-Secret and claim-event copies and, with
    --manage-apiservices, APIServices."""
    writers = LeaderTasks()
    writers.on_start(secrets.request_full)
    writers.add("connection-secrets", secrets.run)
    mirror = events.EventMirror(rt, every=config.event_poll_seconds)
    if rt.caches is not None:
        rt.caches.listeners.append(mirror.claim_changed)  # every replica notes changes; the leader copies
    writers.add("claim-events", mirror.run)
    if apiservice_trigger is not None:
        trigger = apiservice_trigger
        writers.on_start(trigger.kick)
        writers.add("apiservices", trigger.run)
        if config.service is not None and config.service.owner:
            # The owner's appearance (install applied) or removal (install deleted) re-runs the reconcile.
            owner = config.service.owner
            writers.add(
                "apiservice-owner",
                lambda: follow.follow(
                    rt.app_cluster,
                    apiservices.OWNER_LIST_PATH,
                    trigger,
                    params={"fieldSelector": f"metadata.name={owner}"},
                ),
            )
    return writers


async def _drain(
    config: Config,
    rt: Runtime,
    writers: LeaderTasks,
    elector: Elector | None,
    elector_task: asyncio.Task[None] | None,
) -> None:
    """SIGTERM: unready, hand the Lease over, serve on for the shutdown delay, then end watches.

    The writers stop and the Lease is released first, so the next leader takes over at once
    instead of after a lease duration; serving needs no leadership. ``runner.cleanup`` then
    stops listening and waits up to --shutdown-timeout-seconds for requests in flight.
    """
    rt.stopping = True
    log.info(
        "shutting down: unready, serving on while endpoints move",
        extra=fields(delay_seconds=config.shutdown_delay, timeout_seconds=config.shutdown_timeout),
    )
    waited = asyncio.get_running_loop().time()
    if elector is not None and elector_task is not None:
        elector.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(elector_task), 2 * elector.timing.retry_period)
    else:
        writers.stop()
    await writers.drain()
    left = config.shutdown_delay - (asyncio.get_running_loop().time() - waited)
    if left > 0:
        await asyncio.sleep(left)
    log.info("shutting down: ending watches, finishing requests in flight")
    rt.draining.set()
    if rt.caches is not None:
        for cache in rt.caches:
            for watcher in list(cache.watchers):
                watcher.close()
