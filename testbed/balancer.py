"""A Service's endpoints and kube-proxy for local connector processes: one port, ready backends only.

In a cluster the endpoints controller lists the pods whose readiness probe passes and kube-proxy
spreads *new connections* over them; a connection once made stays with its pod. Here several
connector processes run on 127.0.0.1 behind one ``ExternalName: localhost`` Service, so this
balancer plays both parts: it probes each backend's ``/readyz`` every ``probe_every`` seconds
(as a kubelet's readiness probe with ``periodSeconds``), and hands each new connection to the
next ready backend, round robin. Open connections are piped until either side closes them, so a
backend that turns unready keeps its connections, exactly as with kube-proxy.

Threads, like ``testbed.relay``; everything binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import ssl
import threading

_CHUNK = 65536


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Balancer:
    """Round robin over the backends whose ``/readyz`` answered 200 at the last probe."""

    def __init__(self, *, port: int | None = None, probe_every: float = 1.0) -> None:
        self.port = port or _free_port()
        self.probe_every = probe_every
        self._backends: list[int] = []
        self._ready: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._turn = itertools.count()
        self._listener: socket.socket | None = None
        self.accepted: dict[int, int] = {}  # backend port -> connections handed to it

    def add(self, port: int) -> None:
        """A new endpoint (a pod was created); it gets traffic once its probe passes."""
        with self._lock:
            if port not in self._backends:
                self._backends.append(port)

    def remove(self, port: int) -> None:
        """The endpoint is gone (the pod was deleted)."""
        with self._lock:
            self._backends = [p for p in self._backends if p != port]
            self._ready.discard(port)

    def ready(self) -> list[int]:
        """The backends new connections go to now."""
        with self._lock:
            return [p for p in self._backends if p in self._ready]

    def start(self) -> Balancer:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(1024)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="balancer accept").start()
        threading.Thread(target=self._probe_loop, daemon=True, name="balancer probes").start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()

    def probe_now(self) -> None:
        """One round of readiness probes (also run every ``probe_every`` seconds)."""
        with self._lock:
            backends = list(self._backends)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        for port in backends:
            ok = False
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1.0)
            try:
                conn.request("GET", "/readyz")
                ok = conn.getresponse().status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            finally:
                conn.close()
            with self._lock:
                if ok and port in self._backends:
                    self._ready.add(port)
                else:
                    self._ready.discard(port)

    def _probe_loop(self) -> None:
        while not self._stopped.is_set():
            self.probe_now()
            self._stopped.wait(self.probe_every)

    def _pick(self) -> int | None:
        ready = self.ready()
        if not ready:
            return None
        return ready[next(self._turn) % len(ready)]

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            port = self._pick()
            if port is None:
                client.close()  # no endpoints: the connection is refused, as with no ready pod
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted[port] = self.accepted.get(port, 0) + 1
            done = threading.Semaphore(0)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink, done), daemon=True).start()
            threading.Thread(target=self._close_after, args=(client, upstream, done), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, done: threading.Semaphore) -> None:
        """Copy one direction; at its end half-close the other side (a reset closes both)."""
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        finally:
            done.release()

    @staticmethod
    def _close_after(client: socket.socket, upstream: socket.socket, done: threading.Semaphore) -> None:
        done.acquire()
        done.acquire()
        client.close()
        upstream.close()
