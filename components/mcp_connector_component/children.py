"""Registering the component's children in the app cluster: credentials, workload, RBAC, APIServices, guard.

The objects themselves come from ``manifests``; this module only turns them into typed
pulumi-kubernetes resources with the options every child needs, and keeps the list the
guard depends on (so that the guard, whose deletion runs the disconnect, goes first).
"""

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
import pulumi_kubernetes as k8s

from mcp_connector.core.discovery import ClaimApi, group_versions, preferred_versions
from mcp_connector_component import manifests, scoped, tls
from mcp_connector_component.discovery import control_plane_url
from mcp_connector_component.guard import KEEP, ClaimResource, Disconnect, DisconnectGuard
from mcp_connector_component.hook import (
    check_hook,
    declare_guard,
    guard_gone_hook,
    identity_hook,
    register_disconnect_hook,
)
from mcp_connector_component.validation import PLATFORM, Plain, on_disconnect

T = TypeVar("T")


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def kwargs(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields of a manifest as keyword arguments of the typed pulumi-kubernetes class."""
    return {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}


@dataclass
class Registrar:
    """Where children go: their parent, the names they derive from, and every child made so far."""

    parent: pulumi.Resource
    name: str
    #: Every child but the guard, which depends on them all so that it is deleted first.
    made: list[pulumi.Resource] = field(default_factory=list)
    #: The app cluster's kube-system UID, once known (``app_child``).
    app_cluster: pulumi.Output[str] | None = None

    def under(self, **options: Any) -> pulumi.ResourceOptions:
        """Options of a child that is not an object of the app cluster (a read, the guard, the disconnect)."""
        return pulumi.ResourceOptions(parent=self.parent, **options)

    def child(self, **options: Any) -> pulumi.ResourceOptions:
        """Options of an object in a cluster.

        Every object has a fixed name, so a replacement must delete the old one before
        creating the new one (`pulumi up --replace`, a replaced provider): created first,
        the new object would collide with the old one's name, and the old one's delete
        would then remove the object the new one just took over.
        """
        return self.under(delete_before_replace=True, **options)

    def app_child(self, **options: Any) -> pulumi.ResourceOptions:
        """Options of an object in the app cluster: replaced when the app cluster changes.

        The engine replaces a resource whose provider is replaced in the same deployment, but
        an update the identity check refused has already recorded the re-pointed provider: the
        allowed ``up`` after it would update these objects in place in the new cluster, where
        they do not exist. A change of the app cluster's UID replaces them (deleted from the old
        cluster through the old provider, made in the new one); a trigger recorded for the
        first time (a stack made before it existed) replaces nothing.
        """
        if self.app_cluster is not None:
            options["replacement_trigger"] = self.app_cluster
        return self.child(**options)


@dataclass(frozen=True)
class Connection:
    """What the children are built from once discovery succeeded."""

    apis: tuple[ClaimApi, ...]
    #: The credential the program (and the disconnect hook) uses.
    access_kubeconfig: pulumi.Output[str]
    #: The credential the connector's pods use (scoped, or inlined).
    kubeconfig: pulumi.Output[str]
    cluster_id: pulumi.Output[str]
    claim_namespace: pulumi.Output[str]
    fence: scoped.Fence | None
    #: The app cluster's kube-system UID, recorded in the guard's plan.
    app_cluster: pulumi.Output[str]


#: pulumi-kubernetes waits for this condition on create and update: an APIService counts as made
#: once the aggregator serves it, so what depends on the component can use its claim APIs.
WAIT_FOR_ANNOTATION = {"pulumi.com/waitFor": "condition=Available"}


@dataclass(frozen=True)
class Registered:
    """What ``register`` made that the component hands on."""

    apiservice_names: list[str]
    apiservices: list[pulumi.Resource]


def served_marker(reg: Registrar, plain: Plain, registered: pulumi.Output[Registered]) -> None:
    """A ConfigMap listing the served APIServices, made once they are all Available.

    ``depends_on=[connector]`` waits for the component's children, but Pulumi's Python SDK
    takes the children there are when the dependent is registered, and the APIServices are
    registered later, once discovery answered. This child is registered at once, depends on
    every APIService, and so makes a dependent wait until they are Available (and, in a
    destroy, go before them).
    """
    names = plain.names
    apiservices: pulumi.Output[list[pulumi.Resource]] = registered.apply(lambda r: r.apiservices)
    marker = k8s.core.v1.ConfigMap(
        f"{reg.name}-served",
        opts=reg.app_child(depends_on=apiservices),
        metadata={"name": f"{names.base}-served", "namespace": names.namespace, "labels": manifests.labels(names)},
        data={"apiservices": registered.apply(lambda r: ",".join(sorted(r.apiservice_names)))},
    )
    reg.made.append(marker)


def register(reg: Registrar, raw: Mapping[str, Any], plain: Plain, conn: Connection) -> Registered:
    """Register every app-cluster child and the guard."""
    names, mode, name, made = plain.names, plain.mode, reg.name, reg.made
    mounted: list[pulumi.Resource] = []
    if plain.credential_form == "control_plane_secret":
        credentials_name = str(raw["control_plane_secret"])
    else:
        credentials_name = names.credentials_secret
        mounted.append(
            k8s.core.v1.Secret(
                f"{name}-credentials",
                opts=reg.app_child(additional_secret_outputs=["data", "stringData"]),
                **kwargs(manifests.credentials_secret(names, conn.kubeconfig)),
            )
        )
        made += mounted

    serving: list[pulumi.Resource] = []
    if isinstance(mode, manifests.External):
        ca_bundle: pulumi.Output[str] = pulumi.Output.from_input(raw["ca_bundle"]).apply(manifests.ca_bundle_of)
    else:
        tls_secret, ca_bundle = _serving_tls(reg, names)
        serving.append(tls_secret)
        serving += _workload(reg, raw, plain, conn, credentials_name, tls_secret, mounted=[*mounted, tls_secret])

    _access_rbac(reg, names)
    serving.append(
        k8s.core.v1.Service(
            f"{name}-service",
            opts=reg.app_child(),
            **kwargs(manifests.service(names, mode)),
        )
    )
    made += serving

    gvs = group_versions(conn.apis)
    preferred = preferred_versions(conn.apis)
    priorities = manifests.version_priorities(gvs, preferred)
    apiservices: list[pulumi.Resource] = []
    for gv in gvs:
        manifest = manifests.apiservice(
            names,
            gv,
            ca_bundle=ca_bundle,
            port=manifests.service_port(mode),
            group_priority_minimum=plain.group_priority_minimum,
            version_priority=priorities[gv],
        )
        manifest["metadata"]["annotations"] = {**manifest["metadata"].get("annotations", {}), **WAIT_FOR_ANNOTATION}
        apiservices.append(
            k8s.apiregistration.v1.APIService(
                f"{name}-{gv.apiservice_name}", opts=reg.app_child(depends_on=serving), **kwargs(manifest)
            )
        )
    made += apiservices

    _guard(reg, raw, plain, conn)
    return Registered([gv.apiservice_name for gv in gvs], apiservices)


def _detached(value: pulumi.Input[T]) -> pulumi.Output[T]:
    """``value`` with no resource dependencies (the engine records no edge for it; ``depends_on`` may add one)."""
    out = pulumi.Output.from_input(value)
    return pulumi.Output(set(), out.future(with_unknowns=True), out.is_known(), out.is_secret())  # type: ignore[arg-type]


def _plan(
    reg: Registrar,
    raw: Mapping[str, Any],
    plain: Plain,
    apis: tuple[ClaimApi, ...],
    access_kubeconfig: pulumi.Output[str],
    cluster_id: pulumi.Output[str],
    claim_namespace: pulumi.Output[str],
    app_cluster: pulumi.Output[str],
) -> dict[str, Any]:
    """The inputs the disconnect and the guard both carry (the plan the hooks read)."""
    name = reg.name
    return {
        "connector": name,
        "kubeconfig": access_kubeconfig,
        "control_plane": pulumi.Output.unsecret(access_kubeconfig.apply(control_plane_url(name))),
        "claim_namespace": claim_namespace,
        "cluster_id": cluster_id,
        "on_disconnect": pulumi.Output.from_input(raw.get("on_disconnect") or KEEP).apply(
            lambda v: on_disconnect(name, v)
        ),
        "served": [ClaimResource.of(a) for a in apis],
        "writer_binding": scoped.ScopedNames.role if plain.credential_form == PLATFORM else "",
        "app_cluster": app_cluster,
    }


def _identity(plan: Mapping[str, Any]) -> pulumi.Output[tuple[str, str, str]]:
    both = pulumi.Output.all(plan["control_plane"], plan["claim_namespace"], plan["cluster_id"])
    return pulumi.Output.unsecret(both.apply(lambda v: (v[0], v[1], v[2])))


def disconnect(
    reg: Registrar,
    raw: Mapping[str, Any],
    plain: Plain,
    apis: tuple[ClaimApi, ...],
    access_kubeconfig: pulumi.Output[str],
    cluster_id: pulumi.Output[str],
    claim_namespace: pulumi.Output[str],
    app_cluster: pulumi.Output[str],
) -> Disconnect:
    """The Disconnect, registered before every other child; see ``guard`` for why.

    It depends on nothing, not even through its inputs, so destroying or replacing any other
    child alone (`--target <child> --target-dependents`) never reaches it, and nothing depends
    on it (Pulumi's Python SDK expands ``depends_on`` a component into its children, and it has
    none), so a destroy deletes it in the engine's last round. The caller registers the other
    children only once the engine has answered this registration (``after``): an update that
    its ``before_update`` hook refuses then changes no other child.
    """
    plan = _plan(reg, raw, plain, apis, access_kubeconfig, cluster_id, claim_namespace, app_cluster)
    allow = pulumi.Output.from_input(raw.get("allow_identity_change") or False).apply(bool)
    removal = pulumi.Output.from_input(raw.get("allow_api_removal") or False).apply(bool)
    made = Disconnect(
        f"{reg.name}-claims",
        **{k: _detached(v) if isinstance(v, pulumi.Output) else v for k, v in plan.items()},
        allow_identity_change=_detached(allow),
        update_checks={
            "include": list(plain.selection.include),
            "exclude": list(plain.selection.exclude),
            # Pinned kinds are the user's choice, never discovery drift (see drift.drifted).
            "pinned": plain.pinned is not None,
            "allowApiRemoval": _detached(removal),
        },
        opts=reg.under(
            # Replaced (pulumi up --replace) delete-first, which the hook tells from a disconnect.
            delete_before_replace=True,
            hooks=pulumi.ResourceHookBinding(
                before_delete=[register_disconnect_hook()], before_update=[identity_hook()]
            ),
        ),
    )
    declare_guard(f"{reg.name}-claims", _identity(plan), made)
    return made


def _guard(reg: Registrar, raw: Mapping[str, Any], plain: Plain, conn: Connection) -> None:
    """The guard: deleted first of all children, its hook checks; the engine's protect check follows."""
    plan = _plan(
        reg, raw, plain, conn.apis, conn.access_kubeconfig, conn.cluster_id, conn.claim_namespace, conn.app_cluster
    )
    guard_name = f"{reg.name}-disconnect"
    guard = DisconnectGuard(
        guard_name,
        **plan,
        opts=reg.under(
            depends_on=list(reg.made),
            delete_before_replace=True,
            hooks=pulumi.ResourceHookBinding(before_delete=[check_hook()], after_delete=[guard_gone_hook()]),
        ),
    )
    declare_guard(guard_name, _identity(plan), guard)


