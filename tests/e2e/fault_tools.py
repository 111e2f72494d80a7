"""What the fault tests share: claims written straight into the control plane, and the check that
an informer saw each of those writes exactly once.

The writes play Crossplane (or another app cluster's connector) changing claims in the control
plane while the clients under test watch them through the app cluster; every write's
resourceVersion is recorded, so a delivery can be matched to the write it reports. And killing
a process tree from outside, as a crash would (``kill_session``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from informer import Delivery, https_connection

from mcp_connector.core import contract
from testbed.harness import Testbed
from testbed.tools import tool_path
from testbed.waiting import eventually

GROUP, VERSION, PLURAL, KIND = "k8s.starter.org", "v1alpha1", "kubernetesclusters", "KubernetesCluster"


@dataclass(frozen=True)
class Write:
    """One change made in the control plane: the app-side key and the resourceVersion it produced."""

    type: str  # ADDED, MODIFIED, DELETED
    key: str
    rv: int  # 0 for a DELETED write: the control plane does not say at which version it deleted


def claim_body(name: str, namespace: str, *, nodes: int = 1, spec_id: str = "") -> dict[str, Any]:
    """An app-side KubernetesCluster claim."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"id": spec_id or name, "parameters": {"nodes": {"count": nodes}}},
    }


@dataclass
class ControlPlaneClaims:
    """Creates, changes and deletes one cluster's claims directly in the control plane."""

    tb: Testbed
    cluster_id: str
    writes: list[Write] = field(default_factory=list)

    def _path(self, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.tb.claim_namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        conn = https_connection(self.tb.control_plane, 15)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Accept": "application/json", **({"Content-Type": content_type} if data else {})}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            raise AssertionError(f"{method} {path}: HTTP {response.status}: {raw[:500]!r}")
        return json.loads(raw)

    def _record(self, kind: str, ref: contract.AppRef, obj: dict[str, Any]) -> Write:
        write = Write(kind, f"{ref.namespace}/{ref.name}", int(obj["metadata"]["resourceVersion"]))
        self.writes.append(write)
        return write

    def ref(self, namespace: str, name: str) -> contract.AppRef:
        """The app-side identity of a claim of this cluster."""
        return contract.AppRef(self.cluster_id, namespace, name)

    def create(self, namespace: str, name: str, *, spec_id: str = "") -> dict[str, Any]:
        """Create a claim as the connector would store it; returns the stored object."""
        ref = self.ref(namespace, name)
        body = claim_body(name, namespace, spec_id=spec_id)
        stored = self._call(
            "POST", self._path(), contract.to_control_plane(body, ref, claim_namespace=self.tb.claim_namespace)
        )
        self._record("ADDED", ref, stored)
        return stored  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any] | None:
        """A stored claim by its control-plane name (None if gone)."""
        try:
            return self._call("GET", self._path(name))  # type: ignore[no-any-return]
        except AssertionError as e:
            if "HTTP 404" in str(e):
                return None
            raise

    def modify(self, namespace: str, name: str, nodes: int) -> Write:
        """Change a claim's spec (a merge patch)."""
        ref = self.ref(namespace, name)
        patch = {"spec": {"parameters": {"nodes": {"count": nodes}}}}
        obj = self._call("PATCH", self._path(contract.control_plane_name(ref)), patch, "application/merge-patch+json")
        return self._record("MODIFIED", ref, obj)

    def delete(self, namespace: str, name: str) -> None:
        """Delete a claim; ``gone`` records the DELETED once it is.

        Crossplane puts a finalizer on claims it binds: the DELETE then only sets
        ``deletionTimestamp`` (a MODIFIED at the resourceVersion it answers with), and the claim
        goes once Crossplane let go of it, which takes a while on a loaded machine.
        """
        ref = self.ref(namespace, name)
        answer = self._call("DELETE", self._path(contract.control_plane_name(ref)))
        if answer.get("kind") != "Status" and answer["metadata"].get("finalizers"):
            self._record("MODIFIED", ref, answer)

    def gone(self, namespace: str, name: str, *, timeout: float = 180) -> Write:
        """Wait until a deleted claim is gone; record its DELETED (without a version: none is answered)."""
        ref = self.ref(namespace, name)
        hashed = contract.control_plane_name(ref)
        eventually(lambda: self.get(hashed) is None, timeout=timeout, every=1.0, what=f"{hashed} ({ref}) to go")
        write = Write("DELETED", f"{ref.namespace}/{ref.name}", 0)
        self.writes.append(write)
        return write

    def remove_all(self) -> None:
        """Delete every claim of this cluster from the control plane, finalizers a test added included."""
        selector = f"{contract.APP_CLUSTER_LABEL}={self.cluster_id}"
        for item in self._call("GET", f"{self._path()}?labelSelector={selector}")["items"]:
            path = self._path(item["metadata"]["name"])
            if item["metadata"].get("finalizers"):
                self._call("PATCH", path, {"metadata": {"finalizers": None}}, "application/merge-patch+json")
            self._call("DELETE", path)

    def current(self, namespace: str) -> dict[str, int]:
        """``key -> resourceVersion`` of this cluster's claims in ``namespace``, read from the control plane."""
        selector = contract.scope_selector(self.cluster_id, namespace)
        listed = self._call("GET", f"{self._path()}?labelSelector={selector}")
        out = {}
        for item in listed["items"]:
            ref = contract.app_ref_of(item)
            assert ref is not None
            out[f"{ref.namespace}/{ref.name}"] = int(item["metadata"]["resourceVersion"])
        return out


