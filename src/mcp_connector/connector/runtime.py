"""The running connector's shared state, handed to every request handler.

Mutable only where the world changes underneath us (served claim APIs, front-proxy
settings); each is replaced whole, never edited in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp_connector import upstream
from mcp_connector.connector.admission.chain import Admission
from mcp_connector.connector.cache.registry import Caches
from mcp_connector.connector.followers.catalog import Catalog
from mcp_connector.connector.http.auth import FrontProxySettings
from mcp_connector.connector.http.authz import Authorizer
from mcp_connector.connector.http.fairshare import Gates
from mcp_connector.connector.http.tokens import TokenAuthenticator


@dataclass
class Runtime:
    """Clients, identity and the current snapshots a request needs."""

    control_plane: upstream.Client
    #: The control-plane pool for long-lived watches, apart from ``control_plane`` so that
    #: requests never wait for a connection a watch holds.
    control_plane_watches: upstream.Client
    app_cluster: upstream.Client
    control_plane_url: str
    cluster_id: str
    claim_namespace: str
    authorizer: Authorizer
    gates: Gates = field(default_factory=Gates)
    #: Checks bearer tokens for the connector's own endpoints (``/metrics``); None accepts none.
    tokens: TokenAuthenticator | None = None
    catalog: Catalog = field(default_factory=Catalog)
    front_proxy: FrontProxySettings | None = None
    catalog_loaded: bool = False
    #: Why the claim APIs could not be read yet (names the control plane, never a credential).
    catalog_error: str = "the claim APIs have not been read yet"
    #: Called after the connector itself created or deleted claims (connection Secrets follow).
    claims_changed: Callable[[], None] = lambda: None
    #: The caches that answer reads and watches (None: every request goes to the control plane).
    caches: Caches | None = None
    #: Seconds a control-plane watch may stay silent before it counts as dead (see upstream.watch).
    watch_idle_timeout: float = upstream.WATCH_IDLE_TIMEOUT
    #: The app cluster's admission chain for claim writes (None: no admission, e.g. in unit tests).
    admission: Admission | None = None
    #: Set on SIGTERM: ``/readyz`` fails so endpoints move to other replicas while we still serve.
    stopping: bool = False
    #: Set once the shutdown delay is over: open watches end cleanly (clients resume elsewhere
    #: from their last resourceVersion) and new ones end right after their first events.
    draining: asyncio.Event = field(default_factory=asyncio.Event)