def _access_rbac(reg: Registrar, names: manifests.Names) -> None:
    """ServiceAccount and the least-privilege RBAC an aggregated API server needs."""
    name = reg.name
    reg.made += [
        k8s.core.v1.ServiceAccount(f"{name}-sa", opts=reg.app_child(), **kwargs(manifests.service_account(names))),
        k8s.rbac.v1.ClusterRole(f"{name}-secret-sync", opts=reg.app_child(), **kwargs(manifests.cluster_role(names))),
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-secret-sync", opts=reg.app_child(), **kwargs(manifests.cluster_role_binding(names))
        ),
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-auth-delegator", opts=reg.app_child(), **kwargs(manifests.auth_delegator_binding(names))
        ),
        k8s.rbac.v1.RoleBinding(
            f"{name}-auth-reader", opts=reg.app_child(), **kwargs(manifests.auth_reader_binding(names))
        ),
        k8s.rbac.v1.Role(f"{name}-leader", opts=reg.app_child(), **kwargs(manifests.leader_role(names))),
        k8s.rbac.v1.RoleBinding(f"{name}-leader", opts=reg.app_child(), **kwargs(manifests.leader_role_binding(names))),
    ]
    # The app cluster fences the ServiceAccount's writes to its own copies (RBAC cannot).
    policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
        f"{name}-write-fence", opts=reg.app_child(), **kwargs(manifests.admission_policy(names))
    )
    reg.made += [
        policy,
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-write-fence",
            opts=reg.app_child(depends_on=[policy]),
            **kwargs(manifests.admission_policy_binding(names)),
        ),
    ]


