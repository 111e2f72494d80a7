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
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The testbed package lives at the repo root, which pytest does not put on sys.path by itself.
_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import connector_fixtures  # noqa: E402
from claims import remove_released_claims  # noqa: E402
from component_helpers import EXTERNAL_NAME, SA  # noqa: E402
from connector_fixtures import SERVICE_NAMESPACE, ConnectorProcess  # noqa: E402

from testbed import APP_CLUSTER, CONTROL_PLANE  # noqa: E402
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


#: Lines of each failure's traceback repeated at the end of the run.
DIGEST_LINES = 25


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the end of each failure's traceback last, where a log cut in the middle still shows it.

    CI keeps the beginning and the end of a long run's output; the failures section sits in
    between and an assertion's message was lost there once.
    """
    failed = terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
    if not failed:
        return
    terminalreporter.section("failure digest (the end of each traceback)")
    for report in failed:
        lines = report.longreprtext.splitlines()
        terminalreporter.write_line(f"--- {report.nodeid} ({report.when})")
        for line in lines[-DIGEST_LINES:]:
            terminalreporter.write_line(line[:400])


@pytest.fixture(scope="session", autouse=True)
def _fresh_work_folders() -> None:
    """Remove the connectors' folders an earlier session left (this session's stay for their logs)."""
    shutil.rmtree(connector_fixtures.WORK_ROOT, ignore_errors=True)


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


@pytest.fixture(scope="module", autouse=True)
def _released_claims_removed(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each module that used the test bed, delete the claims its disconnects released."""
    yield
    items = request.session.items
    if any(item.module is request.module and "testbed" in item.fixturenames for item in items):  # type: ignore[attr-defined]
        remove_released_claims(request.getfixturevalue("testbed"))


@pytest.fixture(scope="session")
def pulumi_tools() -> None:
    """Fails the requesting test if the Pulumi CLI or the kubernetes provider is not built."""
    _require_or_fail(*PULUMI_TOOLS)


# --- McpConnector suites (component_helpers.py) -----------------------------------------------


@pytest.fixture
def start_connector(testbed: Testbed) -> Iterator[Callable[[str], ConnectorProcess]]:
    """Start local connectors (the connector suite's fixture) for a cluster ID; stopped after the test."""
    started: list[ConnectorProcess] = []

    def start(cluster_id: str) -> ConnectorProcess:
        testbed.kubectl(APP_CLUSTER, "create", "namespace", SERVICE_NAMESPACE, check=False)
        process = connector_fixtures.start_connector(testbed, cluster_id=cluster_id, service_name=EXTERNAL_NAME)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def cp_token(testbed: Testbed) -> Callable[[], str]:
    """Mints ServiceAccount tokens for the control plane (each call a new, valid token)."""
    ns = testbed.claim_namespace
    testbed.kubectl(CONTROL_PLANE, "create", "serviceaccount", SA, "-n", ns, check=False)
    testbed.kubectl(
        CONTROL_PLANE, "create", "clusterrolebinding", SA, "--clusterrole=cluster-admin",
        f"--serviceaccount={ns}:{SA}", check=False,
    )  # fmt: skip

    def mint() -> str:
        return testbed.kubectl(CONTROL_PLANE, "create", "token", SA, "-n", ns, "--duration=2h").stdout.strip()

    return mint
