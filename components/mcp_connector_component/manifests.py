"""Pure builders of the Kubernetes objects McpConnector creates in an app cluster.

Everything the component puts into the app cluster is decided here, as plain
dicts in the Kubernetes JSON shape, so it can be unit-tested without Pulumi and
read in one place. Values may be Pulumi Outputs (the component passes them
through untouched); the builders never look inside them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_connector.core import contract
from mcp_connector.core.discovery import GroupVersion

RawObject = dict[str, Any]

#: Port the connector serves HTTPS on inside its pod.
CONTAINER_PORT = 8443
#: Port of the in-cluster Service (what the aggregator dials).
SERVICE_PORT = 443
#: Where the pod finds its serving certificate and its control-plane kubeconfig.
TLS_MOUNT = "/var/run/mcp-connector/tls"
CREDENTIALS_MOUNT = "/var/run/mcp-connector/credentials"
#: Key of the control-plane kubeconfig in the credentials Secret (also in a user's existing Secret).
KUBECONFIG_KEY = "kubeconfig"
#: Annotation whose change rolls the pods when the connector's configuration (or token) changes.
CHECKSUM_ANNOTATION = "mcp-connector.upbound.io/config-checksum"
#: Tells pulumi-kubernetes not to wait for readiness (useful only where no kubelet runs pods).
#: Non-root user the image runs as (the distroless "nonroot" user).
RUN_AS_USER = 65532

DEFAULT_GROUP_PRIORITY_MINIMUM = 1000
DEFAULT_VERSION_PRIORITY = 15
#: A group's preferred version (its highest in Kubernetes version order, as kube-apiserver would
#: prefer it) is ranked above the others, so the aggregator advertises the same preference.
PREFERRED_VERSION_PRIORITY = 20

_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")


class ManifestError(ValueError):
    """An argument that cannot be turned into a valid object; the message names the argument."""


@dataclass(frozen=True)
class InCluster:
    """The connector runs as a Deployment behind a ClusterIP Service (the production default)."""


@dataclass(frozen=True)
class External:
    """The connector runs outside the cluster at ``host:port``; the Service is an ExternalName."""

    host: str
    port: int


Mode = InCluster | External
IN_CLUSTER = "in-cluster"


def parse_mode(mode: str | None) -> Mode:
    """Parse the ``mode`` argument: ``in-cluster`` (default) or ``host:port``."""
    if mode is None or mode in ("", IN_CLUSTER):
        return InCluster()
    host, sep, port = mode.rpartition(":")
    if not sep or not host or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ManifestError(f"mode {mode!r} must be {IN_CLUSTER!r} or 'host:port' of an external connector")
    return External(host=host, port=int(port))


@dataclass(frozen=True)
class Names:
    """The Kubernetes names of everything one connector install creates."""

    base: str
    namespace: str
    #: ``app.kubernetes.io/managed-by`` on every object: Pulumi for the component, the render
    #: command's own value for manifests applied by kubectl, Argo CD or Flux.
    managed_by: str = "pulumi"

    @property
    def service(self) -> str:
        """Service (and ServiceAccount, Deployment) name; its DNS name is on the serving cert."""
        return self.base

    @property
    def service_dns(self) -> str:
        """The TLS name the aggregator verifies: ``<service>.<namespace>.svc``."""
        return f"{self.service}.{self.namespace}.svc"

    @property
    def tls_secret(self) -> str:
        """Secret with the serving certificate, its key and the CA (in-cluster mode)."""
        return f"{self.base}-tls"

    @property
    def ca_secret(self) -> str:
        """Secret with the CA (and its key) that issues the serving certificate (in-cluster mode)."""
        return f"{self.base}-tls-ca"

    @property
    def credentials_secret(self) -> str:
        """Secret with the control-plane kubeconfig the connector uses."""
        return f"{self.base}-credentials"

    @property
    def cluster_role(self) -> str:
        """ClusterRole (and its binding) for connection-secret sync."""
        return self.base

    @property
    def leader_lease(self) -> str:
        """The Lease the replicas elect their leader with (in ``namespace``), and its Role and binding."""
        return self.base

    @property
    def leader_role(self) -> str:
        """Role (and its RoleBinding) on exactly that Lease."""
        return f"{self.base}:leader-election"

    @property
    def admission_policy(self) -> str:
        """ValidatingAdmissionPolicy (and its binding) fencing the connector's writes; cluster-scoped,
        so the namespace is in the name and two installs never share one."""
        return f"{self.base}.{self.namespace}.mcp-connector.upbound.io"

    @property
    def username(self) -> str:
        """The connector's user name in the app cluster (its ServiceAccount's)."""
        return f"system:serviceaccount:{self.namespace}:{self.service}"

    @property
    def auth_delegator_binding(self) -> str:
        """ClusterRoleBinding to ``system:auth-delegator`` (TokenReview, SubjectAccessReview)."""
        return f"{self.base}:system:auth-delegator"

    @property
    def auth_reader_binding(self) -> str:
        """RoleBinding in kube-system to read the front-proxy CA (``extension-apiserver-authentication``)."""
        return f"{self.base}:extension-apiserver-authentication-reader"


def labels(names: Names) -> dict[str, str]:
    """Labels on every object, so ``kubectl get -l`` finds one install."""
    return {
        "app.kubernetes.io/name": "mcp-connector",
        "app.kubernetes.io/instance": names.base,
        "app.kubernetes.io/managed-by": names.managed_by,
    }


def _meta(name: str, names: Names, *, namespaced: bool = True, namespace: str | None = None) -> RawObject:
    meta: RawObject = {"name": name, "labels": labels(names)}
    if namespaced:
        meta["namespace"] = namespace or names.namespace
    return meta


def credentials_secret(names: Names, kubeconfig: Any) -> RawObject:
    """The Secret holding the control-plane kubeconfig (token forms are turned into one)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names.credentials_secret, names),
        "type": "Opaque",
        "stringData": {KUBECONFIG_KEY: kubeconfig},
    }


