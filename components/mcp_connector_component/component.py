"""McpConnector: connect one app cluster to a Crossplane control plane, declaratively.

The component discovers the control plane's claim APIs while the program runs (so
``pulumi preview`` shows ``+ APIService`` when a claim API appears), then registers
every child inside that discovery step: if the control plane cannot be reached or
refuses the credentials, the program fails with the URL and the cause and nothing
is created or changed in the app cluster. The objects themselves come from
``manifests``; the disconnect behaviour from ``hook``.

No ``from __future__ import annotations`` here: the provider host reads the output
annotations below as real types to publish the schema.
"""

import asyncio
import base64
import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mcp_connector import upstream
from mcp_connector.core.access import AccessError
from mcp_connector.core.discovery import (
    ClaimApi,
    ClaimApiSelection,
    ClaimVersion,
    group_versions,
    preferred_versions,
    select,
)
from mcp_connector_component import kubeconfigs, manifests, scoped
from mcp_connector_component.args import McpConnectorArgs
from mcp_connector_component.credentials import (
    DEFAULT_UPBOUND_HOST,
    kubeconfig_from_secret_data,
    to_kubeconfig,
    upbound_kubeconfig,
)
from mcp_connector_component.disconnect import describe, labelled_claims
from mcp_connector_component.guard import KEEP, ON_DISCONNECT, ClaimResource, DisconnectGuard, DisconnectPlan
from mcp_connector_component.hook import declare_guard, register_disconnect_hook
from mcp_connector_component.tls import generation as tls_generation
from mcp_connector_component.tls import service_dns_names, serving_tls

#: Package name of the provider host; the type token below must agree with what the host publishes.
PACKAGE = "mcp-connector"
TYPE_TOKEN = f"{PACKAGE}:index:McpConnector"
DEFAULT_NAMESPACE = "kube-system"
#: Seconds preview-time discovery may take before the program fails.
DISCOVERY_TIMEOUT = 20.0

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CREDENTIAL_FORMS = ("token", "control_plane_secret", "control_plane_kubeconfig", "platform_kubeconfig")
PLATFORM = "platform_kubeconfig"
#: Seconds to wait for the control plane to fill a new ServiceAccount token Secret.
TOKEN_TIMEOUT = 60.0


class McpConnectorError(pulumi.RunError):
    """Arguments that cannot work, or a control plane that cannot be used; printed without a traceback."""


@dataclass(frozen=True)
class _Plain:
    """The arguments that decide which objects exist, validated up front."""

    names: manifests.Names
    mode: manifests.Mode
    replicas: int
    selection: ClaimApiSelection
    credential_form: str
    group_priority_minimum: int
    skip_await: bool
    #: claim_apis, when given: no discovery at all.
    pinned: tuple[ClaimApi, ...] | None = None


_RESOURCE_FORM = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9.]*[a-z0-9])?)/([a-z0-9]+)$")
_OUTPUT_FORM = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)/([a-z0-9]+)/([A-Z][A-Za-z0-9]*)$")


def pinned_claim_apis(entries: Sequence[str]) -> tuple[ClaimApi, ...]:
    """claim_apis entries as claim APIs; the first version given of a kind is its preferred one.

    Two forms: ``group/version/Kind``, as the ``claim_apis`` output lists them (the plural is
    the lowercase kind plus ``s``, Crossplane's usual naming), or ``plural.group/version``.
    """
    kinds: dict[tuple[str, str], str] = {}
    versions: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        if match := _OUTPUT_FORM.match(entry):
            group, version, kind = match.group(1), match.group(3), match.group(4)
            plural = f"{kind.lower()}s"
        elif match := _RESOURCE_FORM.match(entry):
            plural, group, version = match.group(1), match.group(3), match.group(5)
            kind = ""
        else:
            raise ValueError(
                f"claim_apis entry {entry!r} must be group/version/Kind or plural.group/version "
                "(e.g. example.org/v1/Widget or widgets.example.org/v1)"
            )
        if kind:
            kinds[(group, plural)] = kind
        if version not in versions.setdefault((group, plural), []):
            versions[(group, plural)].append(version)
    return tuple(
        ClaimApi(
            group=group,
            kind=kinds.get((group, plural), plural),
            plural=plural,
            singular=plural,
            list_kind="",
            versions=tuple(ClaimVersion(v, storage=i == 0) for i, v in enumerate(found)),
        )
        for (group, plural), found in sorted(versions.items())
    )


