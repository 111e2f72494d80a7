"""An ApplyConfiguration merged into the object as kube-apiserver merges it for a CRD.

kube-apiserver converts both to typed values of the resource's schema (structured-merge-diff),
refuses a patch that sets an atomic list, map or struct (``validatePatch``: setting part of an
atomic would silently drop the rest) or a field the schema does not declare, and merges: maps
and structs field by field, ``set`` lists as a union, ``map`` lists item by item on their keys,
scalars replaced. The schema is the CRD version's ``openAPIV3Schema``; ``metadata`` follows
ObjectMeta's list and map types, as kube-apiserver's own schema for it does. Messages are
worded as kube-apiserver words them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]

_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META: Schema = {
    "type": "object",
    "properties": {
        "annotations": _STRING_MAP,
        "labels": _STRING_MAP,
        "creationTimestamp": {"type": "string"},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "deletionTimestamp": {"type": "string"},
        "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "generateName": {"type": "string"},
        "generation": {"type": "integer"},
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "x-kubernetes-list-type": "atomic",
        },
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "x-kubernetes-map-type": "atomic",
                "properties": {
                    k: {"type": "boolean" if k in ("blockOwnerDeletion", "controller") else "string"}
                    for k in ("apiVersion", "kind", "name", "uid", "blockOwnerDeletion", "controller")
                },
            },
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
        },
        "resourceVersion": {"type": "string"},
        "selfLink": {"type": "string"},
        "uid": {"type": "string"},
    },
}
#: A schema-less region (x-kubernetes-preserve-unknown-fields): maps merge, lists are atomic.
_DEDUCED: Schema = {"x-kubernetes-preserve-unknown-fields": True}


class MergeError(ValueError):
    """A patch kube-apiserver would refuse; the message is kube-apiserver's."""


def root_schema(crd_schema: Schema) -> Schema:
    """The CRD version's schema with ``apiVersion``, ``kind`` and ObjectMeta at the root."""
    properties = dict(crd_schema.get("properties") or {})
    properties.update(apiVersion={"type": "string"}, kind={"type": "string"}, metadata=_OBJECT_META)
    return {**crd_schema, "type": "object", "properties": properties}


def apply_configuration(live: Mapping[str, Any], patch: Mapping[str, Any], crd_schema: Schema) -> dict[str, Any]:
    """``live`` with ``patch`` merged in; MergeError as kube-apiserver refuses."""
    schema = root_schema(crd_schema)
    undeclared = _undeclared(patch, schema, "")
    if undeclared:
        raise MergeError("failed to convert patch object to typed object: " + _joined(undeclared))
    atomics = _atomics(patch, schema, "")
    if atomics:
        raise MergeError(
            "invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: " + ", ".join(atomics)
        )
    merged = _merge(copy.deepcopy(dict(live)), patch, schema)
    return dict(merged)


def _joined(errors: list[str]) -> str:
    if len(errors) == 1:
        return errors[0]
    return "\n".join(["errors:", *(f"  {e}" for e in errors)])


def _field(schema: Schema, key: str) -> Schema | None:
    """The schema of field ``key`` of an object schema (None: not declared)."""
    properties = schema.get("properties") or {}
    if key in properties:
        return dict(properties[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        return extra
    if extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
        return _DEDUCED
    return None


def _is_object(schema: Schema) -> bool:
    return (
        schema.get("type") == "object"
        or "properties" in schema
        or bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    )


def _items(schema: Schema) -> Schema:
    items = schema.get("items")
    return items if isinstance(items, Mapping) else _DEDUCED


def _list_type(schema: Schema) -> str:
    if schema is _DEDUCED or schema.get("type") != "array":
        return "atomic"
    return str(schema.get("x-kubernetes-list-type") or "atomic")


def _undeclared(value: Any, schema: Schema, path: str) -> list[str]:
    if isinstance(value, Mapping) and _is_object(schema):
        found = []
        for key, item in value.items():
            sub = _field(schema, str(key))
            if sub is None:
                found.append(f"{path}.{key}: field not declared in schema")
            else:
                found += _undeclared(item, sub, f"{path}.{key}")
        return found
    if isinstance(value, list) and schema.get("type") == "array":
        return [e for i, item in enumerate(value) for e in _undeclared(item, _items(schema), f"{path}[{i}]")]
    return []


def _atomics(value: Any, schema: Schema, path: str) -> list[str]:
    """Paths in the patch that set an atomic list, map or struct (``findAtomics``)."""
    found = []
    if isinstance(value, Mapping) and _is_object(schema):
        if schema.get("x-kubernetes-map-type") == "atomic":
            found.append(path)
        for key, item in value.items():
            sub = _field(schema, str(key))
            if sub is not None:
                found += _atomics(item, sub, f"{path}.{key}")
    elif isinstance(value, list):
        if _list_type(schema) == "atomic":
            found.append(path)
        for i, item in enumerate(value):
            found += _atomics(item, _items(schema), f"{path}[{i}]")
    return found


def _merge(live: Any, patch: Any, schema: Schema) -> Any:
    if isinstance(patch, Mapping) and isinstance(live, dict) and _is_object(schema):
        for key, item in patch.items():
            sub = _field(schema, str(key)) or _DEDUCED
            live[key] = _merge(live[key], item, sub) if key in live else copy.deepcopy(item)
        return live
    if isinstance(patch, list) and isinstance(live, list):
        kind = _list_type(schema)
        if kind == "set":
            return live + [copy.deepcopy(v) for v in patch if v not in live]
        if kind == "map":
            keys = tuple(str(k) for k in schema.get("x-kubernetes-list-map-keys") or ())
            return _merge_keyed(live, patch, keys, _items(schema))
    return copy.deepcopy(patch)


def _merge_keyed(live: list[Any], patch: list[Any], keys: tuple[str, ...], items: Schema) -> list[Any]:
    def key_of(item: Any) -> tuple[Any, ...]:
        return tuple(item.get(k) for k in keys) if isinstance(item, Mapping) else (item,)

    merged = list(live)
    positions = {key_of(item): i for i, item in enumerate(merged)}
    for item in patch:
        at = positions.get(key_of(item))
        if at is None:
            positions[key_of(item)] = len(merged)
            merged.append(copy.deepcopy(item))
        else:
            merged[at] = _merge(merged[at], item, items)
    return merged