def tls_secret_data(*, cert_pem: str, key_pem: str, ca_pem: str) -> dict[str, str]:
    """The serving Secret's data: the certificate, its key, and the CA that signed it."""
    return {"tls.crt": _b64(cert_pem), "tls.key": _b64(key_pem), "ca.crt": _b64(ca_pem)}


def tls_secret(names: Names, *, name: str, data: Any) -> RawObject:
    """The serving certificate Secret (``data`` from ``tls_secret_data``, or an Output of it); its ``ca.crt``
    goes into every APIService's caBundle."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, names), "type": "kubernetes.io/tls",
            "data": data}  # fmt: skip


def ca_secret(names: Names, *, ca_pem: str, key_pem: str) -> RawObject:
    """The CA Secret: the CA that issues the serving certificate, kept so a new certificate can come from it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names.ca_secret, names),
        "type": "Opaque",
        "data": {"ca.crt": _b64(ca_pem), "ca.key": _b64(key_pem)},
    }


def service_account(names: Names) -> RawObject:
    """The connector's identity in the app cluster."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(names.service, names)}


def _subject(names: Names) -> list[RawObject]:
    return [{"kind": "ServiceAccount", "name": names.service, "namespace": names.namespace}]


def cluster_role(names: Names, *, manage_apiservices: bool = False) -> RawObject:
    """Exactly what the connector does itself in the app cluster, nothing more.

    Connection Secrets: it lists and watches its own copies cluster-wide (by label; the watch
    asks for metadata only, so every replica knows which copies a new leader must redo first)
    and creates, replaces and deletes them; it never gets or patches one. RBAC cannot name them (their
    names and namespaces are the users'), so ``admission_policy`` narrows the writes to
    labelled copies. Namespaces: it reads kube-system's UID (the default cluster ID) and
    checks a namespace exists before a write. APIServices are created by Pulumi, so the
    connector only gets rights on them when it manages them itself (again fenced by the
    policy to the ones it owns). Events: it lists its copies of claim events (by label) and
    creates, replaces and deletes them. SubjectAccessReviews and the front-proxy CA come from
    the two standard bindings.
    Admission: it watches the admission configurations and namespaces (selectors, CEL's
    ``namespaceObject``) and reads webhook Services, as kube-apiserver does for its own chain.
    """
    rules: list[RawObject] = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": [
                "validatingadmissionpolicies",
                "validatingadmissionpolicybindings",
                "validatingwebhookconfigurations",
                "mutatingwebhookconfigurations",
            ],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
            "verbs": ["list", "watch"],
        },
    ]
    if manage_apiservices:
        # Its own ClusterRole owns the APIServices it makes (garbage-collected with the install).
        rules.append(
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "verbs": ["get", "list", "watch"],
                "resourceNames": [names.cluster_role],
            }
        )
        rules.append(
            {
                "apiGroups": ["apiregistration.k8s.io"],
                "resources": ["apiservices"],
                "verbs": ["list", "create", "update", "delete"],
            }
        )
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(names.cluster_role, names, namespaced=False),
        "rules": rules,
    }


def leader_role(names: Names) -> RawObject:
    """The leader-election Lease and nothing else: get, watch and update it by name (a watch of
    one name, by ``fieldSelector``, is authorized by name); create, which RBAC cannot restrict by
    name (the name is not known before the object exists)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(names.leader_role, names),
        "rules": [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "watch", "update"],
                "resourceNames": [names.leader_lease],
            },
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        ],
    }


