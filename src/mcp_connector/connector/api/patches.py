"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386), applied by the connector itself.

The connector applies these patches to the app-side view and writes the result back with
the object's resourceVersion, instead of forwarding them: a forwarded patch acts on the
control-plane object, where it could edit the ownership labels, the hashed name or the
namespace before we got a chance to refuse it. Pure.
"""

from __future__ import annotations

import copy
from typing import Any

#: kube-apiserver's limits: operations per JSON patch, and values all ``copy`` operations may add.
MAX_JSON_PATCH_OPERATIONS = 10_000
MAX_COPIED_VALUES = 100_000


class PatchError(ValueError):
    """The patch cannot be applied; the message is safe to show the user."""


class PatchTestFailed(PatchError):
    """A ``test`` operation did not hold (a MutatingAdmissionPolicy then leaves the object as it was)."""


def _size(value: Any) -> int:
    """How many values (keys included) ``value`` holds, counted without recursion."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchError("the whole document cannot be the target of this operation")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, pointer)
    return node, tokens[-1]


def _child(node: Any, token: str, pointer: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise PatchError(f"path {pointer!r} does not exist")
        return node[token]
    if isinstance(node, list):
        index = _index(node, token, pointer, allow_end=False)
        return node[index]
    raise PatchError(f"path {pointer!r} does not exist")


def _index(node: list[Any], token: str, pointer: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(node)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index in {pointer!r}")
    index = int(token)
    if index > len(node) or (index == len(node) and not allow_end):
        raise PatchError(f"array index out of range in {pointer!r}")
    return index


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for token in _tokens(pointer):
        node = _child(node, token, pointer)
    return node


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, pointer, allow_end=True), value)
    else:
        raise PatchError(f"path {pointer!r} does not exist")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path {pointer!r} does not exist")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, token, pointer, allow_end=False))
    raise PatchError(f"path {pointer!r} does not exist")


def json_patch(target: Any, operations: Any, *, max_copied: int = MAX_COPIED_VALUES) -> Any:
    """RFC 6902: apply the operations in order to a copy of ``target``.

    ``copy`` is the one operation that makes a document grow faster than the patch (each can
    double it), so what all copies add together is bounded, as kube-apiserver bounds it.
    """
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    copied = 0
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise PatchError("every JSON patch operation needs an 'op' and a 'path'")
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"JSON patch operation {kind!r} needs a 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if path == "":
                doc = copy.deepcopy(op["value"])
            else:
                doc, _ = _remove(doc, path)
                doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"JSON patch operation {kind!r} needs 'from'")
            if kind == "move":
                doc, value = _remove(doc, source)
            else:
                value = _get(doc, source)
                copied += _size(value)
                if copied > max_copied:
                    raise PatchError(f"the copy operations add more than {max_copied} values")
                value = copy.deepcopy(value)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchTestFailed(f"test operation on {path!r} failed")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc
