"""Prometheus metrics: requests by verb and code, upstream latency, open watches.

One process-wide registry so the names are declared once and ``/metrics`` renders them all.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "mcp_connector_requests_total",
    "Requests served, by Kubernetes verb (or endpoint) and HTTP code.",
    ["verb", "code"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "mcp_connector_request_duration_seconds",
    "Time to answer a request (watches: until the stream starts).",
    ["verb"],
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "mcp_connector_upstream_request_duration_seconds",
    "Latency of calls to the control plane, by verb.",
    ["verb"],
    registry=REGISTRY,
)
OPEN_WATCHES = Gauge("mcp_connector_open_watches", "Watch streams currently open.", registry=REGISTRY)
AUTHZ_DECISIONS = Counter(
    "mcp_connector_authorization_decisions_total",
    "SubjectAccessReview decisions (cached or fresh).",
    ["allowed"],
    registry=REGISTRY,
)
THROTTLED = Counter(
    "mcp_connector_throttled_requests_total",
    "Requests refused with 429 by the fair-share limits, by kind (requests, watches)"
    " and limit (user, namespace, total).",
    ["kind", "limit"],
    registry=REGISTRY,
)
CACHE_READS = Counter(
    "mcp_connector_cache_reads_total",
    "Gets, lists and watches answered from the connector's cache (the rest go to the control plane).",
    ["verb"],
    registry=REGISTRY,
)
CACHE_PROOF_REQUESTS = Counter(
    "mcp_connector_cache_consistent_reads_total",
    "Consistent reads (no resourceVersion) that asked for a freshness proof of the cache.",
    registry=REGISTRY,
)
CACHE_PROOF_READS = Counter(
    "mcp_connector_cache_proof_reads_total",
    "Control-plane reads made to prove the cache fresh, each shared by the consistent reads waiting"
    " for it (divided by mcp_connector_cache_consistent_reads_total: proof reads per consistent read).",
    registry=REGISTRY,
)
CONSISTENT_LIST_PATHS = Counter(
    "mcp_connector_consistent_list_paths_total",
    "Consistent LISTs by the path chosen, the one measured faster for their scope: path=cache"
    " (a freshness proof, then the cache) or path=control plane (its answer translated).",
    ["path"],
    registry=REGISTRY,
)
CACHE_SKIPPED = Counter(
    "mcp_connector_cache_skipped_total",
    "What the cache could not use and left out instead of failing: an upstream event or object"
    " it cannot read (thing=event, object), a client watch whose event could not be written (watch).",
    ["thing"],
    registry=REGISTRY,
)
SECRET_SYNCS = Counter(
    "mcp_connector_connection_secret_syncs_total",
    "Connection-Secret syncs: full reconciles, and copies synced one by one after a claim or Secret changed.",
    ["kind"],
    registry=REGISTRY,
)
LEADER_STATUS = Gauge(
    "mcp_connector_leader_election_master_status",
    "1 while this replica holds the leader Lease else 0 (as client-go's leader_election_master_status).",
    ["name"],
    registry=REGISTRY,
)
LEADER_TRANSITIONS = Counter(
    "mcp_connector_leader_election_changes",
    "Times this replica acquired or lost the leader Lease.",
    ["name", "change"],
    registry=REGISTRY,
)
SERVED_APIS = Gauge("mcp_connector_served_claim_apis", "Claim APIs currently served.", registry=REGISTRY)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