def leader_role_binding(names: Names) -> RawObject:
    """Binds the leader-election Role to the connector's ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(names.leader_role, names),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.leader_role},
        "subjects": _subject(names),
    }


def cluster_role_binding(names: Names) -> RawObject:
    """Binds the connector's ClusterRole to its ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(names.cluster_role, names, namespaced=False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": names.cluster_role},
        "subjects": _subject(names),
    }


#: The label on every connection-Secret copy (``followers/secrets_sync.py``'s ``MANAGED_LABEL``).
COPY_LABEL = f"{contract.LABEL_DOMAIN}/connection-secret-for"
#: The label on the connector's copies of claim events (connector.followers.events.COPY_LABEL).
EVENT_COPY_LABEL = f"{contract.LABEL_DOMAIN}/event-copy-for"
#: What marks an APIService the connector made (``followers/apiservices.py``).
APISERVICE_MANAGED_BY = ("app.kubernetes.io/managed-by", "mcp-connector")
#: A Secret of this type makes the token controller mint a token for any ServiceAccount it names.
SERVICE_ACCOUNT_TOKEN_TYPE = "kubernetes.io/service-account-token"
_WRITES = ["CREATE", "UPDATE", "DELETE"]


def _cel(text: str) -> str:
    """A CEL string literal (names here are DNS names and label keys: no quote can occur)."""
    if "'" in text or "\\" in text:
        raise ManifestError(f"{text!r} cannot be put into a CEL expression")
    return f"'{text}'"


def _new_and_old(holds: Callable[[str], str]) -> str:
    """``holds`` for the new object (create, update) and for the old one (update, delete)."""
    new, old = holds("object"), holds("oldObject")
    return f"(request.operation == 'DELETE' || ({new})) && (request.operation == 'CREATE' || ({old}))"


def _secret_rule() -> str:
    """A labelled copy, never a ServiceAccount token."""
    label, token = _cel(COPY_LABEL), _cel(SERVICE_ACCOUNT_TOKEN_TYPE)
    return _new_and_old(
        lambda v: (
            f"{v} != null && has({v}.metadata.labels) && {label} in {v}.metadata.labels"
            f" && (!has({v}.type) || {v}.type != {token})"
        )
    )


