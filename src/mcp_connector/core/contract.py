"""The translation contract between app-cluster objects and control-plane objects.

Claims and Crossplane v2 namespaced XRs from every app cluster share one control-plane
namespace, so an app object ``(namespace X, name N)`` from cluster ``C`` is stored under a
hashed name (``claim-`` or ``nxr-`` + hash) with three ownership labels. The scheme is
Upbound's connector's, byte for byte, so a cluster can switch between their connector and
ours without losing claims or XRs.

Everything here is pure: the connector, the component and the disconnect hook
all import these functions and never re-implement them.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp_connector.core import managed_fields, names, selectors

LABEL_DOMAIN = "mcp-connector.upbound.io"
APP_NAMESPACE_LABEL = f"{LABEL_DOMAIN}/app-namespace"
APP_NAME_LABEL = f"{LABEL_DOMAIN}/app-resource-name"
APP_CLUSTER_LABEL = f"{LABEL_DOMAIN}/app-cluster"
OWNERSHIP_LABELS = (APP_NAMESPACE_LABEL, APP_NAME_LABEL, APP_CLUSTER_LABEL)
#: Records the app-side connection Secret name, which the hashed name cannot give back.
APP_SECRET_NAME_ANNOTATION = f"{LABEL_DOMAIN}/app-connection-secret-name"
#: Holds the app-side ``metadata.ownerReferences`` (JSON): the owners live in the app cluster,
#: where its garbage collector acts on them; as real owner references in the control plane,
#: the control plane's garbage collector would delete the claim (no such owner exists there).
APP_OWNERS_ANNOTATION = f"{LABEL_DOMAIN}/app-owner-references"
#: Annotations the contract writes; whatever an app body says under these names is replaced.
CONTRACT_ANNOTATIONS = (APP_SECRET_NAME_ANNOTATION, APP_OWNERS_ANNOTATION)
#: Prefix of the annotations a released claim keeps in place of the ownership labels.
RELEASED_ANNOTATION_PREFIX = f"{LABEL_DOMAIN}/released-from-"

#: Labels Crossplane sets to an object's own (control-plane) name: a namespaced XR carries
#: ``crossplane.io/composite: <its name>``. Their values are mapped like the name itself.
SELF_NAME_LABELS = ("crossplane.io/composite",)

CLAIM_NAME_PREFIX = "claim-"
NAMESPACED_XR_NAME_PREFIX = "nxr-"
_HASH_CHARS = 16
#: Label values are at most 63 characters, which bounds the app names the contract can carry.
MAX_LABEL_VALUE = 63

RawObject = dict[str, Any]


class ContractError(ValueError):
    """An app-side value the contract cannot represent in the control plane."""


class Flavor(enum.Enum):
    """Which kind of Crossplane object an app object is stored as; it picks the name prefix.

    Claims belong to v1 (``LegacyCluster``) XRDs with ``claimNames``; namespaced XRs to
    v2 XRDs with ``scope: Namespaced``. Both share the hash and the labels, so only the
    prefix tells them apart, as in Upbound's connector.
    """

    CLAIM = CLAIM_NAME_PREFIX
    NAMESPACED_XR = NAMESPACED_XR_NAME_PREFIX

    @property
    def prefix(self) -> str:
        """The control-plane name prefix, ``claim-`` or ``nxr-``."""
        return str(self.value)


@dataclass(frozen=True, order=True)
class AppRef:
    """Where a claim lives as the app cluster sees it."""

    cluster_id: str
    namespace: str
    name: str


def _digest(ref: AppRef) -> str:
    return hashlib.sha256(f"{ref.name}-x-{ref.namespace}-x-{ref.cluster_id}".encode()).hexdigest()[:_HASH_CHARS]


def control_plane_name(ref: AppRef, *, flavor: Flavor = Flavor.CLAIM) -> str:
    """Return the control-plane name of an app object (Upbound-compatible hash).

    The connector always names the flavor of the API it serves; the default is for claims.
    """
    return flavor.prefix + _digest(ref)


def control_plane_names(ref: AppRef) -> tuple[str, ...]:
    """Every control-plane name ``ref`` may be stored under, one per flavor.

    Messages and Table cells are rewritten with all of them, which needs no knowledge
    of the kind the text came from.
    """
    digest = _digest(ref)
    return tuple(f.prefix + digest for f in Flavor)


def check_label_value(value: str, *, what: str) -> None:
    """Raise ContractError when ``value`` cannot be stored as a Kubernetes label value."""
    if names.label_value(value):  # apimachinery's rule, anchored at the end of the text as Go's regexp is
        raise ContractError(
            f"{what} {value!r} cannot be connected: it must be a valid label value "
            f"(at most {MAX_LABEL_VALUE} characters)"
        )


def ownership_labels(ref: AppRef) -> dict[str, str]:
    """Return the labels that mark a control-plane claim as owned by ``ref``."""
    for value, what in ((ref.name, "name"), (ref.namespace, "namespace"), (ref.cluster_id, "cluster ID")):
        check_label_value(value, what=what)
    return {
        APP_NAMESPACE_LABEL: ref.namespace,
        APP_NAME_LABEL: ref.name,
        APP_CLUSTER_LABEL: ref.cluster_id,
    }


def app_ref_of(obj: Mapping[str, Any]) -> AppRef | None:
    """Return the app-side identity recorded on a control-plane object, if it has all three labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    try:
        return AppRef(labels[APP_CLUSTER_LABEL], labels[APP_NAMESPACE_LABEL], labels[APP_NAME_LABEL])
    except KeyError:
        return None


