"""What the component reads from the control plane while the program runs.

Discovery of the claim APIs, the warning about claims in kinds left unconnected, and the
wait for a scoped token: every call the program itself makes, behind ``upstream``, each
failure mapped to a ``McpConnectorError`` that names the URL and the cause (never a secret).
"""

import asyncio
import base64
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pulumi

from mcp_connector import upstream
from mcp_connector.core.access import AccessError
from mcp_connector.core.discovery import ClaimApi, select
from mcp_connector_component import kubeconfigs, scoped
from mcp_connector_component.credentials import to_kubeconfig
from mcp_connector_component.disconnect import describe, labelled_claims
from mcp_connector_component.errors import McpConnectorError
from mcp_connector_component.guard import KEEP, ClaimResource, DisconnectPlan
from mcp_connector_component.validation import Plain

#: Seconds preview-time discovery may take before the program fails.
DISCOVERY_TIMEOUT = 20.0
#: Seconds to wait for the control plane to fill a new ServiceAccount token Secret.
TOKEN_TIMEOUT = 60.0

Found = tuple[tuple[ClaimApi, ...], tuple[ClaimApi, ...]]


async def claim_apis(
    resource: pulumi.Resource, name: str, plain: Plain, secret_where: str, kubeconfig: pulumi.Output[str]
) -> Found:
    """(offered, to connect): pinned, or discovered once the credential is known.

    ``secret_where`` is ``namespace/name`` of control_plane_secret when that is the credential form.
    """
    pinned = plain.pinned
    if pinned is not None:
        return pinned, select(pinned, plain.selection)
    if not await kubeconfig.is_known():
        raise McpConnectorError(
            f"McpConnector {name}: the control-plane credentials are not known until apply (they come "
            "from another resource's output), so this preview cannot discover the claim APIs and would show "
            "fewer objects than the update makes. Pin them with claim_apis (e.g. "
            '["kubernetesclusters.k8s.starter.org/v1alpha1"]), or create the credentials first '
            "(pulumi up --target <their resource>)"
        )
    offered = await _offered(resource, name, secret_where, str(await kubeconfig.future()))
    return offered, select(offered, plain.selection)


async def _offered(resource: pulumi.Resource, name: str, secret_where: str, kubeconfig: str) -> tuple[ClaimApi, ...]:
    """Every claim API the control plane offers."""
    try:
        loaded = kubeconfigs.load(kubeconfig)
        if loaded.not_static and secret_where:
            raise AccessError(
                f"control_plane_secret {secret_where}: {loaded.not_static}, which the connector's pod cannot run; "
                "store a static credential in it"
            )
        async with upstream.connected(loaded.access, timeout=DISCOVERY_TIMEOUT) as client:
            found = await upstream.discover_apis_by_name(client)
    except (AccessError, upstream.ControlPlaneError) as e:
        raise McpConnectorError(
            f"McpConnector {name}: cannot discover claim APIs: {e}. "
            "To run without reaching the control plane, pin them with claim_apis"
        ) from None
    for entry in found.unserved:
        pulumi.log.info(f"McpConnector {name}: XRD {entry.xrd_name} is not served: {entry.reason}", resource)
    return found.apis


async def report_unconnected(
    resource: pulumi.Resource,
    name: str,
    kubeconfig: str,
    cluster_id: str,
    claim_namespace: str,
    offered: tuple[ClaimApi, ...],
    connected: tuple[ClaimApi, ...],
) -> None:
    """Warn about this cluster's claims in kinds not connected (dropped from include, or excluded).

    They stay in the control plane with their labels; the app cluster cannot see them
    until their kind is connected again, and a disconnect releases them too.
    """
    try:
        access = kubeconfigs.load(kubeconfig).access
        names = {a.resource for a in connected}
        left = [ClaimResource.of(a) for a in offered if a.resource not in names]
        if not left:
            return
        plan = DisconnectPlan("", "", claim_namespace, cluster_id, KEEP, tuple(left))
        async with upstream.connected(access, timeout=DISCOVERY_TIMEOUT) as client:
            for kind in left:
                owned = await labelled_claims(client, kind, plan)
                if owned:
                    pulumi.log.warn(
                        f"McpConnector {name}: {kind.resource} is not connected (include/exclude), but "
                        f"{len(owned)} claim(s) of this cluster are in it: "
                        + ", ".join(describe(kind.kind, o) for o in owned)
                        + ". They stay in the control plane with their labels, out of the app cluster's sight; "
                        "connecting the kind again brings them back, and a disconnect releases them too.",
                        resource=resource,
                    )
    except (McpConnectorError, AccessError, upstream.ControlPlaneError) as e:
        pulumi.log.warn(f"McpConnector {name}: could not check for claims in kinds not connected: {e}")


async def scoped_kubeconfig(name: str, platform: str, namespace: str, metadata: Any, data: Any) -> str:
    """A kubeconfig for the connector: the platform's cluster and trust, the scoped token (once filled in).

    A token Secret with no ``uid`` was not made: the engine only went through the program
    (a destroy of a stack that is already empty), so there is no token to wait for.
    """
    try:
        access = kubeconfigs.load(platform).access
        token = (data or {}).get(scoped.TOKEN_KEY)
        uid = metadata.get("uid") if isinstance(metadata, dict) else getattr(metadata, "uid", None)
        if token or not uid:
            return to_kubeconfig(
                dataclasses.replace(
                    access,
                    token=base64.b64decode(token).decode() if token else None,
                    client_cert_pem=None,
                    client_key_pem=None,
                ),
                name="mcp-connector",
            )
        path = upstream.api_path("api", "v1", "namespaces", namespace, "secrets", scoped.ScopedNames.token_secret)
        async with upstream.connected(access, timeout=DISCOVERY_TIMEOUT) as client:
            deadline = time.monotonic() + TOKEN_TIMEOUT
            while not (token := ((await upstream.request(client, "GET", path)).get("data") or {}).get("token")):
                if time.monotonic() > deadline:
                    raise McpConnectorError(
                        f"McpConnector {name}: the control plane did not fill in the token of "
                        f"Secret {namespace}/{scoped.ScopedNames.token_secret} in {TOKEN_TIMEOUT:.0f}s "
                        "(is its token controller running?)"
                    )
                await asyncio.sleep(0.5)
    except (AccessError, upstream.ControlPlaneError) as e:
        raise McpConnectorError(f"McpConnector {name}: cannot read the connector's token: {e}") from None
    scoped_access = dataclasses.replace(
        access, token=base64.b64decode(token).decode(), client_cert_pem=None, client_key_pem=None
    )
    return to_kubeconfig(scoped_access, name="mcp-connector")


def control_plane_url(name: str) -> Callable[[str], str]:
    """The control plane's URL in a kubeconfig (not a secret: the guard shows it)."""

    def url(kubeconfig: str) -> str:
        try:
            return kubeconfigs.load(kubeconfig).access.url
        except AccessError as e:
            raise McpConnectorError(f"McpConnector {name}: {e}") from None

    return url


def static_for_connector(name: str, what: str) -> Callable[[str], str]:
    """The connector's inlined kubeconfig for ``what``, or the error that says why a pod cannot use it."""

    def inline(text: str) -> str:
        try:
            return kubeconfigs.static_for_connector(text, what=what)
        except AccessError as e:
            raise McpConnectorError(f"McpConnector {name}: {e}") from None

    return inline
