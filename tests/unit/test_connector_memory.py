"""Memory the connector frees leaves the process (connector/memory.py), measured in a child process.

The child decodes and encodes 1 MB objects 300 times holding 100 at a time, as the cache does
with a large claim under change, frees them all and reports its resident set from /proc.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc, sys, orjson
from mcp_connector.connector import memory
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) * 1024
if sys.argv[1] == "fixed":
    assert memory.give_back_large_blocks()
base = rss()
obj = {"spec": {f"k{i}": "v" * 50 + str(i) for i in range(15000)}}
held = []
for _ in range(300):
    data = orjson.dumps(obj)
    held.append((data, orjson.loads(data)))
    if len(held) > 100:
        held.pop(0)
peak = rss() - base
held.clear()
gc.collect()
print(peak, rss() - base)
"""


def _run(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, timeout=120)
    peak, after = out.stdout.split()
    return int(peak), int(after)


def test_freed_large_objects_go_back_to_the_system() -> None:
    peak, after = _run("fixed")
    assert peak > 100 * 2**20, peak  # the child did hold about 100 large objects
    assert after < peak / 8, (peak, after)


def test_without_the_fix_glibc_keeps_much_of_it() -> None:
    """The cause, shown: this fails if glibc stops keeping freed blocks (then memory.py can go)."""
    peak, after = _run("plain")
    assert after > peak / 4, (peak, after)