def _event_rule() -> str:
    """A labelled copy of a claim event."""
    label = _cel(EVENT_COPY_LABEL)
    return _new_and_old(lambda v: f"{v} != null && has({v}.metadata.labels) && {label} in {v}.metadata.labels")


def _apiservice_rule(manage_apiservices: bool, owner: str | None) -> str:
    """Its managed-by label and, with an owner, its owner's ownerReference."""
    if not manage_apiservices:
        return "false"
    key, value = (_cel(part) for part in APISERVICE_MANAGED_BY)

    def owned(v: str) -> str:
        rule = f"{v} != null && has({v}.metadata.labels) && {key} in {v}.metadata.labels"
        rule += f" && {v}.metadata.labels[{key}] == {value}"
        if owner is not None:
            rule += (
                f" && has({v}.metadata.ownerReferences) && {v}.metadata.ownerReferences.exists(r,"
                f" r.kind == 'ClusterRole' && r.name == {_cel(owner)}"
                " && r.apiVersion.startsWith('rbac.authorization.k8s.io/'))"
            )
        return rule

    return _new_and_old(owned)


def admission_policy(
    names: Names, *, manage_apiservices: bool = False, apiservice_owner: str | None = None
) -> RawObject:
    """The app cluster itself refuses the connector's ServiceAccount any Secret, Event or APIService it did not make.

    RBAC cannot narrow writes by label, so a stolen connector token could otherwise write any
    Secret in the cluster. Only this install's ServiceAccount is matched (two installs never
    judge each other), every create, update and delete is checked on the object and on the
    old object (an update cannot remove the label, a delete needs it), and ``Fail`` keeps the
    fence closed when the policy cannot be evaluated.
    """
    apiservice_rule = _apiservice_rule(manage_apiservices, apiservice_owner)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(names.admission_policy, names, namespaced=False),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["*"], "resources": ["secrets"], "operations": _WRITES},
                    {"apiGroups": [""], "apiVersions": ["*"], "resources": ["events"], "operations": _WRITES},
                    {
                        "apiGroups": ["apiregistration.k8s.io"],
                        "apiVersions": ["*"],
                        "resources": ["apiservices", "apiservices/status"],
                        "operations": _WRITES,
                    },
                ],
            },
            "matchConditions": [
                {
                    "name": "connector-service-account",
                    "expression": f"request.userInfo.username == {_cel(names.username)}",
                }
            ],
            "validations": [
                {
                    "expression": f"request.resource.resource != 'secrets' || ({_secret_rule()})",
                    "message": (
                        f"the connector may write only its connection-Secret copies (label {COPY_LABEL}, "
                        f"never of type {SERVICE_ACCOUNT_TOKEN_TYPE})"
                    ),
                    "reason": "Forbidden",
                },
                {
                    "expression": f"request.resource.resource != 'apiservices' || ({apiservice_rule})",
                    "message": "the connector may write only the APIServices it manages (label "
                    f"{'='.join(APISERVICE_MANAGED_BY)}"
                    + (f", owned by ClusterRole {apiservice_owner}" if manage_apiservices and apiservice_owner else "")
                    + ")"
                    if manage_apiservices
                    else "the connector does not write APIServices in this install",
                    "reason": "Forbidden",
                },
                {
                    "expression": f"request.resource.resource != 'events' || ({_event_rule()})",
                    "message": f"the connector may write only its copies of claim events (label {EVENT_COPY_LABEL})",
                    "reason": "Forbidden",
                },
            ],
        },
    }


def admission_policy_binding(names: Names) -> RawObject:
    """Puts the policy into force (``Deny``) for every namespace and cluster-scoped object."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(names.admission_policy, names, namespaced=False),
        "spec": {"policyName": names.admission_policy, "validationActions": ["Deny"]},
    }


def auth_delegator_binding(names: Names) -> RawObject:
    """Lets the connector ask the app cluster for SubjectAccessReviews (delegated authorization)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(names.auth_delegator_binding, names, namespaced=False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:auth-delegator",
        },
        "subjects": _subject(names),
    }


