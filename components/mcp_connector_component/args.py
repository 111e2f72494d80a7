"""The arguments of McpConnector: its published schema.

The component provider host infers the multi-language schema from this TypedDict:
each field's type becomes the property type and the docstring under it becomes the
property's documentation. So this module deliberately avoids ``from __future__
import annotations`` (the analyzer needs real types) and union types (the schema has
none). Fields that decide which objects exist (mode, namespace, replicas, selection,
which credential form) are plain values; the rest accept Outputs.
"""

from typing import NotRequired, TypedDict

import pulumi


class McpConnectorArgs(TypedDict):
    """Arguments of McpConnector: which control plane to connect, with which credentials, and how."""

    claim_namespace: NotRequired[pulumi.Input[str]]
    """Namespace in the control plane where this cluster's claims are stored; give every app cluster its
    own. With `platform_kubeconfig` the component creates it (default `mcp-<cluster ID>`) and keeps it
    on disconnect; otherwise it must exist and is required."""

    account: NotRequired[pulumi.Input[str]]
    """Upbound account (organization) of the control plane; needed with `token`."""

    control_plane: NotRequired[pulumi.Input[str]]
    """Name of the Upbound managed control plane; needed with `token`."""

    host: NotRequired[pulumi.Input[str]]
    """Upbound API host used with `token` (default `proxy.upbound.io`). The control-plane URL is
    `https://<host>/v1/controlPlanes/<account>/<control_plane>/k8s`."""

    token: NotRequired[pulumi.Input[str]]
    """Upbound API token (a secret), given to the connector as it is. Exactly one of `token`,
    `control_plane_secret`, `control_plane_kubeconfig` and `platform_kubeconfig` is given."""

    platform_kubeconfig: NotRequired[pulumi.Input[str]]
    """A kubeconfig with the platform team's rights on the control plane (a secret): to create
    namespaces, ServiceAccounts and RBAC. The component creates this cluster's claim namespace and a
    ServiceAccount whose Role covers exactly the served claim kinds and the Secrets of that namespace,
    and gives the connector only that ServiceAccount's token. The platform credential itself stays in
    Pulumi state (discovery and the disconnect use it) and never reaches the app cluster."""

    control_plane_secret: NotRequired[str]
    """Name of an existing Secret in `namespace` whose `kubeconfig` key holds a kubeconfig for the
    control plane. The connector mounts it; the component reads it to discover claim APIs."""

    control_plane_kubeconfig: NotRequired[pulumi.Input[str]]
    """A kubeconfig for the control plane (a secret), given to the connector as it is, for control planes
    outside Upbound. Its current context is used; bearer tokens and client certificates are supported,
    exec plugins are not."""

    cluster_id: NotRequired[pulumi.Input[str]]
    """Identity of this app cluster in the control plane (the `app-cluster` label on its claims).
    Default: the UID of the app cluster's `kube-system` namespace. Set it to let a rebuilt cluster
    take over the claims of the cluster it replaces (moving to another app cluster is a change of
    identity: see `allow_identity_change`)."""

    app_cluster_uid: NotRequired[pulumi.Input[str]]
    """The UID of the app cluster's `kube-system` namespace, given as a value instead of read from the
    cluster the provider points at: only to disconnect an app cluster that is gone (the program then
    reads nothing from it). Give the `app_cluster_uid` output the stack recorded."""

    namespace: NotRequired[str]
    """Namespace the connector is installed in (default `kube-system`)."""

    image: NotRequired[pulumi.Input[str]]
    """Container image of the connector; required in in-cluster mode. No image is published: build
    one from the repository's `Containerfile` (`podman build`, `docker build` or `make image`), push it
    to a registry the cluster pulls from, and give that reference here."""

    replicas: NotRequired[int]
    """Number of connector pods in-cluster (default 2, spread over nodes; a PodDisruptionBudget is added
    when more than 1). Every pod serves; one, elected through a Lease, copies connection Secrets."""

    resources: NotRequired[pulumi.Input[dict[str, dict[str, str]]]]
    """Container resources, e.g. `{"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}`.

    Default: requests of 100m CPU and 256Mi memory, a 768Mi memory limit (room for the connector's
    cache budgets at their defaults)."""

    mode: NotRequired[str]
    """`in-cluster` (default): the connector runs as a Deployment behind a ClusterIP Service. Or
    `host:port` of a connector running outside the cluster: the Service becomes an ExternalName for
    `host`, the APIServices use `port`, no Deployment is made, and `ca_bundle` is required."""

    ca_bundle: NotRequired[pulumi.Input[str]]
    """External mode: PEM CA certificate that verifies the external connector's serving certificate
    (`mcp-connector serve` writes it to `<cert-dir>/ca.crt`). Ignored in-cluster, where the component
    makes and keeps its own CA."""

    include: NotRequired[list[str]]
    """Claim APIs to connect, as `plural.group`, `Kind.group` or `group` names or fnmatch patterns
    (`*.example.org`). Empty or absent: every claim API the control plane offers."""

    claim_apis: NotRequired[list[str]]
    """Pin the claim APIs to connect instead of discovering them: for teams that want no discovery at
    preview, for a control plane that cannot be reached, and for credentials only known at apply. Entries
    are `group/version/Kind` as the `claim_apis` output lists them (the plural is then the lowercase kind
    plus `s`), or `plural.group/version`. `include`/`exclude` still apply."""

    exclude: NotRequired[list[str]]
    """Claim APIs not to connect (same forms as `include`); wins over `include`."""

    on_disconnect: NotRequired[pulumi.Input[str]]
    """What disconnecting (deleting the component) does to this cluster's claims: `Keep` (default) leaves
    them in the control plane with their labels, so reconnecting with the same cluster ID brings them
    back; `Release` replaces the connector labels with `mcp-connector.upbound.io/released-from-*`
    annotations so they live on as ordinary control-plane claims. Claims are never deleted."""

    allow_identity_change: NotRequired[pulumi.Input[bool]]
    """Let an update change the connection's identity (`cluster_id`, `claim_namespace`, the control
    plane, or the app cluster the provider points at, told by its `kube-system` UID): the update then first
    disconnects the old identity as `on_disconnect` says (for a rebuilt cluster that takes over the
    claims with the same `cluster_id`, `Keep`). Without it such an update is refused and the
    old identity's claims are not touched; its preview shows which claims the disconnect of the old identity keeps or
    releases either way."""

    allow_api_removal: NotRequired[pulumi.Input[bool]]
    """Let an update remove the APIService of a claim kind the control plane stopped offering although
    `include`/`exclude` still select it (an XRD not Established, often briefly) while this cluster has
    claims in it. Without it such an update is refused without removing it, and its preview warns;
    dropping the kind from `include` needs no such permission."""

    group_priority_minimum: NotRequired[int]
    """`groupPriorityMinimum` of every APIService (default 1000)."""