@dataclass
class DeliveryReport:
    """The result of matching deliveries to writes."""

    by_watch: int = 0  # writes delivered as their own watch event
    by_relist: int = 0  # writes a relist stood in for (superseded, or shown in their state)
    missing: list[Write] = field(default_factory=list)
    duplicates: list[Delivery] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything that is not exactly once, for an assertion message."""
        return [f"missing {w}" for w in self.missing] + [f"delivered twice or stale: {d}" for d in self.duplicates]


def check_deliveries(deliveries: Sequence[Delivery], writes: Iterable[Write]) -> DeliveryReport:
    """Match the informer's deliveries against the control plane's writes.

    * No duplicate: a watch event never repeats a (key, resourceVersion) the client already had
      (from an event or a list), and resourceVersions per key only grow.
    * No loss: every write arrives as its own watch event, or a relist that happened after it
      shows the object at that or a newer version (or gone): what client-go's Replace does.
    """
    report = DeliveryReport()
    latest: dict[str, int] = {}
    seen_by_watch: set[tuple[str, int]] = set()
    lists: list[tuple[int, dict[str, int]]] = []  # (list resourceVersion, key -> rv) per (re)list
    current_list: dict[str, int] | None = None
    for d in deliveries:
        if d.source == "list":
            if d.type == "LIST":
                current_list = {}
                lists.append((d.rv, current_list))
                continue
            assert current_list is not None
            current_list[d.key] = d.rv
            if d.rv < latest.get(d.key, 0):
                report.duplicates.append(d)
            latest[d.key] = d.rv
            continue
        if d.rv <= latest.get(d.key, 0) or (d.key, d.rv) in seen_by_watch:
            report.duplicates.append(d)
        seen_by_watch.add((d.key, d.rv))
        latest[d.key] = d.rv
    deleted_by_watch = Counter(d.key for d in deliveries if d.source == "watch" and d.type == "DELETED")
    for w in writes:
        if w.type == "DELETED" and not w.rv:
            if deleted_by_watch[w.key] == 1:
                report.by_watch += 1
            elif deleted_by_watch[w.key] == 0 and any(w.key not in listed for _, listed in lists[1:]):
                report.by_relist += 1
            else:
                report.missing.append(w)
        elif (w.key, w.rv) in seen_by_watch:
            report.by_watch += 1
        elif any(list_rv >= w.rv and (listed.get(w.key) is None or listed[w.key] >= w.rv) for list_rv, listed in lists):
            report.by_relist += 1
        else:
            report.missing.append(w)
    return report


@dataclass(frozen=True)
class KubectlLine:
    """One event line of a ``kubectl get -w --output-watch-events`` session."""

    session: int
    type: str
    key: str
    rv: int
    at: float


@dataclass
class KubectlSession:
    """One run of ``kubectl get -w``: when it started and ended, and how."""

    number: int
    started: float
    ended: float | None = None
    returncode: int | None = None
    tail: list[str] = field(default_factory=list)  # lines that are not events (errors)


class KubectlWatch:
    """``kubectl get -w`` on a loop, as a person at a terminal would rerun it when it exits.

    kubectl lists, then watches from the list's resourceVersion, and exits when the server ends
    the watch: it does not resume. Each run is a session; every event line is recorded with it,
    and kubectl's own log (``-v=6``: one line per response) tells when its watch is open.
    """

    def __init__(self, tb: Testbed, namespace: str, *, retry_every: float = 0.3) -> None:
        self.tb = tb
        self.namespace = namespace
        self.retry_every = retry_every
        self.lines: list[KubectlLine] = []
        self.sessions: list[KubectlSession] = []
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kubectl -w")

    def start(self) -> KubectlWatch:
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            proc.terminate()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "kubectl -w did not stop"

    def current(self) -> KubectlSession | None:
        return self.sessions[-1] if self.sessions else None

    def _run(self) -> None:
        while not self._stop.is_set():
            session = KubectlSession(len(self.sessions) + 1, time.monotonic())
            command = [
                str(tool_path("kubectl")), "--kubeconfig", str(self.tb.app_cluster.kubeconfig),
                "get", PLURAL, "-n", self.namespace, "-w", "--output-watch-events", "--no-headers", "-v=6",
                "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,RV:.object.metadata.resourceVersion",
            ]  # fmt: skip
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            with self._lock:
                self._proc = proc
                self.sessions.append(session)
            assert proc.stdout is not None
            with proc.stdout:
                for raw in proc.stdout:
                    parts = raw.split()
                    if len(parts) == 3 and parts[0] in ("ADDED", "MODIFIED", "DELETED") and parts[2].isdigit():
                        line = KubectlLine(session.number, parts[0], f"{self.namespace}/{parts[1]}", int(parts[2]),
                                           time.monotonic())  # fmt: skip
                        with self._lock:
                            self.lines.append(line)
                    else:
                        session.tail.append(raw.rstrip())
            session.returncode = proc.wait()
            session.ended = time.monotonic()
            self._stop.wait(self.retry_every)

    def describe(self, last: int = 3) -> str:
        """The last sessions, with their log tails, for a failure message."""
        return "\n".join(
            f"session {s.number}: {s.started:.1f}-{s.ended or 0:.1f} rc={s.returncode} lines="
            f"{len(self.session_lines(s.number))}\n  " + "\n  ".join(x for x in s.tail[-6:] if "envvar.go" not in x)
            for s in self.sessions[-last:]
        )

    def watching(self, number: int) -> bool:
        """True once session ``number`` has listed and its watch is open (kubectl -v=6 logs the response)."""
        session = self.sessions[number - 1]
        return any("watch=true" in line and '"200 OK"' in line for line in list(session.tail))

    def session_lines(self, number: int) -> list[KubectlLine]:
        with self._lock:
            return [line for line in self.lines if line.session == number]


def session_members(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def kill_session(sid: int, *, timeout: float = 10.0) -> int:
    """SIGKILL every process of session ``sid`` until none is left; return how many were killed.

    A process group is not enough for a Pulumi CLI: it starts each plugin in a process group
    of its own, and those would outlive a ``killpg`` (orphans that keep running). They stay in
    the session, and whatever one forks meanwhile is found by the next look.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while members := session_members(sid):
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.add(pid)
        assert time.monotonic() < deadline, f"processes of session {sid} survive SIGKILL: {members}"
        time.sleep(0.01)
    return len(killed)
