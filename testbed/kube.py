"""Talking to the test-bed clusters: kubectl and a tiny stdlib HTTPS client.

Start-up probes (etcd /health, apiserver /readyz) use ``http.client`` directly so ``up`` does
not pay kubectl's process start per poll; everything else goes through kubectl, the same tool a
developer would use to reproduce a failure by hand.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from testbed.tools import tool_path


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries the command and its stderr."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_list = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"kubectl {' '.join(args)} failed with exit code {returncode}:\n{stderr.strip()}")


def kubectl(
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against one cluster and return the completed process (text mode).

    With ``check`` (the default) a non-zero exit raises KubectlError including stderr, so a
    failing test shows what the apiserver said instead of just an exit code.
    """
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    cmd = [str(tool_path("kubectl")), *args]
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise KubectlError(list(args), proc.returncode, proc.stdout, proc.stderr)
    return proc


def https_get(
    url: str,
    *,
    ca_cert: Path | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    timeout: float = 2.0,
    accept: str | None = None,
) -> tuple[int, bytes]:
    """GET ``url`` over HTTPS (or plain HTTP) and return (status, body).

    ``ca_cert=None`` skips server verification; used only for kube-controller-manager's
    self-signed health endpoint on 127.0.0.1.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
        if ca_cert is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if client_cert and client_key:
            ctx.load_cert_chain(str(client_cert), str(client_key))
        conn = http.client.HTTPSConnection(host, parts.port, context=ctx, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
