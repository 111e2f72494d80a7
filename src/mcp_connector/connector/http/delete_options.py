"""A delete's options, parsed as kube-apiserver parses them: from the body when there is one, else the query.

kube-apiserver decodes a DELETE body (JSON or YAML) into ``meta.k8s.io/v1`` DeleteOptions with Go's
typed, case-sensitive decoding: a field of the wrong type is a 400, an unknown field is dropped,
a ``kind`` other than DeleteOptions is a 400; the query is then not read for options at all.
Without a body the query's parameters are converted instead. Either way ValidateDeleteOptions
runs (a 422 naming each field). The result is a ``DeleteOptions`` value: only it travels on, to
admission and, written afresh, to the control plane; the tenant's bytes and fields the
connector does not know never do. ``ignoreStoreReadErrorWithClusterBreakingPotential`` is
type-checked and dropped: it only acts on an object the control plane cannot decode, which the
connector has already failed to read, and the connector never asks for a cluster-breaking
delete on a tenant's behalf. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mcp_connector.connector.errors import ApiError, bad_request
from mcp_connector.connector.http import bodies
from mcp_connector.connector.http.apimachinery import (
    Problem,
    dry_run_problems,
    go_bool,
    go_int64,
    in_int64,
    invalid,
    unsupported,
)

_PROPAGATION = ("Foreground", "Background", "Orphan")
_TYPE_META = 'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'
#: meta.k8s.io/v1 kinds that decode but do not convert into DeleteOptions.
_OTHER_META_KINDS = ("CreateOptions", "GetOptions", "ListOptions", "PatchOptions", "Status", "UpdateOptions")


@dataclass(frozen=True)
class DeleteOptions:
    """The options of one delete, typed; ``None`` means not given (the control plane's default)."""

    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    orphan_dependents: bool | None = None
    propagation_policy: str | None = None
    dry_run: tuple[str, ...] = ()

    def pinned(self, uid: str) -> DeleteOptions:
        """The same options with a uid precondition (the caller checked any uid it gave)."""
        return replace(self, precondition_uid=uid)

    def wire(self) -> dict[str, Any]:
        """The ``meta.k8s.io/v1`` DeleteOptions body for the control plane and for admission."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        if self.grace_period_seconds is not None:
            body["gracePeriodSeconds"] = self.grace_period_seconds
        preconditions = {
            k: v
            for k, v in (("uid", self.precondition_uid), ("resourceVersion", self.precondition_resource_version))
            if v is not None
        }
        if preconditions:
            body["preconditions"] = preconditions
        if self.orphan_dependents is not None:
            body["orphanDependents"] = self.orphan_dependents
        if self.propagation_policy is not None:
            body["propagationPolicy"] = self.propagation_policy
        if self.dry_run:
            body["dryRun"] = list(self.dry_run)
        return body


def parse(
    query: Mapping[str, str], repeated: Mapping[str, tuple[str, ...]], body: bytes, content_type: str
) -> DeleteOptions:
    """The delete's options, from ``body`` when it has any bytes, else from the query; validated."""
    options = from_body(body, content_type) if body else from_query(query, repeated)
    found = problems(options)
    if found:
        raise invalid("DeleteOptions", found)
    return options


def from_query(query: Mapping[str, str], repeated: Mapping[str, tuple[str, ...]]) -> DeleteOptions:
    """The query's parameters as apimachinery's parameter codec converts them (400 when one does not)."""
    grace = query.get("gracePeriodSeconds")
    try:
        grace_period = None if grace is None else go_int64(grace)
    except ValueError as e:
        raise bad_request(str(e)) from None
    return DeleteOptions(
        grace_period_seconds=grace_period,
        orphan_dependents=go_bool(query["orphanDependents"]) if "orphanDependents" in query else None,
        propagation_policy=query.get("propagationPolicy"),
        dry_run=repeated.get("dryRun") or ((query["dryRun"],) if "dryRun" in query else ()),
    )


def from_body(body: bytes, content_type: str) -> DeleteOptions:
    """A DeleteOptions body decoded as kube-apiserver's meta codecs decode it."""
    document = bodies.decode(body, content_type)
    yaml = bodies.input_format(content_type) == "yaml"
    if document is None:
        return DeleteOptions()
    if not isinstance(document, dict):
        raise bad_request(
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {_json_type(document)} "
            f"into Go value of type {_TYPE_META}"
        )
    for meta in ("apiVersion", "kind"):
        if document.get(meta) is not None and not isinstance(document[meta], str):
            raise bad_request(
                f"couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{_json_type(document[meta])} into Go struct field .{meta} of type string"
            )
    kind = document.get("kind") or ""
    if kind in _OTHER_META_KINDS:
        raise bad_request(f"converting (v1.{kind}) to (v1.DeleteOptions): unknown conversion")
    if kind not in ("", "DeleteOptions"):
        raise bad_request(f'no kind "{kind}" is registered for version "meta.k8s.io/v1"')
    fields = _Fields(document, "DeleteOptions", yaml=yaml)
    preconditions = document.get("preconditions")
    if preconditions is not None and not isinstance(preconditions, dict):
        raise fields.wrong("preconditions", preconditions, "v1.Preconditions")
    held = _Fields(preconditions or {}, "Preconditions.preconditions", yaml=yaml)
    dry_run = fields.typed("dryRun", list, "[]string")
    for value in dry_run or ():
        if value is not None and not isinstance(value, str):
            raise fields.wrong("dryRun", value, "string")
    fields.typed("ignoreStoreReadErrorWithClusterBreakingPotential", bool, "bool")
    return DeleteOptions(
        grace_period_seconds=fields.int64("gracePeriodSeconds"),
        precondition_uid=held.typed("uid", str, "types.UID"),
        precondition_resource_version=held.typed("resourceVersion", str, "string"),
        orphan_dependents=fields.typed("orphanDependents", bool, "bool"),
        propagation_policy=fields.typed("propagationPolicy", str, "v1.DeletionPropagation"),
        dry_run=tuple(v or "" for v in dry_run or ()),
    )


def problems(options: DeleteOptions) -> list[Problem]:
    """ValidateDeleteOptions."""
    found: list[Problem] = []
    policy = options.propagation_policy
    if options.orphan_dependents is not None and policy is not None:
        found.append(
            (
                "propagationPolicy",
                "FieldValueInvalid",
                f'Invalid value: "{policy}": orphanDependents and deletionPropagation cannot be both set',
            )
        )
    if policy is not None and policy not in _PROPAGATION:
        found.append(unsupported("propagationPolicy", policy, (*_PROPAGATION, "nil")))
    return found + dry_run_problems(options.dry_run)


@dataclass(frozen=True)
class _Fields:
    """One decoded JSON object's fields, read as Go's typed decoding reads a struct's."""

    document: Mapping[str, Any]
    struct: str
    yaml: bool

    def wrong(self, name: str, value: Any, go_type: str) -> ApiError:
        shown = _json_type(value)
        if go_type == "int64" and shown == "number":
            shown = f"number {value}"
        return bad_request(
            f"json: cannot unmarshal {shown} into Go struct field {self.struct}.{name} of type {go_type}"
        )

    def typed(self, name: str, kind: type, go_type: str) -> Any:
        """The field when it has JSON type ``kind`` or is null/absent (None); a 400 otherwise."""
        value = self.document.get(name)
        if value is None or (isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))):
            return value
        raise self.wrong(name, value, go_type)

    def int64(self, name: str) -> int | None:
        """An int64 field: a JSON integer in range; YAML's ``5.0`` counts, as sigs.k8s.io/yaml makes it 5."""
        value = self.document.get(name)
        if value is None:
            return None
        if self.yaml and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and in_int64(value):
            return value
        raise self.wrong(name, value, "int64")


def _json_type(value: Any) -> str:
    """How Go's encoding/json names a JSON value's type in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
