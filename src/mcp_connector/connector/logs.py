"""Structured (one JSON object per line) logging for the connector.

Fields go in ``extra={"fields": {...}}``; callers pass names, verbs and codes, never tokens
or request bodies, and every value is cut short so no log line can carry an unbounded body.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any

import orjson

_MAX_VALUE = 500


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_VALUE:
        return value[:_MAX_VALUE] + "…"
    return value


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line: time, level, logger, message and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _short(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: _short(v) for k, v in fields.items()})
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = _short(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request line at INFO, including URLs; keep it quiet.
    for noisy in ("httpx", "httpcore", "hpack", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` argument carrying structured fields."""
    return {"fields": values}
