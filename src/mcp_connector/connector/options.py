"""Command-line flags and ``MCP_CONNECTOR_*`` environment variables for ``mcp-connector serve``.

Parsing never fails early: every value is kept as given, and ``validate`` collects *all*
problems with their flag names, so a misconfigured Deployment reports everything at once and
no half-started server ever exists (sample-apiserver's options → validate → config → run).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ENV_PREFIX = "MCP_CONNECTOR_"


@dataclass(frozen=True)
class Flag:
    """One flag: its name, help and default (environment variable derived from the name)."""

    name: str
    help: str
    default: str | None = None
    repeatable: bool = False
    boolean: bool = False

    @property
    def env(self) -> str:
        """The environment variable that sets this flag."""
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        """The attribute name on ServeOptions."""
        return self.name.replace("-", "_")


FLAGS = (
    Flag("control-plane-kubeconfig", "kubeconfig file for the control plane"),
    Flag("context", "context in --control-plane-kubeconfig (default: its current context)"),
    Flag("upbound-host", "Upbound API host (with --account, --control-plane, --token-file)"),
    Flag("account", "Upbound account (organization) owning the control plane"),
    Flag("control-plane", "Upbound control-plane name"),
    Flag("token-file", "file holding the Upbound API token (re-read when it changes)"),
    Flag("claim-namespace", "control-plane namespace holding this cluster's claims (required)"),
    Flag("cluster-id", "this app cluster's ID (default: UID of its kube-system namespace)"),
    Flag("app-kubeconfig", "kubeconfig for the app cluster (default: in-cluster service account)"),
    Flag("port", "HTTPS port to listen on", "8443"),
    Flag("bind-address", "address to listen on", "0.0.0.0"),
    Flag("tls-cert-file", "serving certificate (PEM, with chain)"),
    Flag("tls-key-file", "serving certificate key (PEM)"),
    Flag("tls-ca-file", "CA that verifies the serving certificate (APIService caBundle with --tls-cert-file)"),
    Flag("cert-dir", "directory for a generated CA (kept across restarts) and serving certificate"),
    Flag("tls-san", "extra subject alternative name for the generated certificate (repeatable)", repeatable=True),
    Flag("service-name", "Service in front of the connector (SANs and managed APIServices)", "mcp-connector"),
    Flag("service-namespace", "namespace of that Service", "kube-system"),
    Flag("service-port", "port of that Service (managed APIServices)", "443"),
    Flag("manage-apiservices", "create/update/delete APIServices for the served claim APIs", boolean=True),
    Flag(
        "apiservice-owner",
        "ClusterRole owning the managed APIServices: deleting it removes them, and none are made while it is missing",
    ),
    Flag("secret-resync-seconds", "full connection-Secret resync interval", "60"),
    Flag("event-poll-seconds", "interval of the passes copying claim events into the app cluster", "15"),
    Flag("upstream-timeout-seconds", "timeout of control-plane requests", "30"),
    Flag(
        "watch-idle-timeout-seconds",
        "end a control-plane watch (and the app watch it feeds) after this long without a byte",
        "130",
    ),
    Flag("authz-allowed-ttl-seconds", "how long an allowed SubjectAccessReview is cached", "10"),
    Flag("authz-denied-ttl-seconds", "how long a denied SubjectAccessReview is cached", "5"),
    Flag("authz-cache-size", "most SubjectAccessReview decisions kept", "10000"),
    Flag("max-requests-inflight", "requests (not watches) served at once, all users together", "400"),
    Flag("max-requests-inflight-per-user", "requests (not watches) one user may have in flight", "100"),
    Flag(
        "max-requests-inflight-per-namespace",
        "requests (not watches) one namespace may have in flight: a ServiceAccount counts in its own"
        " namespace, other users in the request's",
        "200",
    ),
    Flag("max-watches", "watches open at once, all users together", "1000"),
    Flag("max-watches-per-user", "watches one user may have open", "100"),
    Flag("max-watches-per-namespace", "watches one namespace may have open (counted as for requests)", "500"),
    Flag(
        "cache-history-bytes",
        "bytes of recent changes the caches keep for resuming watches, all claim APIs together"
        " (the oldest go first; a watch from a version no longer kept gets 410 Expired)",
        str(128 * 1024 * 1024),
    ),
    Flag(
        "watch-queue-bytes",
        "bytes of changes one client watch may have waiting before it is cut off",
        str(8 * 1024 * 1024),
    ),
    Flag(
        "leader-elect",
        "elect one replica (through a Lease in the app cluster) to write connection Secrets and APIServices",
        "true",
    ),
    Flag("leader-elect-lease-name", "the leader election Lease (default: --service-name)"),
    Flag("leader-elect-lease-namespace", "namespace of that Lease (default: --service-namespace)"),
    Flag("leader-elect-identity", "this replica's name in the Lease (default: host name and a random suffix)"),
    Flag("leader-elect-lease-duration-seconds", "how long others wait after the last renewal to take over", "15"),
    Flag("leader-elect-renew-deadline-seconds", "how long the leader keeps trying to renew before it stops", "10"),
    Flag("leader-elect-retry-period-seconds", "how often to try to acquire or renew", "2"),
    Flag(
        "shutdown-delay-seconds",
        "after SIGTERM, keep serving this long while unready so endpoints move elsewhere",
        "5",
    ),
    Flag("shutdown-timeout-seconds", "then wait this long for requests in flight to finish", "20"),
    Flag("log-level", "debug, info, warning or error", "info"),
)

#: The fair-share flags: whole numbers of at least 1 (see http/fairshare.py).
LIMIT_FLAGS = (
    "max-requests-inflight",
    "max-requests-inflight-per-user",
    "max-requests-inflight-per-namespace",
    "max-watches",
    "max-watches-per-user",
    "max-watches-per-namespace",
)


@dataclass(frozen=True)
class ServeOptions:
    """Flag values exactly as given (strings), before validation."""

    values: Mapping[str, str | None]
    sans: tuple[str, ...] = ()
    manage_apiservices: bool = False
    errors: tuple[str, ...] = field(default=())

    def get(self, name: str) -> str | None:
        """A flag's value by flag name, or None."""
        value = self.values.get(name.replace("-", "_"))
        return value if value not in ("", None) else None