def auth_reader_binding(names: Names) -> RawObject:
    """Lets the connector read the front-proxy CA it authenticates the aggregator with."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(names.auth_reader_binding, names, namespace="kube-system"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "extension-apiserver-authentication-reader",
        },
        "subjects": _subject(names),
    }


@dataclass(frozen=True)
class ConnectorSettings:
    """What the connector process is told on its command line (values may be Outputs)."""

    claim_namespace: Any
    #: None: the connector uses the UID of the app cluster's kube-system namespace itself.
    cluster_id: Any
    #: The connector creates, updates and deletes the APIServices itself (manifests without
    #: Pulumi, where nothing else would keep them current); it then needs the CA to publish.
    manage_apiservices: bool = False
    #: ClusterRole that owns the APIServices the connector makes (deleting it removes them).
    apiservice_owner: str | None = None


def connector_args(names: Names, settings: ConnectorSettings) -> list[Any]:
    """The container's arguments: the flags of ``mcp-connector serve``, the image's entrypoint.

    The claim API selection is not passed: the connector can serve every claim API, and
    only the selected ones get an APIService, so only those reach it.
    """
    args: list[Any] = [
        f"--port={CONTAINER_PORT}",
        f"--tls-cert-file={TLS_MOUNT}/tls.crt",
        f"--tls-key-file={TLS_MOUNT}/tls.key",
        f"--control-plane-kubeconfig={CREDENTIALS_MOUNT}/{KUBECONFIG_KEY}",
        f"--service-name={names.service}",
        f"--service-namespace={names.namespace}",
        "--claim-namespace",
        settings.claim_namespace,
    ]
    if settings.cluster_id is not None:
        args += ["--cluster-id", settings.cluster_id]
    if settings.manage_apiservices:
        args += ["--manage-apiservices", f"--tls-ca-file={TLS_MOUNT}/ca.crt"]
    if settings.apiservice_owner is not None:
        args.append(f"--apiservice-owner={settings.apiservice_owner}")
    return args


def config_checksum(*parts: str | Sequence[str] | None) -> str:
    """SHA-256 over the connector's configuration, including its credentials.

    Only the digest leaves this function; it goes into a pod-template annotation so a
    changed token or kubeconfig rolls the pods.
    """
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()


#: The connector's container resources unless given: the memory limit holds the process's
#: baseline, its caches' stores, and the connector's byte budgets at their defaults
#: (--cache-history-bytes 128 MiB, --watch-queue-bytes 8 MiB per lagging watch).
DEFAULT_RESOURCES: RawObject = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "768Mi"}}


#: Replicas in-cluster unless told otherwise: one leader writing, every replica serving.
DEFAULT_REPLICAS = 2
#: The connector's own defaults: after SIGTERM it stays up, unready, for --shutdown-delay-seconds
#: (5) while endpoints move, then waits up to --shutdown-timeout-seconds (20) for requests in
#: flight; the kubelet's SIGKILL must come after both, with a margin.
SHUTDOWN_DELAY_SECONDS, SHUTDOWN_TIMEOUT_SECONDS = 5, 20
TERMINATION_GRACE_SECONDS = SHUTDOWN_DELAY_SECONDS + SHUTDOWN_TIMEOUT_SECONDS + 5
#: The connector reads its leader-election identity from this variable (--leader-elect-identity).
IDENTITY_ENV = "MCP_CONNECTOR_LEADER_ELECT_IDENTITY"


def deployment(
    names: Names,
    *,
    image: Any,
    replicas: int,
    settings: ConnectorSettings,
    checksum: Any,
    credentials_secret_name: str,
    tls_secret_name: str,
    resources: Any = None,
) -> RawObject:
    """The connector Deployment: non-root, read-only root filesystem, no privilege escalation."""
    selector = {"app.kubernetes.io/name": "mcp-connector", "app.kubernetes.io/instance": names.base}

    def probe(path: str) -> RawObject:
        return {"httpGet": {"path": path, "port": CONTAINER_PORT, "scheme": "HTTPS"}, "periodSeconds": 10}

    container: RawObject = {
        "name": "connector",
        "image": image,
        "args": connector_args(names, settings),
        "ports": [{"name": "https", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "readinessProbe": probe("/readyz"),
        "livenessProbe": {**probe("/livez"), "failureThreshold": 6},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The pod's name is its identity in the leader Lease (the connector elects with a Lease
        # named after its Service, --leader-elect-lease-name's default).
        "env": [{"name": IDENTITY_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [
            {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True},
            {"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    container["resources"] = resources if resources is not None else DEFAULT_RESOURCES
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(names.service, names),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**labels(names), **selector}, "annotations": {CHECKSUM_ANNOTATION: checksum}},
                "spec": {
                    "serviceAccountName": names.service,
                    "automountServiceAccountToken": True,
                    # Replicas on different nodes where there are several (never a reason not to run).
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "tls", "secret": {"secretName": tls_secret_name}},
                        {"name": "credentials", "secret": {"secretName": credentials_secret_name}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def pod_disruption_budget(names: Names) -> RawObject:
    """Keeps one connector serving through voluntary disruptions (only made when replicas > 1)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(names.service, names),
        "spec": {
            "minAvailable": 1,
            "selector": {
                "matchLabels": {"app.kubernetes.io/name": "mcp-connector", "app.kubernetes.io/instance": names.base}
            },
        },
    }