def _validate(name: str, args: Mapping[str, Any]) -> _Plain:
    """Check every structural argument, reporting all problems at once with their argument names."""
    problems: list[str] = []
    forms = [f for f in _CREDENTIAL_FORMS if args.get(f) is not None]
    if len(forms) != 1:
        problems.append(f"give exactly one of {', '.join(_CREDENTIAL_FORMS)} (got {', '.join(forms) or 'none'})")
    if "token" in forms:
        problems += [f"{a} is required with token" for a in ("account", "control_plane") if not args.get(a)]
    if args.get("claim_namespace") is None and PLATFORM not in forms:
        problems.append("claim_namespace is required (unless platform_kubeconfig lets the component make one)")
    namespace = args.get("namespace") or DEFAULT_NAMESPACE
    for what, value in (("namespace", namespace), ("component name", name)):
        if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > 50:
            problems.append(f"{what} {value!r} must be a DNS label of at most 50 characters")
    mode: manifests.Mode = manifests.InCluster()
    try:
        mode = manifests.parse_mode(args.get("mode"))
    except manifests.ManifestError as e:
        problems.append(str(e))
    if isinstance(mode, manifests.External) and args.get("ca_bundle") is None:
        problems.append("ca_bundle is required when mode is an external host:port")
    if isinstance(mode, manifests.InCluster) and not args.get("image"):
        problems.append(
            "image is required in in-cluster mode: no connector image is published; build one from the"
            " repository's Containerfile, push it where the cluster pulls from and give its reference"
        )
    replicas = args.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 1:
        problems.append(f"replicas must be a positive integer (got {replicas!r})")
    on_disconnect = args.get("on_disconnect")
    if isinstance(on_disconnect, str) and on_disconnect not in ON_DISCONNECT:
        problems.append(f"on_disconnect must be one of {', '.join(ON_DISCONNECT)} (got {on_disconnect!r})")
    pinned = None
    if args.get("claim_apis") is not None:
        try:
            pinned = pinned_claim_apis(list(args["claim_apis"]))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise McpConnectorError(f"McpConnector {name}: " + "; ".join(problems))
    return _Plain(
        names=manifests.Names(base=name, namespace=namespace),
        mode=mode,
        replicas=replicas,
        selection=ClaimApiSelection(tuple(args.get("include") or ()), tuple(args.get("exclude") or ())),
        credential_form=forms[0],
        group_priority_minimum=int(args.get("group_priority_minimum") or manifests.DEFAULT_GROUP_PRIORITY_MINIMUM),
        skip_await=bool(args.get("skip_await", False)),
        pinned=pinned,
    )


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _kwargs(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields of a manifest as keyword arguments of the typed pulumi-kubernetes class."""
    return {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}


def claim_api_names(apis: Sequence[ClaimApi]) -> list[str]:
    """``group/version/Kind`` for every served version of ``apis``."""
    return [f"{a.group}/{v.name}/{a.kind}" for a in apis for v in a.versions]


class McpConnector(pulumi.ComponentResource):
    """Connects an app cluster to a Crossplane control plane: the control plane's claim APIs are served
    in the app cluster through the aggregation layer. Deleting it runs the disconnect hook
    (`on_disconnect`) before the APIServices go; run `pulumi destroy --run-program`."""

    cluster_id: pulumi.Output[str]
    """The cluster ID this cluster's claims are labelled with in the control plane."""

    claim_apis: pulumi.Output[list[str]]
    """Claim APIs served in the app cluster, as `group/version/Kind`."""

    apiservice_names: pulumi.Output[list[str]]
    """Names of the APIService objects, `<version>.<group>`."""

    control_plane_namespace: pulumi.Output[str]
    """The control-plane namespace the claims are stored in."""

    def __init__(self, name: str, args: McpConnectorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raw: Mapping[str, Any] = args
        plain = _validate(name, raw)  # before registering anything: a bad argument changes nothing
        super().__init__(TYPE_TOKEN, name, None, opts)
        register_disconnect_hook()
        self._name = name
        self._args = raw
        self._plain = plain
        #: Every child but the guard, which depends on them all so that it is deleted first.
        self._made: list[pulumi.Resource] = []
        child = pulumi.ResourceOptions(parent=self)

        kubeconfig = self._kubeconfig(child)
        if raw.get("cluster_id") is not None:
            cluster_id: pulumi.Output[str] = pulumi.Output.from_input(raw["cluster_id"])
        else:
            kube_system = k8s.core.v1.Namespace.get(f"{name}-kube-system", "kube-system", opts=child)
            self._made.append(kube_system)
            cluster_id = kube_system.metadata.apply(lambda m: str(m.uid))
        self._cluster_id = cluster_id
        claim_namespace: pulumi.Output[str]
        if raw.get("claim_namespace") is not None:
            claim_namespace = pulumi.Output.from_input(raw["claim_namespace"])
        else:
            claim_namespace = cluster_id.apply(self._default_claim_namespace)

        # Known even when the credential is not (a preview with a token from another resource's
        # output): then the children are built from pinned claim_apis, or the program says why not.
        found: pulumi.Output[tuple[tuple[ClaimApi, ...], tuple[ClaimApi, ...]]] = pulumi.Output.from_input(
            self._claim_apis(kubeconfig)
        )
        apis: pulumi.Output[tuple[ClaimApi, ...]] = found.apply(lambda f: f[1])
        built = apis.apply(lambda selected: self._build(selected, kubeconfig, cluster_id, claim_namespace))
        if plain.pinned is None:
            report: pulumi.Output[None] = pulumi.Output.all(kubeconfig, cluster_id, claim_namespace, found).apply(
                lambda v: self._report_unconnected(v[0], v[1], v[2], v[3][0], v[3][1])
            )
            self._report = report

        self.cluster_id = cluster_id
        self.claim_apis = apis.apply(lambda found: claim_api_names(found))
        self.apiservice_names = built
        self.control_plane_namespace = claim_namespace
        self.register_outputs(
            {
                "cluster_id": self.cluster_id,
                "claim_apis": self.claim_apis,
                "apiservice_names": self.apiservice_names,
                "control_plane_namespace": self.control_plane_namespace,
            }
        )

    def _kubeconfig(self, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        """The control-plane kubeconfig, whatever credential form was given (always a secret)."""
        raw, name = self._args, self._name
        form = self._plain.credential_form

        def guard(make: Any) -> Any:
            def run(value: Any) -> str:
                try:
                    return str(make(value))
                except AccessError as e:
                    raise McpConnectorError(f"McpConnector {name}: {e}") from None

            return run

        if form == "token":
            parts = pulumi.Output.all(
                raw.get("host") or DEFAULT_UPBOUND_HOST, raw["account"], raw["control_plane"], raw["token"]
            )
            return pulumi.Output.secret(
                parts.apply(
                    guard(lambda v: upbound_kubeconfig(host=v[0], account=v[1], control_plane=v[2], token=v[3]))
                )
            )
        if form in ("control_plane_kubeconfig", PLATFORM):
            return pulumi.Output.secret(raw[form])
        secret_name = str(raw["control_plane_secret"])
        namespace = self._plain.names.namespace
        existing = k8s.core.v1.Secret.get(f"{name}-control-plane", f"{namespace}/{secret_name}", opts=child)
        self._made.append(existing)
        where = f"{namespace}/{secret_name}"
        return pulumi.Output.secret(existing.data.apply(guard(lambda d: kubeconfig_from_secret_data(d, secret=where))))

    async def _claim_apis(self, kubeconfig: pulumi.Output[str]) -> tuple[tuple[ClaimApi, ...], tuple[ClaimApi, ...]]:
        """(offered, to connect): pinned, or discovered once the credential is known."""
        pinned = self._plain.pinned
        if pinned is not None:
            return pinned, select(pinned, self._plain.selection)
        if not await kubeconfig.is_known():
            raise McpConnectorError(
                f"McpConnector {self._name}: the control-plane credentials are not known until apply (they come "
                "from another resource's output), so this preview cannot discover the claim APIs and would show "
                "fewer objects than the update makes. Pin them with claim_apis (e.g. "
                '["kubernetesclusters.k8s.starter.org/v1alpha1"]), or create the credentials first '
                "(pulumi up --target <their resource>)"
            )
        offered = await self._offered(str(await kubeconfig.future()))
        return offered, select(offered, self._plain.selection)

    async def _offered(self, kubeconfig: str) -> tuple[ClaimApi, ...]:
        """Every claim API the control plane offers."""
        try:
            loaded = kubeconfigs.load(kubeconfig)
            if loaded.not_static and self._plain.credential_form == "control_plane_secret":
                where = f"{self._plain.names.namespace}/{self._args['control_plane_secret']}"
                raise AccessError(
                    f"control_plane_secret {where}: {loaded.not_static}, which the connector's pod cannot run; "
                    "store a static credential in it"
                )
            access = loaded.access
            async with upstream.connected(access, timeout=DISCOVERY_TIMEOUT) as client:
                found = await upstream.discover_apis_by_name(client)
        except (AccessError, upstream.ControlPlaneError) as e:
            raise McpConnectorError(
                f"McpConnector {self._name}: cannot discover claim APIs: {e}. "
                "To run without reaching the control plane, pin them with claim_apis"
            ) from None
        for entry in found.unserved:
            pulumi.log.info(f"McpConnector {self._name}: XRD {entry.xrd_name} is not served: {entry.reason}", self)
        return found.apis

    async def _report_unconnected(
        self,
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
                            f"McpConnector {self._name}: {kind.resource} is not connected (include/exclude), but "
                            f"{len(owned)} claim(s) of this cluster are in it: "
                            + ", ".join(describe(kind.kind, o) for o in owned)
                            + ". They stay in the control plane with their labels, out of the app cluster's sight; "
                            "connecting the kind again brings them back, and a disconnect releases them too.",
                            resource=self,
                        )
        except (McpConnectorError, AccessError, upstream.ControlPlaneError) as e:
            pulumi.log.warn(f"McpConnector {self._name}: could not check for claims in kinds not connected: {e}")

    def _build(
        self,
        apis: tuple[ClaimApi, ...],
        kubeconfig: pulumi.Output[str],
        cluster_id: pulumi.Output[str],
        claim_namespace: pulumi.Output[str],
    ) -> list[str]:
        """Register every child; runs only once discovery succeeded. Returns the APIService names."""
        raw, plain, name = self._args, self._plain, self._name
        names, mode = plain.names, plain.mode
        made = self._made
        access_kubeconfig = kubeconfig
        fence: scoped.Fence | None = None
        if plain.credential_form == PLATFORM:
            # The connector gets a token scoped to this cluster's namespace, never the platform credential.
            kubeconfig, fence = self._scoped_identity(apis, access_kubeconfig, claim_namespace)
        elif plain.credential_form == "control_plane_kubeconfig":
            kubeconfig = pulumi.Output.secret(access_kubeconfig.apply(self._static("control_plane_kubeconfig")))

        if plain.credential_form == "control_plane_secret":
            credentials_name = str(raw["control_plane_secret"])
        else:
            credentials_name = names.credentials_secret
            made.append(
                k8s.core.v1.Secret(
                    f"{name}-credentials",
                    opts=self._child(additional_secret_outputs=["data", "stringData"]),
                    **_kwargs(manifests.credentials_secret(names, kubeconfig)),
                )
            )

        serving: list[pulumi.Resource] = []
        if isinstance(mode, manifests.External):
            ca_bundle: pulumi.Output[str] = pulumi.Output.from_input(raw["ca_bundle"]).apply(manifests.ca_bundle_of)
        else:
            dns_names = service_dns_names(names.service, names.namespace)
            generation = tls_generation(dns_names)
            tls_name = f"{names.tls_secret}-{generation}"
            serving += self._workload(names, plain, kubeconfig, cluster_id, claim_namespace, credentials_name, tls_name)
            tls = serving_tls(dns_names)
            # A new generation is a new resource (fresh certificate); within one, the stored pair stays.
            tls_secret = k8s.core.v1.Secret(
                f"{name}-tls-{generation}",
                opts=self._child(ignore_changes=["data", "stringData"], additional_secret_outputs=["data"]),
                **_kwargs(
                    manifests.tls_secret(
                        names, name=tls_name, cert_pem=tls.cert_pem, key_pem=tls.key_pem, ca_pem=tls.ca_pem
                    )
                ),
            )
            serving.append(tls_secret)
            ca_bundle = pulumi.Output.unsecret(tls_secret.data.apply(lambda d: str(d["ca.crt"])))

        self._access_rbac(names)
        serving.append(
            k8s.core.v1.Service(
                f"{name}-service",
                opts=self._child(),
                **_kwargs(manifests.service(names, mode, skip_await=plain.skip_await)),
            )
        )
        made += serving

        gvs = group_versions(apis)
        preferred = preferred_versions(apis)
        priorities = manifests.version_priorities(gvs, preferred)
        made += [
            k8s.apiregistration.v1.APIService(
                f"{name}-{gv.apiservice_name}",
                opts=self._child(depends_on=serving),
                **_kwargs(
                    manifests.apiservice(
                        names,
                        gv,
                        ca_bundle=ca_bundle,
                        port=manifests.service_port(mode),
                        group_priority_minimum=plain.group_priority_minimum,
                        version_priority=priorities[gv],
                    )
                ),
            )
            for gv in gvs
        ]

        self._guard(apis, access_kubeconfig, cluster_id, claim_namespace, fence)
        return [gv.apiservice_name for gv in gvs]

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options of an object in the app cluster.

        Every object has a fixed name, so a replacement must delete the old one before
        creating the new one (`pulumi up --replace`, a replaced provider): created first,
        the new object would collide with the old one's name, and the old one's delete
        would then remove the object the new one just took over.
        """
        return pulumi.ResourceOptions(parent=self, delete_before_replace=True, **kwargs)

    def _guard(
        self,
        apis: tuple[ClaimApi, ...],
        kubeconfig: pulumi.Output[str],
        cluster_id: pulumi.Output[str],
        claim_namespace: pulumi.Output[str],
        fence: "scoped.Fence | None",
    ) -> None:
        """The child whose deletion runs the disconnect hook, deleted before every other child."""
        on_disconnect = pulumi.Output.from_input(self._args.get("on_disconnect") or KEEP).apply(self._on_disconnect)
        control_plane = pulumi.Output.unsecret(kubeconfig.apply(self._control_plane_url))
        guard_name = f"{self._name}-disconnect"
        identity = pulumi.Output.all(control_plane, claim_namespace, cluster_id).apply(lambda v: (v[0], v[1], v[2]))
        guard = DisconnectGuard(
            guard_name,
            connector=self._name,
            kubeconfig=kubeconfig,
            control_plane=control_plane,
            claim_namespace=claim_namespace,
            cluster_id=cluster_id,
            on_disconnect=on_disconnect,
            served=[ClaimResource.of(a) for a in apis],
            writer_binding=fence.role_binding if fence else "",
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(self._made),
                # Replaced (pulumi up --replace) delete-first, which the hook tells from a disconnect.
                delete_before_replace=True,
                hooks=pulumi.ResourceHookBinding(before_delete=[register_disconnect_hook()]),
            ),
        )
        declare_guard(guard_name, pulumi.Output.unsecret(identity), guard)

    def _static(self, what: str) -> Any:
        """The connector's inlined kubeconfig for ``what``, or the error that says why a pod cannot use it."""

        def inline(text: str) -> str:
            try:
                return kubeconfigs.static_for_connector(text, what=what)
            except AccessError as e:
                raise McpConnectorError(f"McpConnector {self._name}: {e}") from None

        return inline

    def _default_claim_namespace(self, cluster_id: str) -> str:
        namespace = f"mcp-{cluster_id}".lower()
        if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
            raise McpConnectorError(
                f"McpConnector {self._name}: cluster ID {cluster_id!r} does not make a namespace name "
                f"({namespace!r}); set claim_namespace"
            )
        return namespace

    def _scoped_identity(
        self, apis: tuple[ClaimApi, ...], platform: pulumi.Output[str], claim_namespace: pulumi.Output[str]
    ) -> "tuple[pulumi.Output[str], scoped.Fence]":
        """This cluster's namespace and identity in the control plane; returns the connector's kubeconfig."""
        name = self._name
        provider = k8s.Provider(f"{name}-control-plane", kubeconfig=platform, opts=pulumi.ResourceOptions(parent=self))
        names = scoped.ScopedNames(namespace=claim_namespace, base=name)

        def opts(**kwargs: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, delete_before_replace=True, **kwargs)

        # Never deleted: it holds the claims, which Keep and Release both leave in place.
        namespace = k8s.core.v1.Namespace(
            f"{name}-claim-namespace", opts=opts(retain_on_delete=True), **_kwargs(scoped.namespace(names))
        )
        inside = [namespace]
        account = k8s.core.v1.ServiceAccount(
            f"{name}-cp-sa", opts=opts(depends_on=inside), **_kwargs(scoped.service_account(names))
        )
        role = k8s.rbac.v1.Role(f"{name}-cp-role", opts=opts(depends_on=inside), **_kwargs(scoped.role(names, apis)))
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-cp-role", opts=opts(depends_on=[role, account]), **_kwargs(scoped.role_binding(names))
        )
        discovery_name = claim_namespace.apply(names.discovery_role)
        discovery = k8s.rbac.v1.ClusterRole(
            f"{name}-cp-discovery", opts=opts(), **_kwargs(scoped.discovery_role(names, discovery_name))
        )
        discovery_binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-cp-discovery",
            opts=opts(depends_on=[discovery, account]),
            **_kwargs(scoped.discovery_binding(names, discovery_name)),
        )
        token_secret = k8s.core.v1.Secret(
            f"{name}-cp-token",
            opts=opts(depends_on=[account], additional_secret_outputs=["data"]),
            **_kwargs(scoped.token_secret(names)),
        )
        self._made += [provider, namespace, account, role, binding, discovery, discovery_binding, token_secret]
        made = pulumi.Output.all(platform, claim_namespace, token_secret.metadata, token_secret.data, binding.metadata)
        kubeconfig: pulumi.Output[str] = made.apply(lambda v: self._scoped_kubeconfig(v[0], v[1], v[2], v[3]))
        fence = scoped.Fence(role_binding=scoped.ScopedNames.role)
        return pulumi.Output.secret(kubeconfig), fence

    async def _scoped_kubeconfig(self, platform: str, namespace: str, metadata: Any, data: Any) -> str:
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
            path = f"/api/v1/namespaces/{namespace}/secrets/{scoped.ScopedNames.token_secret}"
            async with upstream.connected(access, timeout=DISCOVERY_TIMEOUT) as client:
                deadline = time.monotonic() + TOKEN_TIMEOUT
                while not (token := ((await upstream.request(client, "GET", path)).get("data") or {}).get("token")):
                    if time.monotonic() > deadline:
                        raise McpConnectorError(
                            f"McpConnector {self._name}: the control plane did not fill in the token of "
                            f"Secret {namespace}/{scoped.ScopedNames.token_secret} in {TOKEN_TIMEOUT:.0f}s "
                            "(is its token controller running?)"
                        )
                    await asyncio.sleep(0.5)
        except (AccessError, upstream.ControlPlaneError) as e:
            raise McpConnectorError(f"McpConnector {self._name}: cannot read the connector's token: {e}") from None
        scoped_access = dataclasses.replace(
            access, token=base64.b64decode(token).decode(), client_cert_pem=None, client_key_pem=None
        )
        return to_kubeconfig(scoped_access, name="mcp-connector")

    def _on_disconnect(self, value: str) -> str:
        if value not in ON_DISCONNECT:
            raise McpConnectorError(
                f"McpConnector {self._name}: on_disconnect must be one of {', '.join(ON_DISCONNECT)}"
            )
        return value

    def _control_plane_url(self, kubeconfig: str) -> str:
        try:
            return kubeconfigs.load(kubeconfig).access.url
        except AccessError as e:
            raise McpConnectorError(f"McpConnector {self._name}: {e}") from None

    def _access_rbac(self, names: manifests.Names) -> None:
        """ServiceAccount and the least-privilege RBAC an aggregated API server needs."""
        name = self._name
        self._made += [
            k8s.core.v1.ServiceAccount(f"{name}-sa", opts=self._child(), **_kwargs(manifests.service_account(names))),
            k8s.rbac.v1.ClusterRole(
                f"{name}-secret-sync", opts=self._child(), **_kwargs(manifests.cluster_role(names))
            ),
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-secret-sync", opts=self._child(), **_kwargs(manifests.cluster_role_binding(names))
            ),
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-auth-delegator", opts=self._child(), **_kwargs(manifests.auth_delegator_binding(names))
            ),
            k8s.rbac.v1.RoleBinding(
                f"{name}-auth-reader", opts=self._child(), **_kwargs(manifests.auth_reader_binding(names))
            ),
        ]

    def _workload(
        self,
        names: manifests.Names,
        plain: _Plain,
        kubeconfig: pulumi.Output[str],
        cluster_id: pulumi.Output[str],
        claim_namespace: pulumi.Output[str],
        credentials_name: str,
        tls_name: str,
    ) -> list[pulumi.Resource]:
        """The in-cluster Deployment (and its PodDisruptionBudget when replicated)."""
        raw, name = self._args, self._name
        settings = manifests.ConnectorSettings(claim_namespace=claim_namespace, cluster_id=cluster_id)
        # Only the digest leaves the secret: rotating the token changes it and rolls the pods.
        checksum = pulumi.Output.unsecret(
            pulumi.Output.all(kubeconfig, claim_namespace, cluster_id).apply(
                lambda v: manifests.config_checksum(
                    v[0], v[1], v[2], list(plain.selection.include), list(plain.selection.exclude)
                )
            )
        )
        made: list[pulumi.Resource] = [
            k8s.apps.v1.Deployment(
                f"{name}-deployment",
                opts=self._child(),
                **_kwargs(
                    manifests.deployment(
                        names,
                        image=raw["image"],
                        replicas=plain.replicas,
                        settings=settings,
                        checksum=checksum,
                        credentials_secret_name=credentials_name,
                        tls_secret_name=tls_name,
                        resources=raw.get("resources"),
                        skip_await=plain.skip_await,
                    )
                ),
            )
        ]
        if plain.replicas > 1:
            made.append(
                k8s.policy.v1.PodDisruptionBudget(
                    f"{name}-pdb",
                    opts=self._child(),
                    **_kwargs(manifests.pod_disruption_budget(names)),
                )
            )
        return made
