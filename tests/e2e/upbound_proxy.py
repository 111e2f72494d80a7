"""An HTTPS proxy on 127.0.0.1 that plays an Upbound host in front of the test bed's control plane.

Upbound serves a managed control plane's Kubernetes API under
``https://<host>/v1/controlPlanes/<account>/<name>/k8s``. The proxy strips that prefix and
passes the bearer token on; clients trust its CA through ``SSL_CERT_FILE`` (``ca_file``), as
they would trust a public CA in production.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from tls_proxy import ForwardingProxy

from testbed.harness import Testbed

ACCOUNT, CONTROL_PLANE_NAME = "acme", "prod"
PREFIX = f"/v1/controlPlanes/{ACCOUNT}/{CONTROL_PLANE_NAME}/k8s"


class UpboundProxy(ForwardingProxy):
    """Serves the control plane under Upbound's URL prefix and records every path asked for."""

    def __init__(self, testbed: Testbed, work: Path) -> None:
        super().__init__(testbed, work, "upbound")
        self.requests: list[str] = []

    def upstream_path(self, request: web.Request) -> str | None:
        self.requests.append(request.path)
        return request.path.removeprefix(PREFIX) if request.path.startswith(PREFIX) else None
