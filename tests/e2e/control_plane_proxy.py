"""An HTTPS reverse proxy in front of the test bed's control plane that can stall writes.

Interrupting the disconnect hook from outside needs a point in the middle of it: the
proxy forwards everything, and once ``hold_writes_after(n)`` has let ``n`` PATCH requests
through it holds every further PATCH unanswered until ``release()`` (or until the client
gives up), so a test can kill the Pulumi process while the hook waits. ``kubeconfig(token)``
reaches the control plane through it.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from tls_proxy import ForwardingProxy

from testbed.harness import Testbed


class HoldingProxy(ForwardingProxy):
    """Forwards to the control plane; holds PATCHes past a count (see module docstring)."""

    def __init__(self, testbed: Testbed, work: Path) -> None:
        super().__init__(testbed, work, "holding-proxy")
        self.patches = 0
        #: Set once a PATCH is being held.
        self.holding = threading.Event()
        self._allowed: int | None = None
        self._release = threading.Event()
        self._held: list[web.Request] = []

    def hold_writes_after(self, count: int) -> None:
        """Let ``count`` more PATCH requests through, then hold the rest."""
        self._release.clear()
        self._allowed = self.patches + count

    def release(self) -> None:
        """Forward every PATCH again, including the held ones."""
        self._allowed = None
        self._release.set()

    def held_clients_gone(self) -> bool:
        """True once the proxy has seen the client of every held PATCH disconnect. Such a PATCH is
        then dropped on ``release()`` (aiohttp fails its body read); released before the proxy saw
        its client go, it would be forwarded: a write the client, killed meanwhile, never made."""
        return bool(self._held) and all(request.transport is None for request in self._held)

    def kubeconfig(self, token: str) -> str:
        """A control-plane kubeconfig that goes through this proxy with a bearer token."""
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "proxy",
                        "cluster": {
                            "server": self.url,
                            "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                        },
                    }
                ],
                "users": [{"name": "proxy", "user": {"token": token}}],
                "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
                "current-context": "proxy",
            }
        )

    async def before_forward(self, request: web.Request) -> None:
        if request.method != "PATCH":
            return
        if self._allowed is not None and self.patches >= self._allowed:
            self._held.append(request)
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self._release.wait)
        self.patches += 1

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        super().__exit__(*exc)
