"""Validated options turned into what the server runs with: access objects, files, numbers.

Reads the files the flags name (kubeconfigs, token, certificates); errors name the flag and
never quote file contents.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mcp_connector.connector.followers.apiservices import ServiceRef
from mcp_connector.connector.http import tls
from mcp_connector.connector.http.fairshare import Limits
from mcp_connector.connector.leader.election import Timing
from mcp_connector.connector.options import ServeOptions, leader_elect
from mcp_connector.core import access

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(ValueError):
    """Options that validated but cannot be put to use (unreadable or wrong file contents)."""


@dataclass(frozen=True)
class Config:
    """Everything ``server.run`` needs."""

    control_plane: access.ControlPlaneAccess = field(repr=False)
    control_plane_token_file: str | None
    app_cluster: access.ControlPlaneAccess = field(repr=False)
    app_token_file: str | None
    claim_namespace: str
    cluster_id: str | None
    bind_address: str
    port: int
    serving: tls.ServingFiles
    service: ServiceRef | None
    secret_resync_seconds: float
    #: Interval of the claim-event copy passes (followers/events.py).
    event_poll_seconds: float
    upstream_timeout: float
    watch_idle_timeout: float
    authz_allowed_ttl: float
    authz_denied_ttl: float
    authz_cache_size: int
    limits: Limits
    cache_history_bytes: int
    watch_queue_bytes: int
    log_level: str
    #: None: no election, this process runs the writers itself (--leader-elect=false).
    leader: LeaderElection | None = None
    shutdown_delay: float = 5.0
    shutdown_timeout: float = 20.0


@dataclass(frozen=True)
class LeaderElection:
    """Which Lease, who we are in it, and the three durations."""

    namespace: str
    name: str
    identity: str
    timing: Timing


def identity_of(options: ServeOptions) -> str:
    """The flag's identity, or client-go's default: the host name and a random suffix (unique per process)."""
    return options.get("leader-elect-identity") or f"{socket.gethostname()}_{uuid.uuid4()}"


def leader_election(options: ServeOptions) -> LeaderElection | None:
    """The election settings, or None with --leader-elect=false."""
    if not leader_elect(options):
        return None
    return LeaderElection(
        namespace=options.get("leader-elect-lease-namespace") or options.get("service-namespace") or "kube-system",
        name=options.get("leader-elect-lease-name") or options.get("service-name") or "mcp-connector",
        identity=identity_of(options),
        timing=Timing(
            lease_duration=float(options.get("leader-elect-lease-duration-seconds") or 15),
            renew_deadline=float(options.get("leader-elect-renew-deadline-seconds") or 10),
            retry_period=float(options.get("leader-elect-retry-period-seconds") or 2),
        ),
    )


def _read(path: str, flag: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"--{flag}: cannot read {path}: {e.strerror}") from None


def control_plane_access(options: ServeOptions) -> tuple[access.ControlPlaneAccess, str | None]:
    """The control plane's access settings and, for Upbound, the token file to keep re-reading."""
    kubeconfig = options.get("control-plane-kubeconfig")
    try:
        if kubeconfig:
            text = _read(kubeconfig, "control-plane-kubeconfig")
            return access.from_kubeconfig(text, context=options.get("context")), None
        token_file = options.get("token-file") or ""
        token = _read(token_file, "token-file")
        return (
            access.from_upbound(
                host=options.get("upbound-host") or "",
                account=options.get("account") or "",
                control_plane=options.get("control-plane") or "",
                token=token,
            ),
            token_file,
        )
    except access.AccessError as e:
        raise ConfigError(str(e)) from None


