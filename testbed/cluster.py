"""Start, stop and inspect the two local clusters: ``python -m testbed.cluster up|down|status``.

Each cluster ("control-plane", "app-cluster") is etcd + kube-apiserver +
kube-controller-manager running as ordinary processes on 127.0.0.1 with fresh certificates
and free ports; the control plane also runs real Crossplane core (``testbed.crossplane_core``).
No kubelet, scheduler or container runtime: the project only needs the API machinery (CRDs,
the aggregation layer, RBAC, namespace deletion, garbage collection) and Crossplane's
controllers.

Design choices, and why:

* Processes are detached (own session, reparented away from the caller) so they outlive
  ``up`` and never become zombies of a long-lived pytest process. Each one is the leader of
  its own process group; ``down`` signals the whole group.
* Every spawned pid is written to ``.dev/<cluster>/<component>.pid`` *immediately*, so ``down``
  can clean up even after an ``up`` that crashed half way. Before signalling, ``down`` checks
  ``/proc/<pid>/cmdline`` so a recycled pid of somebody else's process is never killed.
* ``down`` wipes the clusters' data, certificates and kubeconfigs (logs stay for post-mortems);
  every ``up`` therefore starts from an empty etcd, which keeps tests independent and start-up
  simple.
* Both clusters start in parallel threads: start-up is dominated by waiting on each apiserver.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed import (
    APP_CLUSTER,
    CLAIM_NAMESPACE,
    CLUSTERS,
    CONTROL_PLANE,
    STATE_DIR,
    STATE_FILE,
    crossplane_core,
    pki,
    seed,
)
from testbed.kube import https_get
from testbed.state import ClusterState, TestbedState, load, save
from testbed.tools import CLUSTER_TOOLS, crossplane_crds, require

#: Components per cluster, in start order; ``down`` stops them in reverse order. Crossplane and
#: its composition function run on the control plane only.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "crossplane", crossplane_core.FUNCTION)
_PORTS_PER_CLUSTER = 8
#: Extra app clusters (``extra_app_cluster``) are named with this prefix under ``.dev``.
EXTRA_PREFIX = "extra-"

#: Service ClusterIPs come from a random /16 of the loopback range, so that a ClusterIP (what the
#: aggregator dials for an in-cluster APIService) is an address of this host, where the pod
#: runner plays kube-proxy (testbed.kubelet); random so that test beds side by side differ.
SERVICE_CLUSTER_IP_PREFIX = "127.{}.0.0/16"
SERVICE_CLUSTER_IP_OCTETS = range(100, 200)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
LOG_DIR = STATE_DIR / "logs"

#: Every request at metadata level (who, what, user agent, audit ID), once per request.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""

_ETCD_TIMEOUT_S = 30.0
_APISERVER_TIMEOUT_S = 90.0
_KCM_TIMEOUT_S = 60.0
_CROSSPLANE_INIT_TIMEOUT_S = 120.0
_CROSSPLANE_READY_TIMEOUT_S = 90.0
_STOP_GRACE_S = 5.0


def _say(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Layout of one cluster on disk


@dataclass(frozen=True)
class _Layout:
    """Where one cluster keeps its files; derived from the cluster name only."""

    name: str

    @property
    def root(self) -> Path:
        return STATE_DIR / self.name

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def admin_kubeconfig(self) -> Path:
        return STATE_DIR / f"{self.name}.kubeconfig"

    @property
    def kcm_kubeconfig(self) -> Path:
        return self.root / "controller-manager.kubeconfig"

    def pid_file(self, component: str) -> Path:
        return self.root / f"{component}.pid"

    def log(self, component: str) -> Path:
        return LOG_DIR / f"{self.name}-{component}.log"

    @property
    def audit_log(self) -> Path:
        return LOG_DIR / f"{self.name}-audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.root / "audit-policy.yaml"

    def pem(self, stem: str) -> tuple[Path, Path]:
        return self.pki / f"{stem}.crt", self.pki / f"{stem}.key"


@dataclass(frozen=True)
class _Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    crossplane_metrics: int
    crossplane_health: int
    function_grpc: int
    function_package: int


#: Start-up attempts when a chosen port was taken by someone else before our server bound it.
_PORT_ATTEMPTS = 3


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free ports on 127.0.0.1.

    All sockets are held open until every port is chosen, so the same port is never handed
    out twice; the small window until the servers bind is acceptable for a test bed.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------------------------
# Certificates and kubeconfigs


@dataclass(frozen=True)
class _Pki:
    ca: tuple[Path, Path]
    serving: tuple[Path, Path]
    admin: tuple[Path, Path]
    kcm: tuple[Path, Path]
    sa_key: Path
    sa_pub: Path
    front_proxy_ca: tuple[Path, Path] | None
    proxy_client: tuple[Path, Path] | None


def _make_pki(layout: _Layout, aggregation: bool) -> _Pki:
    """Generate the cluster's CA, serving/client certs and service-account keys."""
    layout.pki.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(f"{layout.name}-ca")
    ca.write(*layout.pem("ca"))
    pki.issue(
        ca, "kube-apiserver", server=True,
        dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local"],
        ip_addresses=["127.0.0.1", "10.96.0.1"],
    ).write(*layout.pem("apiserver"))
    pki.issue(ca, "testbed-admin", organizations=["system:masters"], client=True).write(*layout.pem("admin"))
    pki.issue(ca, "system:kube-controller-manager", client=True).write(*layout.pem("controller-manager"))
    sa = pki.new_key()
    sa_key, sa_pub = layout.pki / "sa.key", layout.pki / "sa.pub"
    sa_key.touch(mode=0o600)
    sa_key.write_bytes(pki.CertKey(ca.cert, sa).key_pem)
    sa_pub.write_bytes(pki.public_key_pem(sa))
    front_proxy_ca = proxy_client = None
    if aggregation:
        fp_ca = pki.make_ca(f"{layout.name}-front-proxy-ca")
        fp_ca.write(*layout.pem("front-proxy-ca"))
        pki.issue(fp_ca, "front-proxy-client", client=True).write(*layout.pem("proxy-client"))
        front_proxy_ca, proxy_client = layout.pem("front-proxy-ca"), layout.pem("proxy-client")
    return _Pki(
        ca=layout.pem("ca"), serving=layout.pem("apiserver"), admin=layout.pem("admin"),
        kcm=layout.pem("controller-manager"), sa_key=sa_key, sa_pub=sa_pub,
        front_proxy_ca=front_proxy_ca, proxy_client=proxy_client,
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, cluster: str, user: str, server: str, ca: Path, cert: Path, key: Path) -> None:
    """A self-contained kubeconfig (credentials embedded) so it can be passed around as a string,
    e.g. to a Pulumi kubernetes Provider."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


# --------------------------------------------------------------------------------------------
# Processes

# Starts "$@" in the background with its output in the log, prints its pid and exits. The shell
# was started in a new session, so the background child leads nothing but shares the shell's
# fresh process group; once the shell exits the child is reparented away from us.
_DETACH = 'log=$1; shift; "$@" </dev/null >"$log" 2>&1 & echo $!'


def _spawn(
    layout: _Layout, component: str, binary: Path, args: list[str], env: dict[str, str] | None = None
) -> int:
    """Start a detached component process and record its pid file before anything else."""
    log = layout.log(component)
    log.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["/bin/sh", "-c", _DETACH, "sh", str(log), str(binary), *args],
        capture_output=True, text=True, check=True, start_new_session=True, env=env,
    )
    pid = int(out.stdout.strip())
    layout.pid_file(component).write_text(f"{pid}\n")
    _await_exec(pid, binary)
    return pid


def _await_exec(pid: int, binary: Path, timeout_s: float = 10.0) -> None:
    """Wait until the forked shell has exec'd ``binary`` (or died).

    ``$!`` names the background shell before it execs; until then its argv0 is ``sh``, and
    ``_is_ours`` would call a component that is merely starting "exited".
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _proc_state(pid) in (None, "Z", "X"):
            return
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
            if Path(argv0).name == binary.name:
                return
        time.sleep(0.01)


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _is_ours(pid: int, component: str) -> bool:
    """True if ``pid`` is alive (not a zombie) and runs the given component binary."""
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return Path(argv0).name == component


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    pid: int,
    component: str,
    log: Path,
    timeout_s: float,
    interval_s: float = 0.1,
) -> None:
    """Poll ``probe`` until it returns True; fail fast with the log tail if the process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError):
            if probe():
                return
        if not _is_ours(pid, component):
            raise RuntimeError(f"{what}: {component} (pid {pid}) exited; last log lines of {log}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f}s; last log lines of {log}:\n{_log_tail(log)}")
        time.sleep(interval_s)


# --------------------------------------------------------------------------------------------
# Starting one cluster


def _etcd_args(layout: _Layout, ports: _Ports) -> list[str]:
    client, peer = f"http://127.0.0.1:{ports.etcd_client}", f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        "--name=default", f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync", "--log-level=warn",
    ]


def _apiserver_args(layout: _Layout, ports: _Ports, certs: _Pki) -> list[str]:
    args = [
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={certs.serving[0]}", f"--tls-private-key-file={certs.serving[1]}",
        f"--client-ca-file={certs.ca[0]}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-signing-key-file={certs.sa_key}",
        f"--service-account-key-file={certs.sa_pub}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_PREFIX.format(random.choice(SERVICE_CLUSTER_IP_OCTETS))}",
        # A loopback advertise address is refused in Endpoints; nothing here needs them.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        # Audit events (metadata level), so a request can be followed from the app cluster's
        # log into the control plane's by its Audit-ID, as in production.
        f"--audit-policy-file={layout.audit_policy}", f"--audit-log-path={layout.audit_log}",
        "--audit-log-maxsize=200", "--audit-log-maxbackup=1",
    ]
    if certs.front_proxy_ca and certs.proxy_client:
        # Aggregation layer. --enable-aggregator-routing stays off: APIServices point at
        # ExternalName Services (externalName: localhost), which the aggregator resolves itself.
        args += [
            f"--requestheader-client-ca-file={certs.front_proxy_ca[0]}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={certs.proxy_client[0]}",
            f"--proxy-client-key-file={certs.proxy_client[1]}",
            # MutatingAdmissionPolicy is beta in 1.35 and off by default: the app cluster serves
            # it (its admission plugin is in the default set and follows the gate) so the
            # connector's MAPs can be compared with kube-apiserver's own for a local CRD.
            "--feature-gates=MutatingAdmissionPolicy=true",
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
        ]
    return args


def _kcm_args(layout: _Layout, ports: _Ports, certs: _Pki) -> list[str]:
    return [
        f"--kubeconfig={layout.kcm_kubeconfig}",
        # Authenticate callers of its own HTTPS port by client cert only: looking up the
        # front-proxy CA in the cluster fails (noisily) on the control plane, which has none.
        "--authentication-skip-lookup", f"--client-ca-file={certs.ca[0]}",
        f"--authorization-kubeconfig={layout.kcm_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.root / 'controller-manager-certs'}",
        "--leader-elect=false", "--controllers=*", "--use-service-account-credentials=true",
        f"--service-account-private-key-file={certs.sa_key}",
        f"--root-ca-file={certs.ca[0]}",
        f"--cluster-signing-cert-file={certs.ca[0]}", f"--cluster-signing-key-file={certs.ca[1]}",
        # Default is under /usr/libexec, which it would create on the host.
        f"--flex-volume-plugin-dir={layout.root / 'flexvolume'}",
        "--profiling=false",
        # Quotas are recounted every 10 s instead of 5 min: a quota made before the controller
        # discovered a new CRD's resource counts it within a test's patience.
        "--resource-quota-sync-period=10s",
    ]


def _start_cluster(
    name: str, ports: _Ports, tools: dict[str, Path], *, aggregation: bool | None = None
) -> ClusterState:
    """Bring one cluster to ready (apiserver /readyz, controller-manager /healthz), then seed it.

    ``aggregation`` (default: the app cluster only) adds the front-proxy flags.
    """
    started = time.monotonic()
    layout = _Layout(name)
    layout.root.mkdir(parents=True, exist_ok=True)
    certs = _make_pki(layout, aggregation=(name == APP_CLUSTER) if aggregation is None else aggregation)
    url = f"https://127.0.0.1:{ports.apiserver}"
    _write_kubeconfig(layout.admin_kubeconfig, name, "admin", url, certs.ca[0], *certs.admin)
    _write_kubeconfig(layout.kcm_kubeconfig, name, "system:kube-controller-manager", url, certs.ca[0], *certs.kcm)

    phases: list[str] = []
    mark = time.monotonic()

    def phase(label: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases.append(f"{label} {now - mark:.1f}s")
        mark = now

    layout.audit_policy.write_text(AUDIT_POLICY)
    phase("certs")
    pids: dict[str, int] = {}
    pids["etcd"] = _spawn(layout, "etcd", tools["etcd"], _etcd_args(layout, ports))
    etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
    _wait_until(
        f"{name} etcd", lambda: https_get(f"{etcd_url}/health", ca_cert=None)[0] == 200,
        pid=pids["etcd"], component="etcd", log=layout.log("etcd"), timeout_s=_ETCD_TIMEOUT_S,
    )
    phase("etcd")
    pids["kube-apiserver"] = _spawn(
        layout, "kube-apiserver", tools["kube-apiserver"], _apiserver_args(layout, ports, certs)
    )
    _wait_until(
        f"{name} kube-apiserver",
        lambda: _apiserver_ready(url, certs.ca[0], *certs.admin),
        pid=pids["kube-apiserver"], component="kube-apiserver", log=layout.log("kube-apiserver"),
        timeout_s=_APISERVER_TIMEOUT_S,
    )
    phase("apiserver")
    _start_controller_manager(name, layout, ports, certs, tools, pids)
    phase("controller-manager")
    if name == CONTROL_PLANE:
        pids["crossplane"] = _start_crossplane(layout, ports, tools["crossplane"], phase)
        pids[crossplane_core.FUNCTION] = _start_function(layout, ports, tools[crossplane_core.FUNCTION])
        phase("function")
        seed.apply(layout.admin_kubeconfig, CLAIM_NAMESPACE)
        _wait_until(
            f"{name} crossplane installs {crossplane_core.FUNCTION}",
            lambda: crossplane_core.register_function(layout.admin_kubeconfig, ports.function_grpc),
            pid=pids["crossplane"], component="crossplane", log=layout.log("crossplane"),
            timeout_s=_CROSSPLANE_READY_TIMEOUT_S, interval_s=0.3,
        )
        _wait_until(
            f"{name} crossplane offers the seeded APIs",
            lambda: seed.offered(layout.admin_kubeconfig),
            pid=pids["crossplane"], component="crossplane", log=layout.log("crossplane"),
            timeout_s=_CROSSPLANE_READY_TIMEOUT_S, interval_s=0.3,
        )
        phase("seed")
    _say(f"{name}: ready at {url} in {time.monotonic() - started:.1f}s ({', '.join(phases)})")
    return ClusterState(
        name=name, apiserver_url=url, kubeconfig=layout.admin_kubeconfig,
        ca_cert=certs.ca[0], ca_key=certs.ca[1], admin_cert=certs.admin[0], admin_key=certs.admin[1],
        etcd_url=etcd_url, pids=pids, logs={**{c: layout.log(c) for c in pids}, "audit": layout.audit_log},
        front_proxy_ca_cert=certs.front_proxy_ca[0] if certs.front_proxy_ca else None,
        front_proxy_ca_key=certs.front_proxy_ca[1] if certs.front_proxy_ca else None,
        proxy_client_cert=certs.proxy_client[0] if certs.proxy_client else None,
        proxy_client_key=certs.proxy_client[1] if certs.proxy_client else None,
    )


def _start_controller_manager(
    name: str, layout: _Layout, ports: _Ports, certs: _Pki, tools: dict[str, Path], pids: dict[str, int]
) -> None:
    """Start the cluster's kube-controller-manager and wait for its /healthz."""
    pids["kube-controller-manager"] = _spawn(
        layout, "kube-controller-manager", tools["kube-controller-manager"], _kcm_args(layout, ports, certs)
    )
    kcm_url = f"https://127.0.0.1:{ports.controller_manager}/healthz"
    _wait_until(
        f"{name} kube-controller-manager", lambda: https_get(kcm_url, ca_cert=None)[0] == 200,
        pid=pids["kube-controller-manager"], component="kube-controller-manager",
        log=layout.log("kube-controller-manager"), timeout_s=_KCM_TIMEOUT_S,
    )