def _tls_name(names: manifests.Names) -> str:
    """The serving Secret's name: it follows the names the certificate must carry."""
    return f"{names.tls_secret}-{tls.generation(tls.service_dns_names(names.service, names.namespace))}"


def _serving_tls(reg: Registrar, names: manifests.Names) -> tuple[k8s.core.v1.Secret, pulumi.Output[str]]:
    """The CA and serving Secrets (each made once, then kept as stored) and the caBundle derived from them.

    The serving certificate is issued from the CA Secret's stored CA when its Secret is made or
    replaced; the bundle holds its signer and the CA Secret's current CA, so a replaced CA is
    trusted before any pod serves a certificate from it (``tls.py``). No clock is read.
    """
    name = reg.name
    stored = pulumi.ResourceOptions(ignore_changes=["data", "stringData"], additional_secret_outputs=["data"])
    fresh = tls.new_ca()
    ca_secret = k8s.core.v1.Secret(
        f"{name}-tls-ca",
        opts=pulumi.ResourceOptions.merge(reg.app_child(), stored),
        **kwargs(manifests.ca_secret(names, ca_pem=fresh.ca_pem, key_pem=fresh.key_pem)),
    )
    dns_names = tls.service_dns_names(names.service, names.namespace)
    generation = tls.generation(dns_names)

    def issued(data: Mapping[str, str]) -> dict[str, str]:
        pair = tls.CaPair(
            ca_pem=base64.b64decode(data["ca.crt"]).decode(), key_pem=base64.b64decode(data["ca.key"]).decode()
        )
        leaf = tls.issue(pair, dns_names)
        return manifests.tls_secret_data(cert_pem=leaf.cert_pem, key_pem=leaf.key_pem, ca_pem=leaf.ca_pem)

    serving = k8s.core.v1.Secret(
        f"{name}-tls-{generation}",
        opts=pulumi.ResourceOptions.merge(reg.app_child(), stored),
        **kwargs(
            manifests.tls_secret(names, name=_tls_name(names), data=pulumi.Output.secret(ca_secret.data.apply(issued)))
        ),
    )
    bundle = pulumi.Output.all(serving.data, ca_secret.data).apply(lambda v: _bundle(name, v[0], v[1]))
    return serving, pulumi.Output.unsecret(bundle)


