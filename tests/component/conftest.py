"""Run McpConnector under Pulumi mocks, with control-plane discovery stubbed out.

Each test gets a fresh mock monitor; ``render`` runs a program to completion and returns
every registered resource (inputs as the engine would receive them) plus the component's
outputs, so tests assert on what would be sent to the app cluster.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pulumi
import pytest
from component_testdata import CLAIM_APIS, CP_KUBECONFIG, KUBE_SYSTEM_UID, Registered, Render, Rendered

from mcp_connector import upstream
from mcp_connector.core.discovery import Discovered, Unserved


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs; answer the two reads the component does."""

    def __init__(
        self, rendered: Rendered, existing_kubeconfig: str | None, stored: dict[str, Any] | None = None
    ) -> None:
        self.rendered = rendered
        self.existing_kubeconfig = existing_kubeconfig
        #: The TLS Secrets' data as the state holds it (the component ignores later changes to it),
        #: shared by the renders of one test as the state is shared by a stack's runs.
        self.stored = {} if stored is None else stored

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.rendered.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.resource_id or None))
        outputs = dict(args.inputs)
        if args.resource_id and args.typ == "kubernetes:core/v1:Namespace":
            outputs = {"metadata": {"name": args.resource_id, "uid": KUBE_SYSTEM_UID}}
        elif args.resource_id and args.typ == "kubernetes:core/v1:Secret":
            data = {}
            if self.existing_kubeconfig is not None:
                data["kubeconfig"] = base64.b64encode(self.existing_kubeconfig.encode()).decode()
            outputs = {"metadata": {"name": args.resource_id.split("/")[-1]}, "data": data}
        elif args.typ == "kubernetes:core/v1:Secret" and "-tls-" in args.name:
            outputs["data"] = self.stored.setdefault(args.name, outputs.get("data"))
            outputs["metadata"] = {**outputs["metadata"], "uid": f"uid-of-{args.name}"}
        elif args.typ.startswith("kubernetes:") and isinstance(outputs.get("metadata"), dict):
            # What the API server adds to every object it creates.
            outputs["metadata"] = {**outputs["metadata"], "uid": f"uid-of-{args.name}"}
        return (args.resource_id or f"{args.name}-id", outputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture(autouse=True)
def _own_event_loop() -> Iterator[None]:
    """Give each test an event loop of its own, and close every loop Pulumi's mocks make.

    The mocks register resources from the loop's default executor threads, where the SDK
    makes an event loop per thread (``_ensure_event_loop``) and never closes it: when the
    thread ends, the unclosed loop is collected at a random moment and its ResourceWarning
    fails whichever test is running then. So each executor thread gets its loop from us at
    start-up (the SDK then reuses it), and we close those loops once the threads are gone.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    thread_loops: list[asyncio.AbstractEventLoop] = []

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        thread_loops.append(thread_loop)

    loop.set_default_executor(ThreadPoolExecutor(initializer=give_thread_a_loop))
    yield
    loop.run_until_complete(loop.shutdown_default_executor())
    for thread_loop in thread_loops:
        thread_loop.close()
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def discovered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Stub control-plane discovery; yields the list of access objects it was called with."""
    calls: list[Any] = []

    async def fake_discover(client: Any) -> Discovered:
        calls.append(str(client.base_url).rstrip("/"))
        return Discovered(CLAIM_APIS, (Unserved("things.example.org", "scope: Cluster is not served"),))

    monkeypatch.setattr(upstream, "discover_apis_by_name", fake_discover)
    yield calls


@pytest.fixture
def render(discovered: list[Any]) -> Render:
    """Run ``program`` (default: one McpConnector with ``args``) under mocks; the renders of one test
    share the TLS Secrets' stored data, as the runs of one stack do (``replace`` drops one, as
    ``pulumi up --replace`` does)."""
    stored: dict[str, Any] = {}

    def run(
        args: dict[str, Any] | None = None,
        *,
        program: Callable[[], Any] | None = None,
        existing_kubeconfig: str | None = CP_KUBECONFIG,
        preview: bool = False,
        replace: Sequence[str] = (),
    ) -> Rendered:
        from mcp_connector_component import McpConnector

        for name in replace:
            stored.pop(name)
        rendered = Rendered()
        pulumi.runtime.set_mocks(RecordingMocks(rendered, existing_kubeconfig, stored), preview=preview)

        def default() -> Any:
            c = McpConnector("mcp-connector", args or {})  # type: ignore[typeddict-item]
            return pulumi.Output.all(
                cluster_id=c.cluster_id,
                app_cluster_uid=c.app_cluster_uid,
                claim_apis=c.claim_apis,
                apiservice_names=c.apiservice_names,
                control_plane_namespace=c.control_plane_namespace,
            ).apply(rendered.outputs.update)

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def execute() -> Any:
            return (program or default)()

        try:
            execute()
        except Exception as e:
            rendered.error = e
        return rendered

    return run