def _start_crossplane(layout: _Layout, ports: _Ports, binary: Path, phase: Callable[[str], None]) -> int:
    """Install Crossplane into the control plane (its init) and start its controllers."""
    crds = crossplane_crds()
    paths = crossplane_core.Paths(layout.root / "crossplane")
    crossplane_core.install_crds(layout.admin_kubeconfig, crds)
    phase("crossplane CRDs")
    log = layout.log("crossplane-init")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        init = subprocess.run(
            [str(binary), *crossplane_core.init_args(crds)], stdout=out, stderr=subprocess.STDOUT,
            env=crossplane_core.init_env(layout.admin_kubeconfig), timeout=_CROSSPLANE_INIT_TIMEOUT_S, check=False,
        )
    if init.returncode != 0:
        raise RuntimeError(
            f"crossplane core init failed ({init.returncode}); last log lines of {log}:\n{_log_tail(log)}"
        )
    crossplane_core.write_client_certs(layout.admin_kubeconfig, paths)
    phase("crossplane init")
    args = crossplane_core.start_args(
        paths, metrics_port=ports.crossplane_metrics, health_port=ports.crossplane_health
    )
    return _spawn(layout, "crossplane", binary, args, env=crossplane_core.start_env(layout.admin_kubeconfig))


def _start_function(layout: _Layout, ports: _Ports, binary: Path) -> int:
    """Start the composition function (gRPC and its package registry) and create its Function object."""
    paths = crossplane_core.Paths(layout.root / "crossplane")
    crossplane_core.write_function_certs(layout.admin_kubeconfig, paths)
    args = crossplane_core.function_args(paths, grpc_port=ports.function_grpc, package_port=ports.function_package)
    pid = _spawn(layout, crossplane_core.FUNCTION, binary, args)
    package = (
        f"http://127.0.0.1:{ports.function_package}/v2/{crossplane_core.FUNCTION_REPOSITORY}"
        f"/manifests/{crossplane_core.FUNCTION_TAG}"
    )
    _wait_until(
        f"{layout.name} {crossplane_core.FUNCTION} serves its package",
        lambda: https_get(package, ca_cert=None)[0] == 200,
        pid=pid, component=crossplane_core.FUNCTION, log=layout.log(crossplane_core.FUNCTION), timeout_s=30,
    )
    crossplane_core.install_function(layout.admin_kubeconfig, ports.function_package)
    return pid


