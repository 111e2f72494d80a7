"""Session fixtures for end-to-end tests against the local test bed (testbed/).

The ``testbed`` fixture reuses a test bed that is already running (started by hand with
``python -m testbed.cluster up``) and leaves it running; otherwise it starts one and stops it at
the end of the session (set MCP_TESTBED_KEEP=1 to keep it for faster reruns). With
MCP_TESTBED_FRESH=1 (``make test`` sets it, together with a test bed folder of its own) a
running test bed is a leftover of an interrupted run: it is stopped and a new one started, so
a suite never inherits objects from an earlier one. A missing tool fails the session loudly
instead of skipping: a skipped e2e suite looks green.

The test bed's own acceptance tests run first: when the bed is broken, their failures say so
before every other test fails for the same reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The testbed package lives at the repo root, which pytest does not put on sys.path by itself.
_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from testbed import cluster as testbed_cluster  # noqa: E402
from testbed.harness import Testbed  # noqa: E402
from testbed.tools import CLUSTER_TOOLS, PULUMI_TOOLS, MissingToolError, require  # noqa: E402


def _require_or_fail(*names: str) -> None:
    try:
        require(*names)
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the test bed's self-test (test_testbed.py) before every other e2e test."""
    items.sort(key=lambda item: item.path.name != "test_testbed.py")


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """Both local clusters, running for the whole session (see module docstring)."""
    _require_or_fail(*CLUSTER_TOOLS)
    state = testbed_cluster.running()
    if state is not None and os.environ.get("MCP_TESTBED_FRESH"):
        testbed_cluster.down(quiet=True)
        state = None
    started_here = state is None
    if state is None:
        try:
            state = testbed_cluster.up()
        except Exception as exc:
            pytest.fail(f"test bed failed to start (logs in {testbed_cluster.LOG_DIR}): {exc}", pytrace=False)
    yield Testbed(state, started_here=started_here)
    if started_here and not os.environ.get("MCP_TESTBED_KEEP"):
        testbed_cluster.down(quiet=True)


@pytest.fixture(scope="session")
def pulumi_tools() -> None:
    """Fails the requesting test if the Pulumi CLI or the kubernetes provider is not built."""
    _require_or_fail(*PULUMI_TOOLS)
