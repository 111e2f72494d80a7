"""Issue 17: the cache's resident memory under 300 changes of a 1 MB claim, in process, no test bed.

One cache (the test fixtures' claim API) with ten watchers whose queues are written out after
each change, as their pumps would; the claim is 10,000 small records, decoded from JSON as the
reflector decodes it. Prints the growth of this process's RSS (from /proc) at its peak and
after the watchers are gone, against the history's byte budget.

    .venv/bin/python bench/bench_cache_memory.py [--budget-mib 64] [--changes 300] [--no-fix]
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "unit")]

from connector_samples import CLUSTER, catalog, cp_claim  # noqa: E402

from mcp_connector.connector import memory  # noqa: E402
from mcp_connector.connector.cache import fanout, forms  # noqa: E402
from mcp_connector.connector.cache.cache import Cache  # noqa: E402
from mcp_connector.connector.cache.history import Budget  # noqa: E402
from mcp_connector.connector.cache.selection import Selection  # noqa: E402

MIB = 1024 * 1024


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024


def change(n: int) -> dict[str, Any]:
    obj = cp_claim("big", "default")
    obj["metadata"]["resourceVersion"] = str(n)
    obj["spec"]["records"] = [{"i": i, "n": n, "v": chr(97 + n % 26) * 80} for i in range(10_000)]
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(obj))  # as the reflector gets it off the wire
    return decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=64)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--watches", type=int, default=10)
    parser.add_argument("--no-fix", action="store_true", help="leave glibc's mmap threshold dynamic")
    args = parser.parse_args()
    if not args.no_fix:
        memory.give_back_large_blocks()
    served = catalog().resource("k8s.starter.org", "v1alpha1", "kubernetesclusters")
    assert served is not None
    budget = Budget(args.budget_mib * MIB)
    cache = Cache(served, CLUSTER, budget=budget, watch_bytes=8 * MIB)
    cache.replace([], 1)
    watchers = [
        fanout.Watcher(Selection(), forms.OBJECT, bookmarks=False, bookmark=lambda rv, end: b"")
        for _ in range(args.watches)
    ]
    cache.watchers.update(watchers)
    base, peak = rss(), 0
    for n in range(2, args.changes + 2):
        cache.apply("MODIFIED", change(n))
        for watcher in watchers:
            b"".join(watcher.take())  # what the pump writes
        peak = max(peak, rss())
    kept = len(cache.history)
    cache.close_watchers("done")
    watchers.clear()
    gc.collect()
    print(
        f"{args.changes} changes of a 1 MB claim, {args.watches} watches, history budget {args.budget_mib} MiB"
        f" (kept {kept} changes, {budget.used / MIB:.0f} MiB accounted): RSS +{(peak - base) / MIB:.0f} MiB at the"
        f" peak, +{(rss() - base) / MIB:.0f} MiB after the watches ended"
        f"{' (glibc threshold left dynamic)' if args.no_fix else ''}"
    )


if __name__ == "__main__":
    main()
