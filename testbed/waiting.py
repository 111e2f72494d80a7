"""Waiting on a condition with a deadline, the one way tests and the test bed wait.

A fixed ``sleep`` either wastes time or is too short on a loaded machine; polling the very
condition a test needs, with a deadline and the last observed state in the failure, is
neither. Everything that waits for the clusters, the connector or a watch goes through here.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, TypeVar

T = TypeVar("T")

#: Errors that mean "not yet": the condition is retried until the deadline.
RETRYABLE: tuple[type[BaseException], ...] = (AssertionError, OSError, subprocess.SubprocessError, RuntimeError)


def eventually(check: Callable[[], T], *, timeout: float = 30.0, every: float = 0.2, what: str = "") -> T:
    """Call ``check`` until it returns something truthy without raising; return that.

    Fails with ``what`` and the last result or error once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except RETRYABLE as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or 'condition'} not met in {timeout}s; last: {last!r}")
        time.sleep(every)


class LineReader:
    """Collects a child process's output lines on a thread, so a test can wait for one.

    ``kubectl get -w`` prints one line per event; waiting for the line that proves an event
    arrived replaces guessing how long a watch takes to start or to deliver.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def finish(self, timeout: float = 10.0) -> None:
        """Wait until the stream has ended (the process exited) and is closed."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"output did not end within {timeout}s")

    def wait_for(self, match: Callable[[str], bool], *, timeout: float = 30.0, what: str = "line") -> str:
        """Return the first new line for which ``match`` is true; fail at the deadline or at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} in {timeout}s; output so far:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended before {what}; output:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match(line):
                return line
