"""One URL builder: every request path is made by ``upstream.api_path``, segment by segment.

The AST check keeps it so: a formatted string literal, a ``%``/``.format`` or a concatenation
that builds a Kubernetes API path anywhere in src/ or components/ fails here, as does an
``ApiPath(...)`` made outside the builder. Documents that only describe paths (the OpenAPI
document's path templates) are listed with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mcp_connector import upstream

ROOT = Path(__file__).resolve().parents[2]
_API_PATH = re.compile(r"(^/apis?(/|$))|(^apis?/)|(/namespaces/)|(^namespaces/)|(/secrets(/|$))")

#: (file, line text that may format an API path, why it is not a request path).
ALLOWED = {
    ("src/mcp_connector/connector/api/openapi.py", "OpenAPI path templates are served as a document, never requested"),
}


def _strings(node: ast.AST) -> list[str]:
    """The literal text parts of a string expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def _formats_api_path(node: ast.AST) -> bool:
    if isinstance(node, ast.JoinedStr):
        text = "\x00".join(_strings(node))
        return bool(_API_PATH.search(text)) and any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return any(_API_PATH.search(t) for side in (node.left, node.right) for t in _strings(side))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return any(_API_PATH.search(t) for t in _strings(node.func.value))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
        parts = [e for arg in node.args for e in (arg.elts if isinstance(arg, ast.List | ast.Tuple) else [arg])]
        return any(t == "/" for t in _strings(node.func.value)) and any(
            t in ("api", "apis", "namespaces", "secrets") or _API_PATH.search(t) for p in parts for t in _strings(p)
        )
    return False


def _makes_api_path(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "ApiPath")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "ApiPath")
    )


def offences(source: str, filename: str) -> list[str]:
    """Lines of ``source`` that build a request path by hand."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if _formats_api_path(node) or (_makes_api_path(node) and not filename.endswith("mcp_connector/upstream.py")):
            found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)[:120]}")
    return found


def _product_files() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "components").rglob("*.py")])


def test_nothing_in_the_product_formats_a_request_path() -> None:
    allowed = {name for name, _ in ALLOWED}
    found = []
    for path in _product_files():
        name = str(path.relative_to(ROOT))
        if name not in allowed:
            found += offences(path.read_text(), name)
    assert not found, "request paths must come from upstream.api_path:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'path = f"/api/v1/namespaces/{ns}/secrets/{name}"',
        'path = f"{base}/namespaces/{ns}/secrets"',
        'path = "/apis/" + group',
        'path = base + "/secrets/" + name',
        'path = "/api/v1/namespaces/%s" % ns',
        'path = "/api/v1/namespaces/{}".format(ns)',
        'path = "/".join(["", "api", "v1", "namespaces", ns])',
        "path = upstream.ApiPath(text)",
    ],
)
def test_the_check_catches_each_way_of_formatting_a_path(source: str) -> None:
    assert offences(source, "src/example.py"), source


def test_the_check_lets_the_builder_and_plain_text_pass() -> None:
    assert not offences('path = upstream.api_path("api", "v1", "namespaces", ns, "secrets", name)', "src/x.py")
    assert not offences('message = f"namespace {ns} is being terminated"', "src/x.py")


# The builder itself.


def test_segments_are_encoded_one_by_one() -> None:
    path = upstream.api_path("api", "v1", "namespaces", "demo", "secrets", "a b?c#d,e=f!g")
    assert path == "/api/v1/namespaces/demo/secrets/a%20b%3Fc%23d%2Ce%3Df%21g"
    assert path.child("x") == path + "/x"
    assert isinstance(path.child("x"), upstream.ApiPath)


@pytest.mark.parametrize(
    "segment",
    [
        "",
        ".",
        "..",
        "a/b",
        "my-cluster-kubeconfig,metadata.name!=/../../../victimns/secrets/victim",
        "%2F",
        "..%2F..%2Fvictimns",
        "%2E%2E",
    ],
)
def test_a_value_that_is_not_one_segment_is_refused(segment: str) -> None:
    with pytest.raises(upstream.InvalidPathSegment):
        upstream.api_path("api", "v1", "namespaces", "demo", "secrets", segment)