def parser() -> argparse.ArgumentParser:
    """The ``serve`` subcommand's argument parser (values stay strings)."""
    p = argparse.ArgumentParser(prog="mcp-connector serve", description="Serve claim APIs to an app cluster.")
    for flag in FLAGS:
        help_text = f"{flag.help} [env {flag.env}]"
        if flag.boolean:
            p.add_argument(f"--{flag.name}", dest=flag.dest, action="store_true", default=None, help=help_text)
        elif flag.repeatable:
            p.add_argument(f"--{flag.name}", dest=flag.dest, action="append", default=None, help=help_text)
        else:
            p.add_argument(f"--{flag.name}", dest=flag.dest, default=None, help=help_text)
    return p


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeOptions:
    """Read flags, then fill gaps from the environment, then from defaults."""
    env = os.environ if env is None else env
    namespace = parser().parse_args(list(argv))
    values: dict[str, str | None] = {}
    sans: tuple[str, ...] = ()
    manage = False
    for flag in FLAGS:
        given = getattr(namespace, flag.dest)
        if flag.boolean:
            manage = bool(given) if given is not None else env.get(flag.env, "").lower() in ("1", "true", "yes")
        elif flag.repeatable:
            sans = tuple(given or [s.strip() for s in env.get(flag.env, "").split(",") if s.strip()])
        else:
            values[flag.dest] = given if given is not None else env.get(flag.env, flag.default)
    return ServeOptions(values, sans, manage)


def _number(options: ServeOptions, name: str, errors: list[str], *, low: float, high: float) -> None:
    raw = options.get(name)
    try:
        value = float(raw or "")
    except ValueError:
        errors.append(f"--{name}: {raw!r} is not a number")
        return
    if not low <= value <= high:
        errors.append(f"--{name}: {raw} is outside {low:g}..{high:g}")


