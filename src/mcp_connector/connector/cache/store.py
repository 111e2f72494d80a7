"""The cached objects of one claim API: control-plane form for selection, app-side form to serve.

An entry is made once per change seen on the upstream watch: the control-plane object is
translated to its app-side form there (``contract.to_app``), never again per read or per
watcher. Entries are keyed by their app-side namespace and name and listed in control-plane
name order, the order the control plane itself lists them in, so a list from the cache and a
list from the control plane come back the same.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from mcp_connector.core import contract


class NotOurs(ValueError):
    """A control-plane object without this cluster's ownership labels (never cached)."""


class Entry:
    """One object as cached: both forms, its version, and its serialized forms once made.

    While in the store an entry holds both forms as dicts. Once replaced or deleted it lives on
    only in the history, for watches that resume from an older version; ``pack`` then keeps the
    control-plane form as its JSON bytes and drops the dicts (several times the size of the JSON
    for the same object), so what the history holds is close to the bytes it accounts for. The
    forms are decoded again, each time, by the rare reader that needs them.
    """

    __slots__ = ("_obj", "_packed", "_raw", "cp_name", "encoded", "labels", "name", "namespace", "rv")

    def __init__(
        self,
        namespace: str,
        name: str,
        cp_name: str,
        rv: int,
        labels: Mapping[str, str],
        raw: dict[str, Any],
        obj: dict[str, Any],
        encoded: dict[str, bytes] | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.cp_name = cp_name
        self.rv = rv
        self.labels = labels
        self.encoded: dict[str, bytes] = encoded if encoded is not None else {}
        self._raw: dict[str, Any] | None = raw
        self._obj: dict[str, Any] | None = obj
        self._packed: bytes | None = None

    @classmethod
    def of(cls, raw: dict[str, Any], cluster_id: str) -> Entry:
        """The entry for a control-plane object of this cluster; NotOurs otherwise."""
        ref = contract.app_ref_of(raw)
        if ref is None or ref.cluster_id != cluster_id:
            raise NotOurs("not one of this cluster's objects")
        metadata = raw.get("metadata") or {}
        return cls(
            ref.namespace,
            ref.name,
            str(metadata.get("name") or ""),
            resource_version(metadata.get("resourceVersion")),
            dict(metadata.get("labels") or {}),
            raw,
            contract.to_app(raw),
        )

    @property
    def raw(self) -> dict[str, Any]:
        """The control-plane form."""
        if self._raw is not None:
            return self._raw
        assert self._packed is not None
        decoded: dict[str, Any] = orjson.loads(self._packed)
        return decoded

    @property
    def obj(self) -> dict[str, Any]:
        """The app-side form."""
        if self._obj is not None:
            return self._obj
        return contract.to_app(self.raw)

    def pack(self) -> None:
        """Keep the control-plane form as bytes only (the entry has left the store)."""
        if self._raw is not None:
            self._packed = orjson.dumps(self._raw)
            self._raw = self._obj = None

    @property
    def packed(self) -> bool:
        """True once the dicts are gone."""
        return self._raw is None

    def at_version(self, rv: int) -> Entry:
        """This object at another resourceVersion (an object leaving a selection is deleted at the change's)."""
        raw, obj = self.raw, self.obj
        return Entry(
            self.namespace,
            self.name,
            self.cp_name,
            rv,
            self.labels,
            {**raw, "metadata": {**(raw.get("metadata") or {}), "resourceVersion": str(rv)}},
            {**obj, "metadata": {**(obj.get("metadata") or {}), "resourceVersion": str(rv)}},
        )


def resource_version(value: Any) -> int:
    """A control-plane resourceVersion as a number (kube-apiserver's are etcd revisions)."""
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"resourceVersion {value!r} is not a number") from None


class Store:
    """Entries by app-side (namespace, name), with the control-plane order computed on demand."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        self._ordered: list[Entry] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, namespace: str, name: str) -> Entry | None:
        """The entry of one app object, if cached."""
        return self._entries.get((namespace, name))

    def put(self, entry: Entry) -> Entry | None:
        """Store ``entry``; return the one it replaces."""
        previous = self._entries.get((entry.namespace, entry.name))
        self._entries[(entry.namespace, entry.name)] = entry
        if previous is not None and previous.cp_name == entry.cp_name and self._ordered is not None:
            at = bisect.bisect_left(self._ordered, entry.cp_name, key=lambda e: e.cp_name)
            self._ordered[at] = entry
        else:
            self._ordered = None
        return previous

    def remove(self, namespace: str, name: str) -> Entry | None:
        """Drop one entry; return it."""
        previous = self._entries.pop((namespace, name), None)
        if previous is not None:
            self._ordered = None
        return previous

    def ordered(self) -> list[Entry]:
        """Every entry in control-plane name order (kept until the next change)."""
        if self._ordered is None:
            self._ordered = sorted(self._entries.values(), key=lambda e: e.cp_name)
        return self._ordered

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())
