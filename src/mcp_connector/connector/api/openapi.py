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
    },
}
_V3_ONLY = ("nullable", "anyOf", "oneOf", "not")


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


def _paths(resources: tuple[ServedResource, ...], ref_prefix: str, *, v3: bool) -> dict[str, Any]:
    def response(ref: str) -> dict[str, Any]:
        schema = {"$ref": f"{ref_prefix}{ref}"}
        if v3:
            return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}
        return {"200": {"description": "OK", "schema": schema}}

    paths: dict[str, Any] = {}
    for r in resources:
        base = f"/apis/{r.api.group}/{r.version.name}/namespaces/{{namespace}}/{r.api.plural}"
        gvk = _gvk(r)[0]
        paths[base] = {
            "get": {
                "operationId": f"list{r.api.kind}",
                "responses": response(definition_name(r, list_kind=True)),
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": gvk,
            }
        }
        paths[f"{base}/{{name}}"] = {
            "get": {
                "operationId": f"read{r.api.kind}",
                "responses": response(definition_name(r)),
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk,
            }
        }
    return paths


def _schemas(resources: tuple[ServedResource, ...], ref_prefix: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {**_meta_schemas(ref_prefix), LIST_META: _LIST_META_SCHEMA}
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
