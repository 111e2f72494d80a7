"""OpenAPI v2 and v3 documents for the claim kinds, built from the claim CRDs' schemas.

``kubectl explain`` reads OpenAPI v3 through the app cluster's aggregator, which downloads
``/openapi/v3`` and each ``/openapi/v3/apis/<group>/<version>`` from us; older clients and the
aggregator's merged ``/openapi/v2`` read the v2 document. Pure builders over a Catalog.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from mcp_connector.connector.followers.catalog import Catalog, ServedResource

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
OWNER_REFERENCE = "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"
MANAGED_FIELDS_ENTRY = "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"
FIELDS_V1 = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
PRECONDITIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.Preconditions"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
STATUS_CAUSE = "io.k8s.apimachinery.pkg.apis.meta.v1.StatusCause"
STATUS_DETAILS = "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}


def _meta_schemas(ref_prefix: str) -> dict[str, Any]:
    """ObjectMeta and the types it refers to, field for field as kube-apiserver publishes them.

    ``kubectl explain <kind>.metadata.ownerReferences`` and clients that read list types and
    merge keys from the schema need every field, not just the common ones.
    """

    def ref(name: str, description: str) -> dict[str, Any]:
        return {"$ref": f"{ref_prefix}{name}", "description": description}

    def text(description: str) -> dict[str, Any]:
        return {"type": "string", "description": description}

    return {
        OBJECT_META: {
            "description": "Metadata every persisted object has: identity, labels, owners, lifecycle.",
            "type": "object",
            "properties": {
                "annotations": {**_STRING_MAP, "description": "Unstructured key-value data kept with the object."},
                "creationTimestamp": ref(TIME, "When the object was created, set by the server. Read-only."),
                "deletionGracePeriodSeconds": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Seconds the object has to terminate gracefully once deletion started. Read-only.",
                },
                "deletionTimestamp": ref(TIME, "When the object will be deleted, set when deletion is requested."),
                "finalizers": {
                    "type": "array",
                    "items": {"type": "string", "default": ""},
                    "x-kubernetes-list-type": "set",
                    "x-kubernetes-patch-strategy": "merge",
                    "description": "Conditions that must be cleared before the object is removed from storage.",
                },
                "generateName": text("Prefix the server adds a random suffix to when no name is given."),
                "generation": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Sequence number of the desired state's changes, set by the server. Read-only.",
                },
                "labels": {**_STRING_MAP, "description": "Key-value pairs used to organize and select objects."},
                "managedFields": {
                    "type": "array",
                    "items": {"$ref": f"{ref_prefix}{MANAGED_FIELDS_ENTRY}", "default": {}},
                    "x-kubernetes-list-type": "atomic",
                    "description": "Which manager owns which fields, maintained by server-side apply.",
                },
                "name": text("Unique name within the namespace."),
                "namespace": text("The namespace the name is unique in."),
                "ownerReferences": {
                    "type": "array",
                    "items": {"$ref": f"{ref_prefix}{OWNER_REFERENCE}", "default": {}},
                    "x-kubernetes-list-map-keys": ["uid"],
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-patch-merge-key": "uid",
                    "x-kubernetes-patch-strategy": "merge",
                    "description": "Objects this object depends on; when all are deleted, it is garbage collected.",
                },
                "resourceVersion": text("Opaque version of the object, for optimistic concurrency and watches."),
                "selfLink": text("Deprecated and no longer set."),
                "uid": text("Unique in time and space, set by the server. Read-only."),
            },
        },
        OWNER_REFERENCE: {
            "description": "An owner of the object, in the same namespace or cluster-scoped.",
            "type": "object",
            "required": ["apiVersion", "kind", "name", "uid"],
            "x-kubernetes-map-type": "atomic",
            "properties": {
                "apiVersion": {**text("API version of the owner."), "default": ""},
                "blockOwnerDeletion": {
                    "type": "boolean",
                    "description": "If true, the owner cannot be deleted in the foreground until this object is gone.",
                },
                "controller": {"type": "boolean", "description": "If true, this owner is the managing controller."},
                "kind": {**text("Kind of the owner."), "default": ""},
                "name": {**text("Name of the owner."), "default": ""},
                "uid": {**text("UID of the owner."), "default": ""},
            },
        },
        MANAGED_FIELDS_ENTRY: {
            "description": "The fields one manager owns, and how it last wrote them.",
            "type": "object",
            "properties": {
                "apiVersion": text("API version of the object the fields were recorded in."),
                "fieldsType": text('Format of fieldsV1; only "FieldsV1".'),
                "fieldsV1": ref(FIELDS_V1, "The owned fields, as a FieldsV1 tree."),
                "manager": text("Name of the manager (the field manager of its requests)."),
                "operation": text('"Apply" for server-side apply, "Update" for every other write.'),
                "subresource": text("Subresource the fields were written through, if any."),
                "time": ref(TIME, "When the manager last changed its fields."),
            },
        },
        FIELDS_V1: {"description": "A set of fields as a JSON tree.", "type": "object"},
        TIME: {"description": "A timestamp in RFC 3339 form, to the second.", "type": "string", "format": "date-time"},
    }


_LIST_META_SCHEMA: dict[str, Any] = {
    "description": "Standard list metadata.",
    "type": "object",
    "properties": {
        "resourceVersion": {"type": "string"},
        "continue": {"type": "string"},
        "remainingItemCount": {"type": "integer", "format": "int64"},
        "selfLink": {"type": "string"},
    },
}
_V3_ONLY = ("nullable", "anyOf", "oneOf", "not")


def _api_schemas(ref_prefix: str) -> dict[str, Any]:
    """The request and response types of the verbs: DeleteOptions, Patch and Status."""

    def ref(name: str) -> dict[str, Any]:
        return {"allOf": [{"$ref": f"{ref_prefix}{name}"}]}

    text, int32 = {"type": "string"}, {"type": "integer", "format": "int32"}
    return {
        DELETE_OPTIONS: {
            "description": "Options of a delete.",
            "type": "object",
            "properties": {
                "apiVersion": text,
                "dryRun": {
                    "type": "array",
                    "items": {"type": "string", "default": ""},
                    "x-kubernetes-list-type": "atomic",
                },
                "gracePeriodSeconds": {"type": "integer", "format": "int64"},
                "ignoreStoreReadErrorWithClusterBreakingPotential": {"type": "boolean"},
                "kind": text,
                "orphanDependents": {"type": "boolean"},
                "preconditions": ref(PRECONDITIONS),
                "propagationPolicy": text,
            },
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "DeleteOptions", "version": "v1"}],
        },
        PATCH: {"description": "A patch: a JSON patch, a merge patch or an apply configuration.", "type": "object"},
        PRECONDITIONS: {
            "description": "What must hold before a delete is carried out.",
            "type": "object",
            "properties": {"resourceVersion": text, "uid": text},
        },
        STATUS: {
            "description": "The outcome of a call that returns no object.",
            "type": "object",
            "properties": {
                "apiVersion": text,
                "code": int32,
                "details": ref(STATUS_DETAILS),
                "kind": text,
                "message": text,
                "metadata": {"default": {}, **ref(LIST_META)},
                "reason": text,
                "status": text,
            },
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}],
        },
        STATUS_CAUSE: {
            "description": "One cause of an error.",
            "type": "object",
            "properties": {"field": text, "message": text, "reason": text},
        },
        STATUS_DETAILS: {
            "description": "Details of an error.",
            "type": "object",
            "properties": {
                "causes": {
                    "type": "array",
                    "items": {"default": {}, **ref(STATUS_CAUSE)},
                    "x-kubernetes-list-type": "atomic",
                },
                "group": text,
                "kind": text,
                "name": text,
                "retryAfterSeconds": int32,
                "uid": text,
            },
        },
    }


def definition_name(r: ServedResource, *, list_kind: bool = False) -> str:
    """Kubernetes' name for a CRD kind's schema: reversed group, version, kind."""
    reversed_group = ".".join(reversed(r.api.group.split(".")))
    kind = r.api.list_kind if list_kind else r.api.kind
    return f"{reversed_group}.{r.version.name}.{kind}"


def _gvk(r: ServedResource, *, list_kind: bool = False) -> list[dict[str, str]]:
    kind = r.api.list_kind if list_kind else r.api.kind
    return [{"group": r.api.group, "kind": kind, "version": r.version.name}]


def _strip_v3_only(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_v3_only(v) for k, v in schema.items() if k not in _V3_ONLY}
    if isinstance(schema, list):
        return [_strip_v3_only(v) for v in schema]
    return schema


def _kind_schema(r: ServedResource, ref_prefix: str) -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(dict(r.version.schema)) or {"type": "object"}
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    }
    properties["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource."}
    properties["metadata"] = {"$ref": f"{ref_prefix}{OBJECT_META}", "default": {}}
    schema["x-kubernetes-group-version-kind"] = _gvk(r)
    return schema


def _list_schema(r: ServedResource, ref_prefix: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{r.api.list_kind} is a list of {r.api.kind}",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": f"{ref_prefix}{definition_name(r)}"}},
            "metadata": {"$ref": f"{ref_prefix}{LIST_META}"},
        },
        "x-kubernetes-group-version-kind": _gvk(r, list_kind=True),
    }


#: Query parameters, as kube-apiserver publishes them for a CRD: (name, type, description).
_LIST_PARAMETERS = (
    ("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events on a watch."),
    ("continue", "string", "The continue token of the previous page of a paged list."),
    ("fieldSelector", "string", "Restrict the list to objects whose fields match."),
    ("labelSelector", "string", "Restrict the list to objects whose labels match."),
    ("limit", "integer", "Most objects to return in one page."),
    ("resourceVersion", "string", "Which version of the collection to read, or to watch from."),
    ("resourceVersionMatch", "string", "How resourceVersion applies: Exact or NotOlderThan."),
    ("sendInitialEvents", "boolean", "Start a watch with the current objects as ADDED events."),
    ("timeoutSeconds", "integer", "End the list or watch after this many seconds."),
    ("watch", "boolean", "Watch for changes instead of listing."),
)
_PRETTY = ("pretty", "string", "If 'true', the output is pretty printed.")
_DRY_RUN = ("dryRun", "string", "All: process the request without persisting it.")
_FIELD_MANAGER = ("fieldManager", "string", "Name of the actor making the change (server-side apply's manager).")
_FIELD_VALIDATION = (
    "fieldValidation",
    "string",
    "Ignore, Warn or Strict: what to do with unknown or duplicate fields.",
)
_WRITE_PARAMETERS = (_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION)
_PATCH_PARAMETERS = (*_WRITE_PARAMETERS, ("force", "boolean", "Take fields other managers own (apply only)."))
_DELETE_PARAMETERS = (
    _DRY_RUN,
    ("gracePeriodSeconds", "integer", "Seconds before the object is deleted; zero deletes immediately."),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Delete an object that cannot be read from storage (unsafe).",
    ),
    ("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
    ("propagationPolicy", "string", "Orphan, Background or Foreground: what happens to dependents."),
)
_READ_PARAMETERS = (("resourceVersion", "string", "Which version of the object to read."),)
_MEDIA = ("application/json", "application/yaml")
_PATCH_MEDIA = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")
_UNAUTHORIZED = {"401": {"description": "Unauthorized"}}
_CODES = {"200": "OK", "201": "Created", "202": "Accepted"}


def _camel(text: str) -> str:
    """kube-openapi's operation naming: each part of a group or version capitalized."""
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", ".").split("."))


