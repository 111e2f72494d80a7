"""The component's arguments, checked before anything is registered: a bad argument changes nothing.

Every problem is collected with its argument name and reported at once, as apimachinery's
validation does; what passes is a typed ``Plain`` the rest of the component trusts.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_connector.core.discovery import ClaimApi, ClaimApiSelection, ClaimVersion
from mcp_connector_component import manifests
from mcp_connector_component.errors import McpConnectorError
from mcp_connector_component.guard import ON_DISCONNECT

DEFAULT_NAMESPACE = "kube-system"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CREDENTIAL_FORMS = ("token", "control_plane_secret", "control_plane_kubeconfig", "platform_kubeconfig")
PLATFORM = "platform_kubeconfig"


@dataclass(frozen=True)
class Plain:
    """The arguments that decide which objects exist, validated up front."""

    names: manifests.Names
    mode: manifests.Mode
    replicas: int
    selection: ClaimApiSelection
    credential_form: str
    group_priority_minimum: int
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


def validate(name: str, args: Mapping[str, Any]) -> Plain:
    """Check every structural argument, reporting all problems at once with their argument names."""
    problems: list[str] = []
    forms = [f for f in CREDENTIAL_FORMS if args.get(f) is not None]
    if len(forms) != 1:
        problems.append(f"give exactly one of {', '.join(CREDENTIAL_FORMS)} (got {', '.join(forms) or 'none'})")
    if "token" in forms:
        problems += [f"{a} is required with token" for a in ("account", "control_plane") if not args.get(a)]
    if args.get("claim_namespace") is None and PLATFORM not in forms:
        problems.append("claim_namespace is required (unless platform_kubeconfig lets the component make one)")
    namespace = args.get("namespace") or DEFAULT_NAMESPACE
    for what, value in (("namespace", namespace), ("component name", name)):
        if not isinstance(value, str) or not DNS_LABEL.match(value) or len(value) > 50:
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
    replicas = args.get("replicas", manifests.DEFAULT_REPLICAS)
    if not isinstance(replicas, int) or replicas < 1:
        problems.append(f"replicas must be a positive integer (got {replicas!r})")
    on_disconnect = args.get("on_disconnect")
    if isinstance(on_disconnect, str) and on_disconnect not in ON_DISCONNECT:
        problems.append(f"on_disconnect must be one of {', '.join(ON_DISCONNECT)} (got {on_disconnect!r})")
    uid = args.get("app_cluster_uid")
    if isinstance(uid, str) and not is_uid(uid):
        problems.append(f"app_cluster_uid {uid!r} must be a UID (the app cluster's kube-system namespace UID)")
    pinned = None
    if args.get("claim_apis") is not None:
        try:
            pinned = pinned_claim_apis(list(args["claim_apis"]))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise McpConnectorError(f"McpConnector {name}: " + "; ".join(problems))
    return Plain(
        names=manifests.Names(base=name, namespace=namespace),
        mode=mode,
        replicas=replicas,
        selection=ClaimApiSelection(tuple(args.get("include") or ()), tuple(args.get("exclude") or ())),
        credential_form=forms[0],
        group_priority_minimum=int(args.get("group_priority_minimum") or manifests.DEFAULT_GROUP_PRIORITY_MINIMUM),
        pinned=pinned,
    )


def is_uid(value: object) -> bool:
    """A UID as the apiserver makes them (a UUID in its canonical form)."""
    try:
        return str(uuid.UUID(str(value))) == value
    except ValueError:
        return False


def default_claim_namespace(name: str, cluster_id: str) -> str:
    """``mcp-<cluster ID>``, the namespace platform credentials make when claim_namespace is not given."""
    namespace = f"mcp-{cluster_id}".lower()
    if not DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise McpConnectorError(
            f"McpConnector {name}: cluster ID {cluster_id!r} does not make a namespace name "
            f"({namespace!r}); set claim_namespace"
        )
    return namespace


def on_disconnect(name: str, value: str) -> str:
    """on_disconnect once known (it may come from another resource's output)."""
    if value not in ON_DISCONNECT:
        raise McpConnectorError(f"McpConnector {name}: on_disconnect must be one of {', '.join(ON_DISCONNECT)}")
    return value
