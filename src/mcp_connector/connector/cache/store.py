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
from dataclasses import dataclass, field
from typing import Any

from mcp_connector.core import contract


class NotOurs(ValueError):
    """A control-plane object without this cluster's ownership labels (never cached)."""


@dataclass(slots=True, eq=False)
class Entry:
    """One object as cached: both forms, its version, and its serialized forms once made."""

    namespace: str
    name: str
    cp_name: str
    rv: int
    labels: Mapping[str, str]
    raw: dict[str, Any]
    obj: dict[str, Any]
    encoded: dict[str, bytes] = field(default_factory=dict)

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
