"""The structure of an OpenAPI v3 document, to compare the connector's with kube-apiserver's.

What a client generator, a validator or a fuzzer reads: paths, operations (method, operationId,
action, tags), parameter names and places (path-level and per operation), request body media
types and schema references, response codes and their schema references, and the component
schema names. Descriptions and the schemas' contents are left out.
"""

from __future__ import annotations

from typing import Any


def _ref(schema: dict[str, Any] | None) -> str:
    return str((schema or {}).get("$ref", "")).rsplit("/", 1)[-1]


def _parameters(items: list[dict[str, Any]] | None) -> list[tuple[str, str, bool, str]]:
    return sorted(
        (p["name"], p["in"], bool(p.get("required")), str((p.get("schema") or {}).get("type", ""))) for p in items or []
    )


def shape(document: dict[str, Any], group: str) -> dict[str, Any]:
    """The structure of ``document`` with ``group`` (and its reversed form) replaced by ``G``."""
    reversed_group = ".".join(reversed(group.split(".")))
    camel = "".join(part[:1].upper() + part[1:] for part in group.replace("-", ".").split("."))

    def norm(text: str) -> str:
        return text.replace(group, "G").replace(reversed_group, "G").replace(camel, "G")

    paths: dict[str, Any] = {}
    for path, item in document.get("paths", {}).items():
        ops: dict[str, Any] = {"parameters": _parameters(item.get("parameters"))}
        for method, op in item.items():
            if method == "parameters":
                continue
            body = op.get("requestBody") or {}
            ops[method] = {
                "operationId": norm(str(op.get("operationId"))),
                "action": op.get("x-kubernetes-action"),
                "parameters": _parameters(op.get("parameters")),
                "body": {m: norm(_ref(v.get("schema"))) for m, v in (body.get("content") or {}).items()},
                "bodyRequired": bool(body.get("required")),
                "responses": {
                    code: {m: norm(_ref(v.get("schema"))) for m, v in (r.get("content") or {}).items()}
                    for code, r in op.get("responses", {}).items()
                },
            }
        paths[norm(path)] = ops
    schemas = sorted(norm(name) for name in (document.get("components") or {}).get("schemas", {}))
    return {"paths": paths, "schemas": schemas}


def operation_ids(shaped: dict[str, Any]) -> dict[str, str]:
    """operationId by "METHOD path"."""
    return {
        f"{method.upper()} {path}": op["operationId"]
        for path, item in shaped["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    }