def _apiserver_ready(url: str, ca: Path, cert: Path, key: Path) -> bool:
    status, _ = https_get(f"{url}/readyz", ca_cert=ca, client_cert=cert, client_key=key)
    return status == 200


# --------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class ComponentStatus:
    """Liveness of one component process."""

    cluster: str
    component: str
    pid: int
    alive: bool


@dataclass(frozen=True)
class Status:
    """What ``status`` reports: the recorded state (if any) and what is really running."""

    state: TestbedState | None
    components: tuple[ComponentStatus, ...]
    ready: dict[str, bool]  # cluster -> apiserver /readyz answered 200

    @property
    def running(self) -> bool:
        """Every recorded process alive and every apiserver ready."""
        return (
            self.state is not None
            and bool(self.components)
            and all(c.alive for c in self.components)
            and all(self.ready.get(n, False) for n in CLUSTERS)
        )


def status() -> Status:
    """Inspect the recorded test bed without changing anything."""
    state = load(STATE_FILE)
    components: list[ComponentStatus] = []
    ready: dict[str, bool] = {}
    if state is not None:
        for name, cluster in state.clusters.items():
            for comp, pid in cluster.pids.items():
                components.append(ComponentStatus(name, comp, pid, _is_ours(pid, comp)))
            try:
                ready[name] = _apiserver_ready(
                    cluster.apiserver_url, cluster.ca_cert, cluster.admin_cert, cluster.admin_key
                )
            except (OSError, ValueError):
                ready[name] = False
    return Status(state, tuple(components), ready)