def service(names: Names, mode: Mode) -> RawObject:
    """ClusterIP in front of the pods, or an ExternalName pointing at an external connector.

    Pulumi waits for a ClusterIP Service to have endpoints (a ready pod) and for the Deployment
    to be Available, as for any workload.
    """
    spec: RawObject
    if isinstance(mode, External):
        spec = {
            "type": "ExternalName",
            "externalName": mode.host,
            "ports": [{"name": "https", "port": mode.port, "protocol": "TCP"}],
        }
    else:
        spec = {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "mcp-connector", "app.kubernetes.io/instance": names.base},
            "ports": [{"name": "https", "port": SERVICE_PORT, "targetPort": CONTAINER_PORT, "protocol": "TCP"}],
        }
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(names.service, names), "spec": spec}


def service_port(mode: Mode) -> int:
    """The Service port every APIService points at."""
    return mode.port if isinstance(mode, External) else SERVICE_PORT


def version_priorities(gvs: Iterable[GroupVersion], preferred: Mapping[str, str]) -> dict[GroupVersion, int]:
    """``versionPriority`` per group/version: the group's preferred version ranks first."""
    return {
        gv: PREFERRED_VERSION_PRIORITY if preferred.get(gv.group) == gv.version else DEFAULT_VERSION_PRIORITY
        for gv in gvs
    }


def apiservice(
    names: Names,
    gv: GroupVersion,
    *,
    ca_bundle: Any,
    port: int,
    group_priority_minimum: int = DEFAULT_GROUP_PRIORITY_MINIMUM,
    version_priority: int = DEFAULT_VERSION_PRIORITY,
) -> RawObject:
    """The APIService that routes one claim group/version to the connector (``caBundle``, no skip-verify)."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": _meta(gv.apiservice_name, names, namespaced=False),
        "spec": {
            "group": gv.group,
            "version": gv.version,
            "groupPriorityMinimum": group_priority_minimum,
            "versionPriority": version_priority,
            "caBundle": ca_bundle,
            "service": {"name": names.service, "namespace": names.namespace, "port": port},
        },
    }


def ca_bundle_of(ca_pem: str) -> str:
    """The ``caBundle`` field value (base64 of the PEM) for a PEM CA certificate."""
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise ManifestError("ca_bundle must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    return _b64(ca_pem)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
