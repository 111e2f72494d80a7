"""Tables (``kubectl get`` output) for cached objects, cell for cell as the control plane makes them.

apiextensions-apiserver builds a custom resource's Table from the CRD's
``additionalPrinterColumns``: a Name column, then one column per entry, each cell the first
result of the column's JSONPath, typed by the column (a ``date`` becomes an age like "5m",
computed when the Table is written). The cells are computed on the control-plane object, as
the control plane computes them, and hashed names in them become the app-side names
(translate.cell_replacements), exactly what the connector shows for a Table it proxies.
Row objects follow ``includeObject`` (Metadata by default, Object, None).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from mcp_connector.connector.api.translate import cell_replacements
from mcp_connector.connector.cache import cells
from mcp_connector.connector.cache.forms import Form
from mcp_connector.connector.cache.jsonpath import compile_path
from mcp_connector.connector.cache.store import Entry
from mcp_connector.core.discovery import RawPrinterColumn

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources may "
    "allow a client to request the generation of an appropriate name automatically. Name is primarily intended "
    "for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
INCLUDE_OBJECTS = ("", "Metadata", "Object", "None")

log = logging.getLogger(__name__)


def _cell(kind: str, results: list[Any], replacements: Mapping[str, str], now: datetime.datetime) -> Any:
    if not results:
        return None
    if kind == "string":
        text = cells.string_cell(results[0])
        return replacements.get(text, text)
    return cells.typed_cell(kind, results[0], now)


class Columns:
    """One version's printer columns, compiled once."""

    def __init__(self, columns: Iterable[RawPrinterColumn], key: str) -> None:
        self.key = key
        self.definitions: list[dict[str, Any]] = [
            {"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}
        ]
        self.paths: list[tuple[str, Callable[[Any], list[Any]]]] = []
        self.supported = True
        for column in columns:
            path = str(column.get("jsonPath") or "")
            compiled = compile_path(path)
            if compiled is None:
                self.supported = False
                continue
            self.paths.append((str(column.get("type") or ""), compiled))
            self.definitions.append(
                {
                    "name": column.get("name", ""),
                    "type": column.get("type", ""),
                    "format": column.get("format", ""),
                    "description": column.get("description")
                    or f"Custom resource definition column (in JSONPath format): {path}",
                    "priority": int(column.get("priority") or 0),
                }
            )
        self.ages = any(kind == "date" for kind, _ in self.paths)

    def cells(self, entry: Entry, now: datetime.datetime) -> list[Any]:
        """The row cells of one object; a cell that cannot be made is empty, never the row's end."""
        replacements: Mapping[str, str] = cell_replacements(entry.raw)
        row: list[Any] = [entry.name]
        for kind, path in self.paths:
            try:
                row.append(_cell(kind, path(entry.raw), replacements, now))
            except Exception:  # a cell kube-apiserver could not print either: an empty one
                log.debug("empty table cell", exc_info=True)
                row.append(None)
        return row


class TableForm(Form):
    """Tables of one version's columns, with row objects as ``includeObject`` asks."""

    headers_once = True

    def __init__(self, columns: Columns, include_object: str, api_version: str) -> None:
        super().__init__(f"table:{api_version}:{include_object}:{columns.key}")
        self.columns = columns
        self.include_object = include_object or "Metadata"
        self.api_version = api_version

    def _row(self, entry: Entry, now: datetime.datetime) -> dict[str, Any]:
        if self.include_object == "Object":
            obj: Any = entry.obj
        elif self.include_object == "None":
            obj = None
        else:
            obj = {
                "kind": "PartialObjectMetadata",
                "apiVersion": self.api_version,
                "metadata": entry.obj.get("metadata") or {},
            }
        return {"cells": self.columns.cells(entry, now), "object": obj}

    def _table(self, rows: list[dict[str, Any]], resource_version: str, *, headers: bool = True) -> bytes:
        return orjson.dumps(
            {
                "kind": "Table",
                "apiVersion": self.api_version,
                "metadata": {"resourceVersion": resource_version},
                "columnDefinitions": self.columns.definitions if headers else None,
                "rows": rows,
            }
        )

    def object_bytes(self, entry: Entry) -> bytes:
        """A Table with the one row of ``entry`` (cached only when no column is an age)."""
        if not self.columns.ages and self.key in entry.encoded:
            return entry.encoded[self.key]
        now = datetime.datetime.now(datetime.UTC)
        body = self._table([self._row(entry, now)], str(entry.rv))
        if not self.columns.ages:
            entry.encoded[self.key] = body
        return body

    def event_bytes(self, entry: Entry, *, headers: bool) -> bytes:
        """A watch event's Table: column definitions only in a watch's first event."""
        now = datetime.datetime.now(datetime.UTC)
        return self._table([self._row(entry, now)], str(entry.rv), headers=headers)

    def list_bytes(self, entries: Iterable[Entry], *, kind: str, api_version: str, resource_version: int) -> bytes:
        """A Table with a row per entry."""
        now = datetime.datetime.now(datetime.UTC)
        return self._table([self._row(e, now) for e in entries], str(resource_version))


_COLUMNS: dict[bytes, Columns] = {}


def table_form(
    printer_columns: tuple[RawPrinterColumn, ...], include_object: str | None, api_version: str
) -> TableForm | None:
    """The Table form for a version's columns, or None when the cache cannot make it exactly."""
    if (include_object or "") not in INCLUDE_OBJECTS:
        return None
    key = orjson.dumps(printer_columns, option=orjson.OPT_SORT_KEYS)
    columns = _COLUMNS.get(key)
    if columns is None:
        try:
            columns = Columns(printer_columns, hashlib.sha256(key).hexdigest()[:16])
        except (ValueError, TypeError, AttributeError):  # columns the cache cannot read: the control plane's Table
            log.warning("printer columns the cache cannot read; Tables go to the control plane")
            return None
        _COLUMNS[key] = columns
        if len(_COLUMNS) > 256:
            _COLUMNS.pop(next(iter(_COLUMNS)))
    if not columns.supported:
        return None
    return TableForm(columns, include_object or "", api_version)