def running() -> TestbedState | None:
    """The state of a fully running test bed, or None if it is down or broken."""
    st = status()
    return st.state if st.running else None


def up() -> TestbedState:
    """Start both clusters (no-op if already running) and return their description.

    Raises MissingToolError if a binary is missing. A failed start stops whatever it started,
    keeps the logs, and re-raises.
    """
    tools = require(*CLUSTER_TOOLS)
    current = running()
    if current is not None:
        _say("already running")
        return current
    down(quiet=True)  # leftovers of a crashed or partial run
    started = time.monotonic()
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        n = _PORTS_PER_CLUSTER
        ports = _free_ports(n * len(CLUSTERS))
        plans = {name: _Ports(*ports[i * n:(i + 1) * n]) for i, name in enumerate(CLUSTERS)}
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(CLUSTERS)) as pool:
                futures = {name: pool.submit(_start_cluster, name, p, tools) for name, p in plans.items()}
                clusters = {name: f.result() for name, f in futures.items()}
            break
        except BaseException as exc:
            _say("start-up failed; stopping what was started (logs kept in .dev/logs)")
            down(quiet=True)
            # A port is free when chosen and bound by the server a moment later; another
            # process (a second test bed, a test's relay) can take it in between. The
            # servers cannot be handed a bound socket, so that one race is retried.
            if attempt == _PORT_ATTEMPTS or "address already in use" not in str(exc).lower():
                raise
            _say(f"a chosen port was taken before the server bound it; new ports (attempt {attempt + 1})")
    state = TestbedState(clusters=clusters, claim_namespace=CLAIM_NAMESPACE)
    save(state, STATE_FILE)
    _say(f"up in {time.monotonic() - started:.1f}s; state in {STATE_FILE}")
    return state


