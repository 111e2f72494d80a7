"""The runner's own small client for the app cluster, as the kubelet has one: admin credentials.

Blocking ``http.client`` calls (the runner calls them from a thread); errors carry the
Kubernetes ``Status`` message, never a request body.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

from testbed.state import ClusterState

RawObject = dict[str, Any]


class ApiError(RuntimeError):
    """The apiserver answered with an error status (or could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Api:
    """GET and POST JSON against one test-bed cluster with its admin client certificate."""

    def __init__(self, cluster: ClusterState, *, timeout: float = 10.0) -> None:
        parts = urlsplit(cluster.apiserver_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.ca_cert = cluster.ca_cert
        self._context = ssl.create_default_context(cafile=str(cluster.ca_cert))
        self._context.load_cert_chain(str(cluster.admin_cert), str(cluster.admin_key))
        self._timeout = timeout

    def request(
        self, method: str, path: str, body: RawObject | None = None, *, content_type: str = "application/json"
    ) -> RawObject:
        """One request; raises ApiError unless the answer is 2xx."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=self._timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as e:
            raise ApiError(0, f"app cluster unreachable: {e}") from None
        finally:
            conn.close()
        try:
            decoded: RawObject = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw[:200].decode(errors="replace")}
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, str(decoded.get("message") or resp.reason))
        return decoded

    def get(self, path: str) -> RawObject:
        """GET ``path``."""
        return self.request("GET", path)

    def apply(self, path: str, body: RawObject) -> RawObject:
        """Server-side apply ``body`` at ``path`` as the runner's field manager."""
        query = "?fieldManager=testbed-kubelet&force=true"
        return self.request("PATCH", path + query, body, content_type="application/apply-patch+yaml")

    def apply_status(self, path: str, body: RawObject) -> RawObject:
        """Server-side apply on a ``/status`` subresource (a Node's heartbeat, as the kubelet's)."""
        return self.apply(path, body)

    def merge_patch(self, path: str, body: RawObject) -> RawObject:
        """A JSON merge patch (lists in it replace the object's)."""
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def post(self, path: str, body: RawObject) -> RawObject:
        """POST ``body`` to ``path``."""
        return self.request("POST", path, body)

    def delete(self, path: str, body: RawObject | None = None) -> None:
        """DELETE ``path`` (with DeleteOptions ``body``); a missing object is fine."""
        try:
            self.request("DELETE", path, body)
        except ApiError as e:
            if e.status != 404:
                raise

    def secret(self, namespace: str, name: str) -> RawObject:
        """A Secret (data base64-encoded, as served)."""
        return self.get(f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")

    def config_map(self, namespace: str, name: str) -> RawObject:
        """A ConfigMap."""
        return self.get(f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}")

    def token(self, namespace: str, service_account: str, *, audiences: list[str], seconds: int) -> str:
        """A ServiceAccount token from the TokenRequest API (what the kubelet projects)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": audiences or None, "expirationSeconds": seconds},
        }
        path = f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts/{quote(service_account)}/token"
        return str(self.request("POST", path, body)["status"]["token"])
