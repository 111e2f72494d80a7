"""``python -m testbed.kubelet run|start|stop|status --namespace NS --deployment NAME``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from testbed import state as testbed_state
from testbed.kubelet import PodRunner
from testbed.kubelet.runner import Runner, pod_root


async def _run(namespace: str, deployment: str) -> None:
    loaded = testbed_state.load()
    if loaded is None:
        raise SystemExit("no test bed is running: python -m testbed.cluster up")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Runner(loaded, namespace, deployment).run(stop)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m testbed.kubelet", description="Run a Deployment's pod here.")
    p.add_argument("command", choices=("run", "start", "stop", "status"))
    p.add_argument("--namespace", default="kube-system")
    p.add_argument("--deployment", default="mcp-connector")
    a = p.parse_args(argv)
    if a.command == "run":
        asyncio.run(_run(a.namespace, a.deployment))
        return 0
    runner = PodRunner(a.namespace, a.deployment, pod_root(a.namespace, a.deployment))
    if a.command == "start":
        runner = PodRunner.start(a.namespace, a.deployment)
        print(f"pod runner started (pid {runner.pid()}); status: {runner.root / 'status.json'}")
    elif a.command == "stop":
        runner.stop()
    else:
        print(json.dumps(runner.status(), indent=2))
        return 0 if runner.pid() else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