def _extra_names() -> list[str]:
    """The extra app clusters that have files under ``.dev`` (running, or left by a crashed test)."""
    return [p.name for p in sorted(STATE_DIR.glob(f"{EXTRA_PREFIX}*")) if p.is_dir()]


def _recorded_pids() -> Iterator[tuple[str, str, int]]:
    """(cluster, component, pid) from the pid files and from testbed.json (either may be missing)."""
    seen: set[int] = set()
    for name in (*CLUSTERS, *_extra_names()):
        layout = _Layout(name)
        for comp in COMPONENTS:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(layout.pid_file(comp).read_text().strip())
                seen.add(pid)
                yield name, comp, pid
    with contextlib.suppress(ValueError, KeyError, json.JSONDecodeError):
        state = load(STATE_FILE)
        if state is not None:
            for name, cluster in state.clusters.items():
                for comp, pid in cluster.pids.items():
                    if pid not in seen:
                        yield name, comp, pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by/containing ``pid``, never our own group."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        if pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def _stop(procs: list[tuple[str, str, int]], quiet: bool) -> None:
    """SIGTERM the processes' groups, wait up to the grace period, then SIGKILL what is left."""
    for _, _, pid in procs:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    while any(_is_ours(p, c) for _, c, p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, comp, pid in procs:
        if _is_ours(pid, comp):
            _say(f"{name} {comp} (pid {pid}) still running {_STOP_GRACE_S:.0f}s after SIGTERM; killing")
            _signal_group(pid, signal.SIGKILL)
    for name, comp, pid in procs:
        while _is_ours(pid, comp):
            time.sleep(0.05)
        if not quiet:
            _say(f"stopped {name} {comp} (pid {pid})")


def down(*, quiet: bool = False) -> None:
    """Stop every process the test bed started and wipe cluster data, certs and kubeconfigs.

    Pod runners (testbed.kubelet) stop first, with their containers. Components stop in
    reverse start order (controller-managers, apiservers, then etcd):
    an apiserver whose etcd is already gone hangs in its shutdown instead of exiting.
    Logs under .dev/logs are kept.
    """
    # Pod runners first: they stop their containers while the app cluster still answers.
    from testbed.kubelet import PodRunner

    for root in sorted((STATE_DIR / "pods").glob("*.*")):
        namespace, _, deployment = root.name.partition(".")
        PodRunner(namespace, deployment, root).stop()
    ours = [(n, c, p) for n, c, p in _recorded_pids() if _is_ours(p, c)]
    for component in reversed(COMPONENTS):
        _stop([t for t in ours if t[1] == component], quiet)
    for name in (*CLUSTERS, *_extra_names()):
        layout = _Layout(name)
        shutil.rmtree(layout.root, ignore_errors=True)
        layout.admin_kubeconfig.unlink(missing_ok=True)
    STATE_FILE.unlink(missing_ok=True)
    if not quiet:
        _say("down")


@contextlib.contextmanager
def apiserver_stopped(name: str) -> Iterator[None]:
    """Stop one cluster's kube-apiserver for a ``with`` block, then start it again as it was.

    The process gets SIGTERM (its connections close, new ones are refused) and afterwards is
    started with its recorded command line on the same port, and awaited until ready: what
    clients see when a control plane goes down and comes back. etcd and the controller-manager
    keep running. The new pid is recorded so ``down`` still finds it.
    """
    state = load(STATE_FILE)
    if state is None or name not in state.clusters:
        raise RuntimeError(f"no running test bed with cluster {name!r}")
    cluster = state.clusters[name]
    pid = cluster.pids["kube-apiserver"]
    if not _is_ours(pid, "kube-apiserver"):
        raise RuntimeError(f"{name} kube-apiserver (pid {pid}) is not running")
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    _stop([(name, "kube-apiserver", pid)], quiet=True)
    try:
        yield
    finally:
        layout = _Layout(name)
        new_pid = _spawn(layout, "kube-apiserver", Path(argv[0]), argv[1:])
        restarted = dataclasses.replace(cluster, pids={**cluster.pids, "kube-apiserver": new_pid})
        save(dataclasses.replace(state, clusters={**state.clusters, name: restarted}), STATE_FILE)
        _wait_until(
            f"{name} kube-apiserver (restarted)",
            lambda: _apiserver_ready(cluster.apiserver_url, cluster.ca_cert, cluster.admin_cert, cluster.admin_key),
            pid=new_pid, component="kube-apiserver", log=layout.log("kube-apiserver"),
            timeout_s=_APISERVER_TIMEOUT_S,
        )  # fmt: skip
        _say(f"{name}: kube-apiserver restarted (pid {new_pid})")


@contextlib.contextmanager
def extra_app_cluster(name: str) -> Iterator[ClusterState]:
    """One more app cluster for a ``with`` block, stopped and wiped afterwards.

    Started exactly as ``up`` starts the app cluster (etcd, kube-apiserver with the
    aggregation-layer flags and kube-controller-manager, fresh certificates and free ports on
    127.0.0.1, the same readiness checks). The controller-manager is needed: pulumi-kubernetes
    deletes in the foreground, which only the garbage collector finishes. Its files live under
    ``.dev/extra-<name>``, so ``down`` also stops one that a killed test left running.
    """
    tools = require(*CLUSTER_TOOLS)
    full = f"{EXTRA_PREFIX}{name}"
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        try:
            state = _start_cluster(full, _Ports(*_free_ports(_PORTS_PER_CLUSTER)), tools, aggregation=True)
            break
        except BaseException as exc:
            _stop_extra(full)
            if attempt == _PORT_ATTEMPTS or "address already in use" not in str(exc).lower():
                raise
            _say(f"{full}: a chosen port was taken before the server bound it; new ports (attempt {attempt + 1})")
    try:
        yield state
    finally:
        _stop_extra(full)


def _stop_extra(name: str) -> None:
    """Stop an extra cluster's processes (apiserver before etcd) and wipe its files; logs stay."""
    layout = _Layout(name)
    ours: list[tuple[str, str, int]] = []
    for component in COMPONENTS:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(layout.pid_file(component).read_text().strip())
            if _is_ours(pid, component):
                ours.append((name, component, pid))
    for component in reversed(COMPONENTS):
        _stop([t for t in ours if t[1] == component], quiet=True)
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.admin_kubeconfig.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# CLI


def _print_status(st: Status) -> None:
    if st.state is None:
        print("test bed: down")
        return
    print(f"test bed: {'running' if st.running else 'BROKEN (run down, then up)'}")
    for name, cluster in st.state.clusters.items():
        print(f"  {name}: {cluster.apiserver_url} ready={st.ready.get(name, False)} kubeconfig={cluster.kubeconfig}")
        for c in st.components:
            if c.cluster == name:
                print(f"    {c.component:<24} pid {c.pid:<8} {'alive' if c.alive else 'DEAD'}")
    print(f"  claim namespace: {st.state.claim_namespace}; state: {STATE_FILE}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Exit codes: 0 ok/running, 1 error, 3 status: not running."""
    parser = argparse.ArgumentParser(prog="python -m testbed.cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start both clusters (no-op if running)")
    sub.add_parser("down", help="stop everything the test bed started and wipe its data")
    st_parser = sub.add_parser("status", help="show what is running")
    st_parser.add_argument("--json", action="store_true", help="print .dev/testbed.json if running")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
            return 0
        if args.command == "down":
            down()
            return 0
        st = status()
        if args.json:
            if st.state is None:
                return 3
            print(json.dumps(st.state.to_json(), indent=2, sort_keys=True))
        else:
            _print_status(st)
        return 0 if st.running else 3
    except Exception as exc:  # the CLI reports, the Python API raises
        _say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
