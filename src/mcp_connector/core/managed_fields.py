"""Edits of ``metadata.managedFields`` (``FieldsV1`` trees) between the app and control-plane forms.

The control plane tracks field ownership for the object it stores, which differs from the
app-side object in a few metadata fields: the connector's ownership labels and annotations,
and ``ownerReferences``, which the control plane keeps in an annotation. The contract decides
which fields those are; this module only moves them in a manager's field set, so that
``kubectl apply --server-side`` and ``--show-managed-fields`` see the app-side object's fields
under their real managers. Pure.

A ``FieldsV1`` tree maps ``f:<field>`` (and ``k:<key json>`` for list-map items) to subtrees;
``"."`` marks the node itself as owned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

RawEntry = dict[str, Any]
_SELF = "."


def _metadata_of(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    metadata = fields.get("f:metadata")
    return dict(metadata) if isinstance(metadata, dict) else None


def _without(tree: Any, keys: Iterable[str]) -> dict[str, Any] | None:
    """``tree`` minus ``keys``; None when nothing but the node's own mark would be left."""
    if not isinstance(tree, dict):
        return None
    dropped = set(keys)
    kept = {k: v for k, v in tree.items() if k not in dropped}
    return kept if set(kept) - {_SELF} else None


def owner_references_tree(owners: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``f:ownerReferences`` subtree kube-apiserver records for a manager owning ``owners``."""
    tree: dict[str, Any] = {_SELF: {}}
    for owner in owners:
        key = "k:" + json.dumps({"uid": str(owner.get("uid", ""))}, separators=(",", ":"))
        tree[key] = {_SELF: {}, **{f"f:{field}": {} for field in sorted(owner)}}
    return tree


def entry_to_app(
    entry: Mapping[str, Any],
    *,
    hidden_labels: Iterable[str],
    hidden_annotations: Iterable[str],
    owners_annotation: str,
    owners: Sequence[Mapping[str, Any]],
) -> RawEntry | None:
    """One manager's entry as the app side sees it; None when it owns nothing the app shows.

    Ownership of ``owners_annotation`` becomes ownership of every current owner reference:
    the annotation holds them as one value, so whoever set it set them all.
    """
    fields = entry.get("fieldsV1")
    if not isinstance(fields, dict):
        return dict(entry)
    fields = dict(fields)
    metadata = _metadata_of(fields)
    if metadata is not None:
        labels = _without(metadata.get("f:labels"), (f"f:{k}" for k in hidden_labels))
        annotations_tree = metadata.get("f:annotations")
        owns_owners = isinstance(annotations_tree, dict) and f"f:{owners_annotation}" in annotations_tree
        annotations = _without(annotations_tree, [f"f:{owners_annotation}", *(f"f:{k}" for k in hidden_annotations)])
        for key, tree in (("f:labels", labels), ("f:annotations", annotations)):
            if tree is None:
                metadata.pop(key, None)
            else:
                metadata[key] = tree
        if owns_owners and owners:
            metadata["f:ownerReferences"] = owner_references_tree(owners)
        if metadata:
            fields["f:metadata"] = metadata
        else:
            fields.pop("f:metadata")
    if not fields:
        return None
    return {**entry, "fieldsV1": fields}


def entry_to_control_plane(entry: Mapping[str, Any], *, owners_annotation: str) -> RawEntry:
    """One app-side manager's entry as the control plane stores it (owner references → annotation)."""
    fields = entry.get("fieldsV1")
    if not isinstance(fields, dict):
        return dict(entry)
    metadata = _metadata_of(fields)
    if metadata is None or "f:ownerReferences" not in metadata:
        return dict(entry)
    metadata.pop("f:ownerReferences")
    annotations = metadata.get("f:annotations")
    annotations = dict(annotations) if isinstance(annotations, dict) else {_SELF: {}}
    annotations[f"f:{owners_annotation}"] = {}
    metadata["f:annotations"] = annotations
    return {**entry, "fieldsV1": {**fields, "f:metadata": metadata}}
