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

from mcp_connector.connector.catalog import Catalog, ServedResource

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META_SCHEMA: dict[str, Any] = {
    "description": "Standard object's metadata.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "namespace": {
            "type": "string",
            "description": "Namespace defines the space within which each name must be unique.",
        },
        "generateName": {"type": "string", "description": "Optional prefix to generate a unique name from."},
        "labels": {**_STRING_MAP, "description": "Map of string keys and values to organize and select objects."},
        "annotations": {**_STRING_MAP, "description": "Unstructured key value map stored with a resource."},
        "uid": {"type": "string", "description": "Unique in time and space value for this object."},
        "resourceVersion": {"type": "string", "description": "Opaque value of the object's internal version."},
        "generation": {"type": "integer", "format": "int64", "description": "Generation of the desired state."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "When the object was created."},
        "deletionTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "When the object will be deleted.",
        },
        "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before deletion."},
    },
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
    properties["metadata"] = {"$ref": f"{ref_prefix}{OBJECT_META}"}
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
    schemas: dict[str, Any] = {OBJECT_META: _OBJECT_META_SCHEMA, LIST_META: _LIST_META_SCHEMA}
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