def _bundle(name: str, serving: Mapping[str, str], ca: Mapping[str, str]) -> str:
    """The caBundle: the serving certificate's signer and the current CA; warns (only) about expiry."""
    for what, data, key in (("serving certificate", serving, "tls.crt"), ("CA", ca, "ca.crt")):
        warning = tls.expiring(data[key], what=f"{what} of {name}")
        if warning:
            pulumi.log.warn(warning)
    return tls.trust_bundle(serving["ca.crt"], ca["ca.crt"])


def _workload(
    reg: Registrar,
    raw: Mapping[str, Any],
    plain: Plain,
    conn: Connection,
    credentials_name: str,
    tls_secret: k8s.core.v1.Secret,
    *,
    mounted: list[pulumi.Resource],
) -> list[pulumi.Resource]:
    """The in-cluster Deployment (and its PodDisruptionBudget when replicated).

    The pod template's checksum rolls the pods when what they mount changes. It is a digest, so
    it carries no dependency: were the Deployment's ``spec`` to depend on the serving Secret (or
    on what the credential is made from), replacing that Secret delete-first (``up --replace``)
    would make the engine mark ``spec`` unknown and replace the Deployment with it, stopping every
    pod at once. ``depends_on`` the ``mounted`` Secrets keeps the order (they exist before the pods
    that mount them, and go after them) without that: the pods roll, one at a time.
    """
    name, names = reg.name, plain.names
    settings = manifests.ConnectorSettings(claim_namespace=conn.claim_namespace, cluster_id=conn.cluster_id)
    # Only the digest leaves the secrets: a new token or a new serving certificate rolls the pods.
    digest = pulumi.Output.all(
        conn.kubeconfig, conn.claim_namespace, conn.cluster_id, tls_secret.data.apply(lambda d: d["tls.crt"])
    ).apply(
        lambda v: manifests.config_checksum(
            v[0], v[1], v[2], list(plain.selection.include), list(plain.selection.exclude), v[3]
        )
    )
    checksum: pulumi.Output[str] = _detached(pulumi.Output.unsecret(digest))
    tls_name = _tls_name(names)
    made: list[pulumi.Resource] = [
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            opts=reg.app_child(depends_on=mounted),
            **kwargs(
                manifests.deployment(
                    names,
                    image=raw["image"],
                    replicas=plain.replicas,
                    settings=settings,
                    checksum=checksum,
                    credentials_secret_name=credentials_name,
                    tls_secret_name=tls_name,
                    resources=raw.get("resources"),
                )
            ),
        )
    ]
    if plain.replicas > 1:
        made.append(
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb", opts=reg.app_child(), **kwargs(manifests.pod_disruption_budget(names))
            )
        )
    return made