def owned_by(obj: Mapping[str, Any], ref: AppRef) -> bool:
    """True when a control-plane object carries exactly ``ref``'s ownership labels.

    Upbound's hash joins the parts with "-x-", so two app refs can share a hashed name
    (``a-x`` in ``b`` and ``a`` in ``x-b``); the labels are what really identify a claim,
    and every read and write of a named object must check them.
    """
    return app_ref_of(obj) == ref


def scope_selector(cluster_id: str, namespace: str | None, name: str | None = None) -> str:
    """Return the label selector that confines a list or watch to one cluster (and namespace, and name).

    A namespace or name that is no label value is no object's (every object of ours carries
    both as labels): it is required as ``!label``, which selects nothing, and never formatted
    into the selector, where ``a,b`` would be two requirements.
    """
    return ",".join([f"{APP_CLUSTER_LABEL}={cluster_id}", *_label_requirements(namespace, name)])


def _label_requirements(namespace: str | None, name: str | None) -> list[str]:
    found = []
    for value, label in ((namespace, APP_NAMESPACE_LABEL), (name, APP_NAME_LABEL)):
        if value is not None:
            found.append(f"!{label}" if names.label_value(value) else f"{label}={value}")
    return found


def combine_selectors(*selectors: str | None) -> str:
    """AND label selectors together; a selector's requirements are comma-separated."""
    return ",".join(s for s in selectors if s)


#: The fields an app-side field selector may name that the control plane knows only as labels.
_FIELD_LABELS = {"metadata.name": APP_NAME_LABEL, "metadata.namespace": APP_NAMESPACE_LABEL}