def validate(options: ServeOptions) -> list[str]:
    """Every problem with the options, each naming its flag; empty when they can work."""
    errors: list[str] = []
    kubeconfig = options.get("control-plane-kubeconfig")
    upbound = {n: options.get(n) for n in ("upbound-host", "account", "control-plane", "token-file")}
    if kubeconfig and any(upbound.values()):
        errors.append("--control-plane-kubeconfig: give either a kubeconfig or the Upbound flags, not both")
    elif not kubeconfig and not all(upbound.values()):
        missing = [f"--{n}" for n, v in upbound.items() if not v]
        if any(upbound.values()):
            errors.append(f"{', '.join(missing)}: needed for an Upbound control plane")
        else:
            errors.append(
                "--control-plane-kubeconfig: required (or --upbound-host, --account, --control-plane, --token-file)"
            )
    for name in (
        "control-plane-kubeconfig",
        "token-file",
        "app-kubeconfig",
        "tls-cert-file",
        "tls-key-file",
        "tls-ca-file",
    ):
        path = options.get(name)
        if path and not os.path.isfile(path):
            errors.append(f"--{name}: {path} is not a readable file")
    if not options.get("claim-namespace"):
        errors.append("--claim-namespace: required")
    cert, key, cert_dir = options.get("tls-cert-file"), options.get("tls-key-file"), options.get("cert-dir")
    if bool(cert) != bool(key):
        errors.append("--tls-cert-file/--tls-key-file: give both or neither")
    if cert and cert_dir:
        errors.append("--cert-dir: give either --cert-dir or --tls-cert-file/--tls-key-file, not both")
    if not cert and not cert_dir:
        errors.append("--cert-dir: required unless --tls-cert-file and --tls-key-file are given")
    if options.manage_apiservices and cert and not options.get("tls-ca-file"):
        errors.append("--tls-ca-file: required with --manage-apiservices and --tls-cert-file (the caBundle)")
    if options.get("apiservice-owner") and not options.manage_apiservices:
        errors.append("--apiservice-owner: only with --manage-apiservices")
    _number(options, "port", errors, low=1, high=65535)
    _number(options, "service-port", errors, low=1, high=65535)
    _number(options, "watch-idle-timeout-seconds", errors, low=1, high=86400)
    for name in (
        "secret-resync-seconds",
        "upstream-timeout-seconds",
        "authz-allowed-ttl-seconds",
        "authz-denied-ttl-seconds",
    ):
        _number(options, name, errors, low=0, high=86400)
    _number(options, "event-poll-seconds", errors, low=1, high=86400)
    _number(options, "authz-cache-size", errors, low=1, high=10_000_000)
    for name in LIMIT_FLAGS:
        _number(options, name, errors, low=1, high=100_000)
    for name in ("cache-history-bytes", "watch-queue-bytes"):
        _number(options, name, errors, low=1024 * 1024, high=2**40)
    _validate_leader(options, errors)
    _number(options, "shutdown-delay-seconds", errors, low=0, high=3600)
    _number(options, "shutdown-timeout-seconds", errors, low=0, high=3600)
    if (options.get("log-level") or "").lower() not in ("debug", "info", "warning", "error"):
        errors.append(f"--log-level: {options.get('log-level')!r} is not one of debug, info, warning, error")
    return errors


#: DNS-1123 subdomain (a Lease's name and a namespace's, as apimachinery checks them).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def leader_elect(options: ServeOptions) -> bool:
    """Whether --leader-elect is on."""
    return (options.get("leader-elect") or "true").lower() in ("true", "1", "yes")


def _validate_leader(options: ServeOptions, errors: list[str]) -> None:
    if (options.get("leader-elect") or "true").lower() not in ("true", "false", "1", "0", "yes", "no"):
        errors.append(f"--leader-elect: {options.get('leader-elect')!r} is not true or false")
    for name in ("leader-elect-lease-name", "leader-elect-lease-namespace"):
        value = options.get(name)
        if value is not None and (len(value) > 253 or not _DNS_SUBDOMAIN.match(value)):
            errors.append(f"--{name}: {value!r} is not a valid name (DNS-1123 subdomain)")
    identity = options.get("leader-elect-identity")
    if identity is not None and len(identity) > 253:
        errors.append("--leader-elect-identity: longer than 253 characters")
    names = ("lease-duration", "renew-deadline", "retry-period")
    before = len(errors)
    for name in names:
        _number(options, f"leader-elect-{name}-seconds", errors, low=0.1, high=3600)
    if len(errors) == before:
        lease, renew, retry = (float(options.get(f"leader-elect-{n}-seconds") or 0) for n in names)
        if lease <= renew:
            errors.append("--leader-elect-lease-duration-seconds: must be longer than the renew deadline")
        if renew <= 1.2 * retry:
            errors.append("--leader-elect-renew-deadline-seconds: must be longer than 1.2 x the retry period")
