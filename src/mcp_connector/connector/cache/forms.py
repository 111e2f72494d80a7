"""How cached objects are written out: as themselves or as PartialObjectMetadata, lists and events.

Each object is serialized once per form and the bytes are shared by every read and every
watcher that asks for that form, so a change fanned out to a thousand watches is encoded once,
not a thousand times. Lists are joined from those bytes, never re-encoded. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from mcp_connector.connector.cache.store import Entry
from mcp_connector.connector.http.media import META_GROUP, Output

META_API_VERSION = "meta.k8s.io/v1"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class Form:
    """One representation: ``key`` names it in the per-object byte caches.

    ``meta_kinds`` is set for the metadata-only form: the kind of one object and of a list.
    ``headers_once`` marks forms whose first watch event differs from the rest (Tables).
    """

    headers_once = False

    def __init__(self, key: str, meta_kinds: tuple[str, str] | None = None) -> None:
        self.key = key
        self.meta_kinds = meta_kinds

    def event_bytes(self, entry: Entry, *, headers: bool) -> bytes:
        """The object of a watch event in this form."""
        return self.object_bytes(entry)

    def object_bytes(self, entry: Entry) -> bytes:
        """The object in this form, serialized once per entry."""
        found = entry.encoded.get(self.key)
        if found is None:
            found = orjson.dumps(self.render(entry.obj))
            entry.encoded[self.key] = found
        return found

    def render(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object in this form (not serialized)."""
        if self.meta_kinds is None:
            return obj
        return {"kind": self.meta_kinds[0], "apiVersion": META_API_VERSION, "metadata": obj.get("metadata") or {}}

    def list_bytes(self, entries: Iterable[Entry], *, kind: str, api_version: str, resource_version: int) -> bytes:
        """A list of ``entries`` in this form, as kube-apiserver writes a list of custom resources."""
        if self.meta_kinds is not None:
            kind, api_version = self.meta_kinds[1], META_API_VERSION
        head = orjson.dumps({"apiVersion": api_version, "kind": kind})[:-1]
        meta = orjson.dumps({"continue": "", "resourceVersion": str(resource_version)})
        items = b",".join(self.object_bytes(e) for e in entries)
        return head + b',"metadata":' + meta + b',"items":[' + items + b"]}"

    def bookmark(self, resource_version: int, *, kind: str, api_version: str, initial_end: bool = False) -> bytes:
        """A BOOKMARK event line: only the resourceVersion (and the initial-events-end mark)."""
        metadata: dict[str, Any] = {"resourceVersion": str(resource_version), "creationTimestamp": None}
        if initial_end:
            metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
        if self.meta_kinds is not None:
            kind, api_version = self.meta_kinds[0], META_API_VERSION
        return (
            orjson.dumps(
                {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}}
            )
            + b"\n"
        )


OBJECT = Form("object")
METADATA = Form("metadata", ("PartialObjectMetadata", "PartialObjectMetadataList"))

_EVENT_HEADS = {t: f'{{"type":"{t}","object":'.encode() for t in ("ADDED", "MODIFIED", "DELETED")}


_EVENT_TAIL = b"}\n"


def event_parts(event_type: str, object_bytes: bytes) -> tuple[bytes, bytes, bytes]:
    """The parts of one event line (joined by the writer: the object's bytes are not copied here)."""
    return _EVENT_HEADS[event_type], object_bytes, _EVENT_TAIL


def negotiate(output: Output, *, listing: bool, table: Callable[[str], Form | None]) -> Form | None:
    """The form for what the request negotiated (http.media), or None when the cache does not serve it.

    ``table`` makes the Table form for a meta.k8s.io version (or None); v1beta1 metadata forms
    go to the control plane, and so does a list asked for as single PartialObjectMetadata.
    """
    if not output.kind:
        return OBJECT
    if output.kind == "Table":
        return table(f"{META_GROUP}/{output.version}")
    if output.version != "v1":
        return None
    return METADATA if output.kind == "PartialObjectMetadataList" or not listing else None
