"""httpGet probes as the kubelet runs them: against the pod's IP, HTTPS without verification.

Success is a status from 200 to 399; anything else, a timeout or a refused connection is a
failure whose detail (status and the start of the body, or the error) is reported.
"""

from __future__ import annotations

import http.client
import ssl

from testbed.kubelet.spec import Probe


def check(probe: Probe, host: str) -> tuple[bool, str]:
    """Run ``probe`` once against ``host``; returns (passed, detail)."""
    conn: http.client.HTTPConnection
    if probe.scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, probe.port, context=context, timeout=probe.timeout)
    else:
        conn = http.client.HTTPConnection(host, probe.port, timeout=probe.timeout)
    try:
        conn.request("GET", probe.path, headers={"User-Agent": "kube-probe/1.35"})
        resp = conn.getresponse()
        body = resp.read(300).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as e:
        return False, f"Get {probe.scheme.lower()}://{host}:{probe.port}{probe.path}: {e}"
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return True, f"HTTP {resp.status}"
    return False, f"HTTP probe failed with statuscode: {resp.status}: {body}"