def _parameter(spec: tuple[str, str, str], *, v3: bool, where: str = "query") -> dict[str, Any]:
    name, kind, description = spec
    if v3:
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "description": description,
            "schema": {"type": kind, "uniqueItems": True},
        }
    else:
        parameter = {"uniqueItems": True, "type": kind, "description": description, "name": name, "in": where}
    if where == "path":
        parameter["required"] = True
    return parameter


def _path_parameters(r: ServedResource, *, named: bool, v3: bool) -> list[dict[str, Any]]:
    out = []
    if named:
        out.append(_parameter(("name", "string", f"name of the {r.api.kind}"), v3=v3, where="path"))
    out.append(_parameter(("namespace", "string", "the object's namespace"), v3=v3, where="path"))
    out.append(_parameter(_PRETTY, v3=v3))
    return out


class _Operations:
    """The operations of one kind's four paths, as kube-apiserver's CRD builder lays them out."""

    def __init__(self, r: ServedResource, ref_prefix: str, *, v3: bool) -> None:
        self.r, self.prefix, self.v3 = r, ref_prefix, v3
        self.gvk = _gvk(r)[0]
        self.tag = f"{_camel(r.api.group)[:1].lower()}{_camel(r.api.group)[1:]}_{r.version.name}"
        self.stem = f"{_camel(r.api.group)}{_camel(r.version.name)}"

    def _responses(self, ref: str, codes: tuple[str, ...]) -> dict[str, Any]:
        schema = {"$ref": f"{self.prefix}{ref}"}
        out: dict[str, Any] = {}
        for code in codes:
            if self.v3:
                out[code] = {"description": _CODES[code], "content": {m: {"schema": schema} for m in _MEDIA}}
            else:
                out[code] = {"description": _CODES[code], "schema": schema}
        return {**out, **_UNAUTHORIZED}

    def _body(self, ref: str, media: tuple[str, ...], *, required: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The request body: v3's requestBody, or v2's ``body`` parameter."""
        schema = {"$ref": f"{self.prefix}{ref}"}
        if self.v3:
            body: dict[str, Any] = {"content": {m: {"schema": schema} for m in sorted(media)}}
            if required:
                body["required"] = True
            return {"requestBody": body}, []
        parameter: dict[str, Any] = {"name": "body", "in": "body", "schema": schema}
        if required:
            parameter["required"] = True
        return {}, [parameter]

    def op(
        self,
        action: str,
        operation_id: str,
        description: str,
        parameters: tuple[tuple[str, str, str], ...],
        responses: dict[str, Any],
        body: tuple[str, tuple[str, ...], bool] | None = None,
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        body_parameters: list[dict[str, Any]] = []
        if body is not None:
            extra, body_parameters = self._body(body[0], body[1], required=body[2])
        out: dict[str, Any] = {"tags": [self.tag], "description": description, "operationId": operation_id}
        if not self.v3:
            out["consumes"] = list(body[1]) if body is not None and body[1] == _PATCH_MEDIA else list(_MEDIA)
            out["produces"] = list(_MEDIA)
            out["schemes"] = ["https"]
        query = [_parameter(p, v3=self.v3) for p in parameters]
        if body_parameters or query:
            out["parameters"] = [*body_parameters, *query]
        out.update(extra)
        out["responses"] = responses
        out["x-kubernetes-action"] = action
        out["x-kubernetes-group-version-kind"] = self.gvk
        return out


def _paths(resources: tuple[ServedResource, ...], ref_prefix: str, *, v3: bool) -> dict[str, Any]:
    """Four paths per kind (three without a status subresource), every verb, as for a local CRD."""
    paths: dict[str, Any] = {}
    for r in resources:
        ops = _Operations(r, ref_prefix, v3=v3)
        kind, stem = r.api.kind, ops.stem
        one, many = definition_name(r), definition_name(r, list_kind=True)
        root = f"/apis/{r.api.group}/{r.version.name}"
        every = f"{root}/{r.api.plural}"
        collection = f"{root}/namespaces/{{namespace}}/{r.api.plural}"
        item = f"{collection}/{{name}}"
        lists = ops._responses(many, ("200",))
        paths[every] = {
            "get": ops.op("list", f"list{stem}{kind}ForAllNamespaces", f"list objects of kind {kind}", (), lists),
            "parameters": [_parameter(p, v3=v3) for p in sorted((*_LIST_PARAMETERS, _PRETTY))],
        }
        paths[collection] = {
            "get": ops.op(
                "list", f"list{stem}Namespaced{kind}", f"list objects of kind {kind}", _LIST_PARAMETERS, lists
            ),
            "post": ops.op(
                "post",
                f"create{stem}Namespaced{kind}",
                f"create {_article(kind)} {kind}",
                _WRITE_PARAMETERS,
                ops._responses(one, ("200", "201", "202")),
                (one, _MEDIA, True),
            ),
            "delete": ops.op(
                "deletecollection",
                f"delete{stem}CollectionNamespaced{kind}",
                f"delete collection of {kind}",
                _LIST_PARAMETERS,
                ops._responses(STATUS, ("200",)),
            ),
            "parameters": _path_parameters(r, named=False, v3=v3),
        }
        subresources = [("", "", "")]
        if r.version.status_subresource:
            subresources.append(("/status", "Status", " status of"))
        for suffix, title, of in subresources:
            path: dict[str, Any] = {
                "get": ops.op(
                    "get",
                    f"read{stem}Namespaced{kind}{title}",
                    f"read{of} the specified {kind}",
                    _READ_PARAMETERS,
                    ops._responses(one, ("200",)),
                ),
                "put": ops.op(
                    "put",
                    f"replace{stem}Namespaced{kind}{title}",
                    f"replace{of} the specified {kind}",
                    _WRITE_PARAMETERS,
                    ops._responses(one, ("200", "201")),
                    (one, _MEDIA, True),
                ),
            }
            if not suffix:
                path["delete"] = ops.op(
                    "delete",
                    f"delete{stem}Namespaced{kind}",
                    f"delete {_article(kind)} {kind}",
                    _DELETE_PARAMETERS,
                    ops._responses(STATUS, ("200", "202")),
                    (DELETE_OPTIONS, _MEDIA, False),
                )
            path["patch"] = ops.op(
                "patch",
                f"patch{stem}Namespaced{kind}{title}",
                f"partially update{of} the specified {kind}",
                _PATCH_PARAMETERS,
                ops._responses(one, ("200",)),
                (PATCH, _PATCH_MEDIA, True),
            )
            path["parameters"] = _path_parameters(r, named=True, v3=v3)
            paths[f"{item}{suffix}"] = path
    return paths


def _article(kind: str) -> str:
    return "an" if kind[:1].lower() in "aeiou" else "a"


def _schemas(resources: tuple[ServedResource, ...], ref_prefix: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {**_meta_schemas(ref_prefix), **_api_schemas(ref_prefix), LIST_META: _LIST_META_SCHEMA}
    for r in resources:
        schemas[definition_name(r)] = _kind_schema(r, ref_prefix)
        schemas[definition_name(r, list_kind=True)] = _list_schema(r, ref_prefix)
    return schemas


def _all_resources(catalog: Catalog) -> tuple[ServedResource, ...]:
    return tuple(r for gv in catalog.group_versions() for r in catalog.at(gv.group, gv.version))


def v2(catalog: Catalog) -> dict[str, Any]:
    """``/openapi/v2``: one Swagger 2.0 document for every served kind."""
    resources = _all_resources(catalog)
    return {
        "swagger": "2.0",
        "info": {"title": "mcp-connector", "version": "v0.1.0"},
        "paths": _paths(resources, "#/definitions/", v3=False),
        "definitions": _strip_v3_only(_schemas(resources, "#/definitions/")),
    }


def v3_group_version(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    """``/openapi/v3/apis/<group>/<version>``: an OpenAPI 3.0 document, or None when not served."""
    resources = catalog.at(group, version)
    if not resources:
        return None
    prefix = "#/components/schemas/"
    return {
        "openapi": "3.0.0",
        "info": {"title": "mcp-connector", "version": "v0.1.0"},
        "paths": _paths(resources, prefix, v3=True),
        "components": {"schemas": _schemas(resources, prefix)},
    }


def etag(document: Mapping[str, Any]) -> str:
    """A content hash for caching and for the v3 index's ``?hash=`` links."""
    return hashlib.sha512(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32].upper()


def v3_index(catalog: Catalog) -> dict[str, Any]:
    """``/openapi/v3``: where each group/version's document is, with a content hash."""
    paths: dict[str, Any] = {}
    for gv in catalog.group_versions():
        document = v3_group_version(catalog, gv.group, gv.version)
        if document is not None:
            key = f"apis/{gv.group}/{gv.version}"
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={etag(document)}"}
    return {"paths": paths}


#: Documents already built, by catalog snapshot: the catalog is replaced whole whenever discovery
#: reads the APIs again, so a document is built (and hashed) once per schema change, not per request.
_BUILT: dict[tuple[str, str, str], tuple[Catalog, bytes | None, str]] = {}


def document(catalog: Catalog, spec: str, group: str = "", version: str = "") -> tuple[bytes, str] | None:
    """The OpenAPI document at a route, serialized, and its ETag, built once per catalog; None when not served."""
    key = (spec, group, version)
    built = _BUILT.get(key)
    if built is None or built[0] is not catalog:
        if spec == "v2":
            doc: dict[str, Any] | None = v2(catalog)
        elif not group:
            doc = v3_index(catalog)
        else:
            doc = v3_group_version(catalog, group, version)
        built = (catalog, orjson.dumps(doc) if doc is not None else None, etag(doc) if doc is not None else "")
        if len(_BUILT) > 1024:
            _BUILT.clear()
        _BUILT[key] = built
    return (built[1], built[2]) if built[1] is not None else None
