"""Issue 22: what Crossplane records about a claim shows under the app-side claim, in its namespace only.

A Bucket XR whose composition selector matches nothing is a real Crossplane failure: the XR
controller records a Warning event against ``nxr-<hash>`` in the claim namespace. The
connector's event follower copies it to the app namespace under the app name, so
``kubectl describe`` and ``kubectl events --for`` show it; a second app namespace sees none of
it, and the copies go with the claim. The connector's full passes run once at its start and
then every ten minutes, so what the test sees comes from the passes a claim's own changes start
(followers/events.py: the claim changed, its events are looked at soon after).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from connector_fixtures import ConnectorProcess, app, connected, fresh_namespace, wait_available

from mcp_connector.connector.followers.events import COPY_LABEL
from mcp_connector.core import contract
from testbed import APP_CLUSTER
from testbed.harness import Testbed
from testbed.seed import BUCKET
from testbed.waiting import eventually

pytestmark = pytest.mark.e2e

PLURAL = BUCKET.plural
APISERVICES = ("v1alpha1.k8s.starter.org", "v1alpha1.db.example.org", "v1beta1.db.example.org",
               "v1alpha1.storage.example.org")  # fmt: skip


def bucket(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """The seed's example Bucket XR under another name and namespace."""
    body: dict[str, Any] = yaml.safe_load(BUCKET.example_claim_file.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"].update(spec)
    body["spec"].pop("writeConnectionSecretToRef", None)
    return body


@pytest.fixture(scope="module")
def conn(testbed: Testbed) -> Iterator[ConnectorProcess]:
    app(testbed, "delete", "apiservice", "--ignore-not-found", *APISERVICES)
    with connected(testbed, extra_args=["--event-poll-seconds", "600"]) as proc:
        wait_available(testbed, APISERVICES)
        yield proc


def copies(testbed: Testbed, namespace: str) -> list[dict[str, Any]]:
    """The connector's event copies in an app namespace."""
    listed = testbed.kubectl_json(APP_CLUSTER, "get", "events", "-n", namespace, "-l", COPY_LABEL)
    return list(listed["items"])


def test_a_failing_composition_shows_in_describe_under_the_app_name_and_nowhere_else(
    testbed: Testbed, conn: ConnectorProcess
) -> None:
    with fresh_namespace(testbed, "e2e-ev") as mine, fresh_namespace(testbed, "e2e-ev") as other:
        broken = bucket("broken", mine, crossplane={"compositionSelector": {"matchLabels": {"e2e": "matches-nothing"}}})
        app(testbed, "apply", "-f", "-", input=json.dumps(broken))
        app(testbed, "apply", "-f", "-", input=json.dumps(bucket("fine", other)))

        def described() -> str:
            out = app(testbed, "describe", PLURAL, "-n", mine, "broken").stdout
            events = out.partition("Events:")[2]
            return out if "Warning" in events else ""

        out = eventually(described, timeout=90, every=2, what="the Warning event in kubectl describe")
        assert contract.Flavor.NAMESPACED_XR.prefix not in out.partition("Events:")[2]
        assert testbed.claim_namespace not in out.partition("Events:")[2]

        listed = app(testbed, "events", "-n", mine, "--for", f"{BUCKET.kind.lower()}/broken").stdout
        assert "Warning" in listed, listed
        warning = next(e for e in copies(testbed, mine) if e["type"] == "Warning")
        assert warning["involvedObject"]["name"] == "broken"
        assert warning["involvedObject"]["namespace"] == mine
        app_uid = testbed.kubectl_json(APP_CLUSTER, "get", PLURAL, "-n", mine, "broken")["metadata"]["uid"]
        assert warning["involvedObject"]["uid"] == app_uid
        assert warning["count"] >= 1 and warning["firstTimestamp"] and warning["lastTimestamp"]

        assert all(e["involvedObject"]["name"] == "fine" for e in copies(testbed, other)), copies(testbed, other)
        assert not any("broken" in json.dumps(e) for e in copies(testbed, other))

        app(testbed, "delete", PLURAL, "-n", mine, "broken", "--timeout=60s")
        eventually(lambda: not copies(testbed, mine), timeout=60, every=2, what="the copies to go with the claim")
        app(testbed, "delete", PLURAL, "-n", other, "fine", "--timeout=60s", check=False)
