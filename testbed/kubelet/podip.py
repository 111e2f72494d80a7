"""Pod IPs, as a CNI plugin hands them out: one address per pod, on this host's loopback device.

The host network stands in for the pod's network namespace, so each pod gets an address of its
own that it alone listens on. Loopback addresses (127/8) are refused in Endpoints and
EndpointSlices, so the real EndpointSlice controller could not publish them; addresses from the
benchmarking range 198.18.0.0/15 (RFC 2544, never routed on the internet) are added to ``lo`` as
/32s instead, under a label of the runner's, so a restarted runner removes what a killed one left.
Needs CAP_NET_ADMIN (root), as the kubelet's CNI plugins do.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess

#: Where pod IPs come from.
POD_RANGE = ipaddress.ip_network("198.18.0.0/15")


class PodIpError(RuntimeError):
    """An address could not be added (or listed); the message has ip(8)'s answer."""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


def _in_use() -> set[str]:
    proc = _ip("-json", "addr", "show")
    if proc.returncode != 0:
        raise PodIpError(f"ip addr show: {proc.stderr.strip()}")
    return {a["local"] for link in json.loads(proc.stdout) for a in link.get("addr_info") or [] if "local" in a}


def allocate(label: str) -> str:
    """A free address from POD_RANGE, added to ``lo`` under ``label`` (``lo:<at most 12 chars>``)."""
    taken = _in_use()
    for _ in range(50):
        ip = str(POD_RANGE[random.randint(1, POD_RANGE.num_addresses - 2)])
        if ip in taken or ip.endswith((".0", ".255")):
            continue
        proc = _ip("addr", "add", f"{ip}/32", "dev", "lo", "label", label)
        if proc.returncode == 0:
            return ip
        if "File exists" not in proc.stderr:
            raise PodIpError(f"cannot add pod IP {ip} to lo (needs root, CAP_NET_ADMIN): {proc.stderr.strip()}")
    raise PodIpError("no free pod IP in 198.18.0.0/15")


def release(ip: str) -> None:
    """Remove a pod's address (a missing one is fine)."""
    _ip("addr", "del", f"{ip}/32", "dev", "lo")


def release_all(label: str) -> list[str]:
    """Remove every address under ``label`` (what a killed runner left); returns them."""
    proc = _ip("-json", "addr", "show", "dev", "lo")
    if proc.returncode != 0:
        return []
    gone = [
        a["local"]
        for link in json.loads(proc.stdout)
        for a in link.get("addr_info") or []
        if a.get("label") == label and "local" in a
    ]
    for ip in gone:
        release(ip)
    return gone
