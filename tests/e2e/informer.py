"""A client-go style informer over plain HTTP, to watch claims through the app cluster under faults.

client-go's Reflector lists, then watches from the list's resourceVersion; when a watch ends
it watches again from the last resourceVersion it saw (events and bookmarks), and when told
that version is gone (HTTP 410 or an ERROR event with code 410) it lists again. This one does
the same, on a thread, and records every delivery, so a test can check that each change the
control plane made reached the client exactly once, and that no watch hung.

Resource versions are compared as integers only to *check* deliveries (kube-apiserver's are
etcd revisions); the informer itself treats them as opaque, as clients must.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from testbed.state import ClusterState


@dataclass(frozen=True)
class Delivery:
    """One thing the informer handed to its handlers: a watch event or an object from a (re)list."""

    source: str  # "list" | "watch"
    type: str  # LIST (a (re)list starts; rv is the list's), LISTED, ADDED, MODIFIED, DELETED
    key: str  # namespace/name
    rv: int
    at: float


@dataclass
class Counters:
    """How the informer got its data: a figure for the README and a check for the test."""

    lists: int = 0
    watches: int = 0
    resumes: int = 0  # watches started from a resourceVersion after an earlier watch ended
    gone: int = 0  # 410s (HTTP or ERROR event) that forced a relist
    refused: int = 0  # list/watch requests answered with another error (e.g. 503 while down)
    broken: int = 0  # connections that failed (refused, reset) before or while streaming
    hangs: int = 0  # watches that went silent for longer than the read timeout
    errors: list[str] = field(default_factory=list)


def https_connection(cluster: ClusterState, timeout: float) -> http.client.HTTPSConnection:
    """An HTTPS connection to a test-bed kube-apiserver as its admin."""
    context = ssl.create_default_context(cafile=str(cluster.ca_cert))
    context.load_cert_chain(str(cluster.admin_cert), str(cluster.admin_key))
    host, port = cluster.apiserver_url.removeprefix("https://").rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), context=context, timeout=timeout)


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Informer:
    """List+watch ``path`` (a collection) on a thread until ``stop()``; see the module docstring.

    ``read_timeout`` is how long a watch may stay silent before it counts as hung (bookmarks
    arrive about once a minute when asked for; keep the test's own watches shorter with
    ``timeout_seconds``).
    """

    def __init__(
        self,
        connect: Callable[[float], http.client.HTTPSConnection],
        path: str,
        *,
        read_timeout: float = 90.0,
        timeout_seconds: int = 300,
        retry_every: float = 0.3,
    ) -> None:
        self._connect = connect
        self.path = path
        self.read_timeout = read_timeout
        self.timeout_seconds = timeout_seconds
        self.retry_every = retry_every
        self.store: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self.counters = Counters()
        self.resource_version = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPSConnection | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"informer {path}")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Informer:
        """Start listing and watching."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, closing any open watch; fail if the thread does not end."""
        self._stop.set()
        with self._lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"informer for {self.path} did not stop in {timeout}s")

    def snapshot(self) -> dict[str, int]:
        """``key -> resourceVersion`` of what the informer holds now."""
        with self._lock:
            return {k: int(o["metadata"]["resourceVersion"]) for k, o in self.store.items()}

    def synced(self) -> bool:
        """True once the first list arrived."""
        return self.counters.lists > 0

    # -- the reflector loop ----------------------------------------------------------------

    def _run(self) -> None:
        need_list = True
        watched_before = False
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list, watched_before = False, False
                if watched_before:
                    self.counters.resumes += 1
                need_list = self._watch()
                watched_before = True
            except (OSError, http.client.HTTPException) as e:
                if self._stop.is_set():
                    return
                if isinstance(e, TimeoutError | socket.timeout):
                    self.counters.hangs += 1
                else:
                    self.counters.broken += 1
                self.counters.errors.append(f"{time.monotonic():.1f} {type(e).__name__}: {e}")
                self._stop.wait(self.retry_every)
            except _Refused as e:
                self.counters.refused += 1
                self.counters.errors.append(f"{time.monotonic():.1f} {e}")
                self._stop.wait(self.retry_every)

    def _open(self, method: str, path: str) -> http.client.HTTPResponse:
        conn = self._connect(self.read_timeout)
        with self._lock:
            self._conn = conn
        conn.request(method, path, headers={"Accept": "application/json"})
        return conn.getresponse()

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _list(self) -> None:
        try:
            response = self._open("GET", self.path)
            body = response.read()
        finally:
            self._close()
        if response.status != 200:
            raise _Refused(f"list: HTTP {response.status}: {body[:300]!r}")
        listed = json.loads(body)
        now = time.monotonic()
        with self._lock:
            self.store = {_key(o): o for o in listed.get("items") or []}
            self.deliveries.append(Delivery("list", "LIST", "", int(listed["metadata"]["resourceVersion"]), now))
            for key, obj in self.store.items():
                self.deliveries.append(Delivery("list", "LISTED", key, int(obj["metadata"]["resourceVersion"]), now))
            self.resource_version = listed["metadata"]["resourceVersion"]
        self.counters.lists += 1

    def _watch(self) -> bool:
        """One watch from the current resourceVersion; True when a relist is needed (410)."""
        query = urlencode(
            {
                "watch": "true",
                "resourceVersion": self.resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(self.timeout_seconds),
            }
        )
        try:
            response = self._open("GET", f"{self.path}?{query}")
            self.counters.watches += 1
            if response.status == 410:
                response.read()
                self.counters.gone += 1
                return True
            if response.status != 200:
                raise _Refused(f"watch: HTTP {response.status}: {response.read()[:300]!r}")
            while not self._stop.is_set():
                line = response.readline()
                if not line:
                    return False  # the server ended the watch: resume from resource_version
                if line.strip() and self._event(json.loads(line)):
                    self.counters.gone += 1
                    return True
            return False
        finally:
            self._close()

    def _event(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; True for a 410 ERROR (relist)."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                return True
            raise _Refused(f"watch ERROR event: {obj}")
        rv = obj.get("metadata", {}).get("resourceVersion", "")
        with self._lock:
            if kind != "BOOKMARK":
                key = _key(obj)
                if kind == "DELETED":
                    self.store.pop(key, None)
                else:
                    self.store[key] = obj
                self.deliveries.append(Delivery("watch", str(kind), key, int(rv), time.monotonic()))
            if rv:
                self.resource_version = rv
        return False


class _Refused(Exception):
    """The server answered a list or watch with an error status (retried, counted)."""