def _escape_field_value(value: str) -> str:
    """fields.EscapeValue: a value written back into a field selector reads as the same value."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def translate_field_selector(field_selector: str) -> tuple[str, str]:
    """Turn an app-side field selector into (label selector, control-plane field selector).

    Parsed once, as fields.ParseSelector parses it (``core.selectors``: terms split at unescaped
    commas, not trimmed, values unescaped). ``metadata.name`` and ``metadata.namespace`` name
    app-side values, which the control plane only knows as labels: a value that is no label
    value is no object's name or namespace, so requiring it selects nothing (``!label``) and
    excluding it excludes nothing. Every other field is written back escaped, for the control
    plane to accept or refuse in its own words. ContractError when the selector does not parse.
    """
    requirements = selectors.field_requirements(field_selector)
    if requirements is None:
        raise ContractError(f"invalid field selector: {field_selector!r}")
    labels: list[str] = []
    fields: list[str] = []
    for requirement in requirements:
        value, wanted = requirement.values[0], requirement.operator == "In"
        label = _FIELD_LABELS.get(requirement.key)
        if label is None:
            fields.append(f"{requirement.key}{'=' if wanted else '!='}{_escape_field_value(value)}")
        elif not names.label_value(value):
            labels.append(f"{label}{'=' if wanted else '!='}{value}")
        elif wanted:
            labels.append(f"!{label}")  # every object of ours carries the label: none is selected
    return ",".join(labels), ",".join(fields)


def _editable(obj: Mapping[str, Any]) -> RawObject:
    """Copy just the parts of an object the contract rewrites (metadata, spec, the secret ref).

    The functions here never change their input; a deep copy of every claim on every read
    was the connector's largest single cost (profiled under bench/bench_connector.py), and
    the rest of the object is only passed along.
    """
    out: RawObject = dict(obj)
    out["metadata"] = dict(out.get("metadata") or {})
    if isinstance(out.get("spec"), dict):
        spec = out["spec"] = dict(out["spec"])
        if isinstance(spec.get("writeConnectionSecretToRef"), dict):
            spec["writeConnectionSecretToRef"] = dict(spec["writeConnectionSecretToRef"])
    return out


def _map_derived_names(out: RawObject, rename: Callable[[str], str]) -> None:
    """Rename the control-plane objects Crossplane names after this one, in place (on an ``_editable`` copy).

    Crossplane names a claim's XR ``<claim name>-<5 characters>`` and an XR's composed resources
    ``<XR name>-<suffix>``, and records them in ``spec.resourceRef`` and
    ``spec.crossplane.resourceRefs``; those hold the hashed name, which the app user never sees.
    """
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return
    if isinstance(spec.get("resourceRef"), dict) and isinstance(spec["resourceRef"].get("name"), str):
        spec["resourceRef"] = {**spec["resourceRef"], "name": rename(spec["resourceRef"]["name"])}
    machinery = spec.get("crossplane")
    if isinstance(machinery, dict) and isinstance(machinery.get("resourceRefs"), list):
        spec["crossplane"] = {
            **machinery,
            "resourceRefs": [
                {**r, "name": rename(r["name"])} if isinstance(r, dict) and isinstance(r.get("name"), str) else r
                for r in machinery["resourceRefs"]
            ],
        }


def _renamer(old_self: str, new_self: str, secrets: Mapping[str, str]) -> Callable[[str], str]:
    """Map a derived name from one side's own name (and connection Secret names) to the other's."""

    def rename(name: str) -> str:
        if name in secrets:
            return secrets[name]
        if name.startswith(f"{old_self}-"):
            return new_self + name[len(old_self) :]
        return name

    return rename


def _secret_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec")  # any JSON in an app body: the schema check is the control plane's
    ref = spec.get("writeConnectionSecretToRef") if isinstance(spec, dict) else None
    return ref if isinstance(ref, dict) else None


def owner_reference_problems(owners: Any) -> list[tuple[str, Any, str]]:
    """What kube-apiserver would refuse in ``metadata.ownerReferences``: (field, value, reason) each.

    The control plane never sees them as owner references (they travel in an annotation), so
    the connector checks them as the API server does before storing them.
    """
    if owners is None:
        return []
    if not isinstance(owners, list) or not all(isinstance(o, dict) for o in owners):
        return [("metadata.ownerReferences", owners, "must be a list of owner references")]
    problems: list[tuple[str, Any, str]] = []
    first_controller = ""
    for owner in owners:
        api_version = str(owner.get("apiVersion") or "")
        parts = api_version.split("/")
        if len(parts) > 2 or not parts[-1]:
            problems.append(("metadata.ownerReferences.apiVersion", api_version, "version must not be empty"))
        for key in ("kind", "name", "uid"):
            if not owner.get(key):
                problems.append((f"metadata.ownerReferences.{key}", owner.get(key) or "", "must not be empty"))
        if owner.get("controller") is True:
            current = f"{owner.get('kind')}/{owner.get('name')}"
            if first_controller:
                problems.append(
                    (
                        "metadata.ownerReferences",
                        owners,
                        "Only one reference can have Controller set to true. "
                        f'Found "true" in references for {first_controller} and {current}',
                    )
                )
            else:
                first_controller = current
    return problems


def _owners_from(annotation: Any) -> list[dict[str, Any]]:
    try:
        owners = json.loads(annotation) if isinstance(annotation, str) else None
    except ValueError:
        return []
    return [o for o in owners if isinstance(o, dict)] if isinstance(owners, list) else []


def to_control_plane(
    obj: Mapping[str, Any], ref: AppRef, *, claim_namespace: str, flavor: Flavor = Flavor.CLAIM
) -> RawObject:
    """Translate an app-side claim or namespaced XR body into the control-plane object it is stored as.

    The ownership labels are set here on every write, whatever the body says, so no
    request can move a claim to another cluster or namespace. Owner references are kept in
    ``APP_OWNERS_ANNOTATION`` and any ``managedFields`` the body carries are translated to match.
    """
    out = _editable(obj)
    metadata = out["metadata"]
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if not k.startswith(LABEL_DOMAIN)}
    for key in SELF_NAME_LABELS:
        if labels.get(key) == ref.name:
            labels[key] = control_plane_name(ref, flavor=flavor)
    labels.update(ownership_labels(ref))
    metadata["labels"] = labels
    metadata["name"] = control_plane_name(ref, flavor=flavor)
    metadata["namespace"] = claim_namespace
    metadata.pop("generateName", None)
    owners = metadata.pop("ownerReferences", None)
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in CONTRACT_ANNOTATIONS}
    if owners:
        annotations[APP_OWNERS_ANNOTATION] = json.dumps(owners, separators=(",", ":"), sort_keys=True)
    secret_ref = _secret_ref(out)
    secrets: dict[str, str] = {}
    if secret_ref is not None and secret_ref.get("name"):
        app_secret = str(secret_ref["name"])
        annotations[APP_SECRET_NAME_ANNOTATION] = app_secret
        secret_ref["name"] = connection_secret_name(AppRef(ref.cluster_id, ref.namespace, app_secret))
        secret_ref.pop("namespace", None)
        secrets[app_secret] = secret_ref["name"]
    _map_derived_names(out, _renamer(ref.name, metadata["name"], secrets))
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    if isinstance(metadata.get("managedFields"), list):
        metadata["managedFields"] = [
            managed_fields.entry_to_control_plane(e, owners_annotation=APP_OWNERS_ANNOTATION)
            for e in metadata["managedFields"]
            if isinstance(e, dict)
        ]
    return out


def to_app(obj: Mapping[str, Any]) -> RawObject:
    """Translate a control-plane claim back into what the app user sees.

    Owner references come back from ``APP_OWNERS_ANNOTATION`` (any the control plane itself
    holds name control-plane objects and are not shown); ``managedFields`` lose the connector's
    own fields, so the app sees the managers and fields of the object it is shown.
    """
    ref = app_ref_of(obj)
    if ref is None:
        raise ContractError("control-plane object carries no connector ownership labels")
    out = _editable(obj)
    metadata = out["metadata"]
    stored_name = str(metadata.get("name") or "")
    metadata["name"] = ref.name
    metadata["namespace"] = ref.namespace
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k not in OWNERSHIP_LABELS}
    for key in SELF_NAME_LABELS:
        if labels.get(key) in control_plane_names(ref):
            labels[key] = ref.name
    if labels:
        metadata["labels"] = labels
    else:
        metadata.pop("labels", None)
    annotations = dict(metadata.get("annotations") or {})
    app_secret = annotations.pop(APP_SECRET_NAME_ANNOTATION, None)
    owners = _owners_from(annotations.pop(APP_OWNERS_ANNOTATION, None))
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    if owners:
        metadata["ownerReferences"] = owners
    else:
        metadata.pop("ownerReferences", None)
    secret_ref = _secret_ref(out)
    secrets: dict[str, str] = {}
    if secret_ref is not None and app_secret is not None:
        secrets[str(secret_ref.get("name"))] = app_secret
        secret_ref["name"] = app_secret
    _map_derived_names(out, _renamer(stored_name, ref.name, secrets))
    if isinstance(metadata.get("managedFields"), list):
        entries = (
            managed_fields.entry_to_app(
                e,
                hidden_labels=OWNERSHIP_LABELS,
                hidden_annotations=(APP_SECRET_NAME_ANNOTATION,),
                owners_annotation=APP_OWNERS_ANNOTATION,
                owners=owners,
            )
            for e in metadata["managedFields"]
            if isinstance(e, dict)
        )
        metadata["managedFields"] = [e for e in entries if e is not None]
    return out


def connection_secret_name(secret_ref: AppRef) -> str:
    """Return the control-plane name of a connection Secret the app user asked for.

    Claims and namespaced XRs alike (``spec.writeConnectionSecretToRef.name``) hash it with
    the ``claim-`` prefix, as Upbound's connector does for claims.
    """
    return control_plane_name(secret_ref, flavor=Flavor.CLAIM)


@dataclass(frozen=True, order=True)
class SecretCopy:
    """Where a claim's connection Secret is copied from and to, every name parsed (core.names)."""

    cluster_id: str
    namespace: names.ObjectName
    name: names.SecretName
    #: The control-plane Secret in the claim namespace (a hashed name).
    source: names.SecretName


