"""A TCP relay in front of a server that a test can stall, drop, reset and stop: network faults.

Put between the connector and the control plane (a kubeconfig pointing at the relay's port),
it plays the network failures production sees, each from the client's side of the wire:

* ``stall()``: every byte is held back, connections stay open (congestion, a paused peer);
  ``resume()`` delivers what was held and carries on.
* ``drop()``: every byte is thrown away, connections stay open (a host that vanished, a route
  that black-holes); ``resume()`` passes new bytes again, but streams already broken stay so.
* ``reset()``: every open connection is aborted with a TCP RST; new ones are accepted.
* ``stop()``: the listener closes and open connections are shut (a server that went away:
  connection refused); ``start()`` listens again on the same port.

Threads, not asyncio, so a synchronous test can drive it. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from enum import Enum

_CHUNK = 65536


class Mode(Enum):
    """What the relay does with the bytes it reads."""

    PASS = "pass"
    STALL = "stall"
    DROP = "drop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _abort(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout).

    A thread blocked in ``recv`` keeps the socket open past ``close()``; shutting the read
    side first wakes it without sending anything, so the RST goes out when it lets go.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class FaultRelay:
    """Relays 127.0.0.1:``port`` to ``target``, with faults switched on and off by the test."""

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or _free_port()
        #: Connections accepted since construction (a figure for tests: reconnects).
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._mode = Mode.PASS
        self._changed = threading.Condition(self._lock)

    @property
    def mode(self) -> Mode:
        """The current fault mode."""
        return self._mode

    def start(self) -> None:
        """Listen (again) on the same port and pass bytes on."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._set(Mode.PASS)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"relay-{self.port}").start()

    def _set(self, mode: Mode) -> None:
        with self._changed:
            self._mode = mode
            self._changed.notify_all()

    def stall(self) -> None:
        """Hold every byte back, in both directions, on open and new connections."""
        self._set(Mode.STALL)

    def drop(self) -> None:
        """Throw every byte away, in both directions, on open and new connections."""
        self._set(Mode.DROP)

    def resume(self) -> None:
        """Pass bytes on again (held ones first)."""
        self._set(Mode.PASS)

    def open_connections(self) -> int:
        """Relayed connections not yet closed by either side or by a fault."""
        with self._lock:
            return len(self._pairs)

    def reset(self) -> None:
        """Abort every open connection with an RST; keep listening."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.aborted = True
            _abort(pair.client)
            _abort(pair.upstream)

    def stop(self) -> None:
        """Refuse new connections and shut the open ones (FIN, as a stopping server does)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone leaves it listening.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in (pair.client, pair.upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._set(Mode.PASS)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _abort(client)
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                self.accepted += 1
                self._pairs.append(pair)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(pair, source, sink), daemon=True).start()

    def _pipe(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                with self._changed:
                    while self._mode is Mode.STALL:
                        self._changed.wait()
                    dropping = self._mode is Mode.DROP
                if not dropping:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            if not pair.aborted:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
            with self._lock:
                pair.ended += 1
                done = pair.ended == 2
                if done and pair in self._pairs:
                    self._pairs.remove(pair)
            if done:
                pair.client.close()
                pair.upstream.close()


class _Pair:
    """One relayed connection: both sockets and how many of its two directions have ended."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.ended = 0
        self.aborted = False