def app_cluster_access(options: ServeOptions) -> tuple[access.ControlPlaneAccess, str | None]:
    """The app cluster's access settings: a kubeconfig, or the pod's service account."""
    kubeconfig = options.get("app-kubeconfig")
    if kubeconfig:
        try:
            return access.from_kubeconfig(_read(kubeconfig, "app-kubeconfig")), None
        except access.AccessError as e:
            raise ConfigError(f"--app-kubeconfig: {e}") from None
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token_file = IN_CLUSTER_DIR / "token"
    if not host or not token_file.is_file():
        raise ConfigError("--app-kubeconfig: required when not running in a pod (no service account found)")
    if ":" in host:
        host = f"[{host}]"
    ca = (IN_CLUSTER_DIR / "ca.crt").read_bytes()
    return access.ControlPlaneAccess(url=f"https://{host}:{port}", ca_pem=ca), str(token_file)


def serving_files(options: ServeOptions) -> tls.ServingFiles:
    """The serving certificate: given, or generated under ``--cert-dir`` for our SANs."""
    cert, key = options.get("tls-cert-file"), options.get("tls-key-file")
    if cert and key:
        ca = options.get("tls-ca-file")
        return tls.ServingFiles(Path(cert), Path(key), Path(ca) if ca else None)
    service, namespace = options.get("service-name"), options.get("service-namespace")
    sans = [
        "localhost",
        "127.0.0.1",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        *options.sans,
    ]
    return tls.ensure_serving_cert(Path(options.get("cert-dir") or "."), sans)


def build(options: ServeOptions) -> Config:
    """Turn validated options into a Config (reads files; raises ConfigError)."""
    control_plane, cp_token_file = control_plane_access(options)
    app_cluster, app_token_file = app_cluster_access(options)
    serving = serving_files(options)
    service = None
    if options.manage_apiservices:
        if serving.ca_file is None:
            raise ConfigError("--tls-ca-file: required with --manage-apiservices")
        service = ServiceRef(
            namespace=options.get("service-namespace") or "kube-system",
            name=options.get("service-name") or "mcp-connector",
            port=int(float(options.get("service-port") or 443)),
            ca_bundle=serving.ca_file.read_bytes(),
            owner=options.get("apiservice-owner"),
        )
    return Config(
        control_plane=control_plane,
        control_plane_token_file=cp_token_file,
        app_cluster=app_cluster,
        app_token_file=app_token_file,
        claim_namespace=options.get("claim-namespace") or "",
        cluster_id=options.get("cluster-id"),
        bind_address=options.get("bind-address") or "0.0.0.0",
        port=int(float(options.get("port") or 8443)),
        serving=serving,
        service=service,
        secret_resync_seconds=float(options.get("secret-resync-seconds") or 60),
        event_poll_seconds=float(options.get("event-poll-seconds") or 15),
        upstream_timeout=float(options.get("upstream-timeout-seconds") or 30),
        watch_idle_timeout=float(options.get("watch-idle-timeout-seconds") or 130),
        authz_allowed_ttl=float(options.get("authz-allowed-ttl-seconds") or 10),
        authz_denied_ttl=float(options.get("authz-denied-ttl-seconds") or 5),
        authz_cache_size=int(float(options.get("authz-cache-size") or 10000)),
        limits=Limits(
            requests=int(float(options.get("max-requests-inflight") or 400)),
            requests_per_user=int(float(options.get("max-requests-inflight-per-user") or 100)),
            requests_per_namespace=int(float(options.get("max-requests-inflight-per-namespace") or 200)),
            watches=int(float(options.get("max-watches") or 1000)),
            watches_per_user=int(float(options.get("max-watches-per-user") or 100)),
            watches_per_namespace=int(float(options.get("max-watches-per-namespace") or 500)),
        ),
        cache_history_bytes=int(float(options.get("cache-history-bytes") or 128 * 1024 * 1024)),
        watch_queue_bytes=int(float(options.get("watch-queue-bytes") or 8 * 1024 * 1024)),
        log_level=(options.get("log-level") or "info").lower(),
        leader=leader_election(options),
        shutdown_delay=float(options.get("shutdown-delay-seconds") or 0),
        shutdown_timeout=float(options.get("shutdown-timeout-seconds") or 0),
    )