def app_connection_secret(obj: Mapping[str, Any]) -> SecretCopy | None:
    """The connection Secret copy a claim asks for; None when it asks for none or a name does not parse.

    The names come from a control-plane object (an annotation, a label, the spec), written by
    the connector after checking them; they are parsed again here, before any is used in a
    path or a selector, in case something else wrote them.
    """
    ref = app_ref_of(obj)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    app_secret = annotations.get(APP_SECRET_NAME_ANNOTATION)
    secret_ref = _secret_ref(obj)
    if ref is None or app_secret is None or secret_ref is None or not secret_ref.get("name"):
        return None
    try:
        return SecretCopy(
            ref.cluster_id,
            names.parse_object_name(ref.namespace),
            names.parse_secret_name(app_secret),
            names.parse_secret_name(secret_ref["name"]),
        )
    except names.InvalidName:
        return None


def connection_secret_written_for(secret: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """True when a control-plane connection Secret was written for exactly ``obj`` (a claim or XR).

    Secret names go through the same "-x-" hash as claim names, so two app objects can ask for
    one control-plane Secret (``creds-x-team`` in ``prod`` and ``creds`` in ``team-x-prod``).
    Crossplane writes a connection Secret with a controller reference to the object it is for
    (crossplane-runtime's LocalConnectionSecretFor), so that reference, not the name, decides
    whose app namespace may get a copy.
    """
    uid = (obj.get("metadata") or {}).get("uid")
    owners = (secret.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(
        isinstance(o, Mapping) and o.get("controller") is True and o.get("uid") == uid for o in owners
    )


def rewrite_message(text: str, ref: AppRef, *, claim_namespace: str) -> str:
    """Replace the control-plane name and namespace of ``ref`` in a message with the app-side ones."""
    text = text.replace(f'namespace "{claim_namespace}"', f'namespace "{ref.namespace}"')
    for hashed in control_plane_names(ref):
        text = text.replace(hashed, ref.name)
    return text


def hide_claim_namespace(text: str, *, claim_namespace: str, namespace: str | None) -> str:
    """Replace ``namespace "<claim namespace>"`` in a message that names no single claim.

    Only that exact form (how kube-apiserver names a namespace in its messages) is replaced,
    by the app namespace of the request or, for all-namespaces requests, "the app namespace".
    """
    target = f'namespace "{namespace}"' if namespace else "the app namespace"
    return text.replace(f'namespace "{claim_namespace}"', target)


def rewrite_status(status: Mapping[str, Any], ref: AppRef, *, claim_namespace: str) -> RawObject:
    """Rewrite a Kubernetes ``Status`` from the control plane so it names the app-side object."""
    out: RawObject = dict(status)
    if isinstance(out.get("details"), dict):
        out["details"] = dict(out["details"])
        if isinstance(out["details"].get("causes"), list):
            out["details"]["causes"] = [dict(c) if isinstance(c, dict) else c for c in out["details"]["causes"]]
    if isinstance(out.get("message"), str):
        out["message"] = rewrite_message(out["message"], ref, claim_namespace=claim_namespace)
    details = out.get("details")
    if isinstance(details, dict):
        if details.get("name") in control_plane_names(ref):
            details["name"] = ref.name
        for cause in details.get("causes") or []:
            if isinstance(cause, dict) and isinstance(cause.get("message"), str):
                cause["message"] = rewrite_message(cause["message"], ref, claim_namespace=claim_namespace)
    return out


def release_annotations(ref: AppRef) -> dict[str, str]:
    """Return the annotations a released claim keeps to say where it came from."""
    return {
        f"{RELEASED_ANNOTATION_PREFIX}app-namespace": ref.namespace,
        f"{RELEASED_ANNOTATION_PREFIX}app-resource-name": ref.name,
        f"{RELEASED_ANNOTATION_PREFIX}app-cluster": ref.cluster_id,
    }


def released_from(obj: Mapping[str, Any], cluster_id: str) -> bool:
    """True for a control-plane object a disconnect of ``cluster_id`` released (annotated, no ownership label)."""
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    return annotations.get(f"{RELEASED_ANNOTATION_PREFIX}app-cluster") == cluster_id and APP_CLUSTER_LABEL not in (
        metadata.get("labels") or {}
    )
