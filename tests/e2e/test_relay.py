"""The fault relay itself (testbed/relay.py), against a local echo server: each fault does what it says,
so a fault test that passes does so because the connector coped, not because the fault was a no-op."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from testbed.relay import FaultRelay
from testbed.waiting import eventually


@pytest.fixture
def relay() -> Iterator[FaultRelay]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    relay = FaultRelay("127.0.0.1", server.getsockname()[1])
    relay.start()
    yield relay
    relay.stop()
    server.close()


def connect(relay: FaultRelay) -> socket.socket:
    return socket.create_connection(("127.0.0.1", relay.port), timeout=30)


def roundtrip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(4096)


def test_pass_stall_resume(relay: FaultRelay) -> None:
    sock = connect(relay)
    assert roundtrip(sock) == b"ping"
    relay.stall()
    sock.settimeout(0.5)
    sock.sendall(b"held")
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    relay.resume()
    sock.settimeout(30)
    assert sock.recv(4096) == b"held"  # a stall delays, it does not lose
    sock.close()


def test_drop_loses_bytes_but_keeps_the_connection(relay: FaultRelay) -> None:
    sock = connect(relay)
    relay.drop()
    sock.settimeout(0.5)
    sock.sendall(b"lost")
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    # The relay accepts on its own thread: the client may be connected before it has counted.
    eventually(lambda: relay.open_connections() == 1, what="the relay to hold the connection")
    relay.resume()
    sock.settimeout(30)
    assert roundtrip(sock, b"again") == b"again"
    sock.close()


def test_reset_aborts_open_connections_and_accepts_new_ones(relay: FaultRelay) -> None:
    sock = connect(relay)
    assert roundtrip(sock) == b"ping"
    relay.reset()
    with pytest.raises(ConnectionResetError):
        sock.recv(4096)
    sock.close()
    with connect(relay) as again:
        assert roundtrip(again) == b"ping"


def test_stop_refuses_and_start_listens_again(relay: FaultRelay) -> None:
    sock = connect(relay)
    assert roundtrip(sock) == b"ping"  # the relay has taken the connection over
    relay.stop()
    sock.settimeout(30)
    assert sock.recv(4096) == b""  # shut down: the client sees the end of the stream
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(relay)
    relay.start()
    with connect(relay) as again:
        assert roundtrip(again) == b"ping"
    assert relay.accepted == 2
