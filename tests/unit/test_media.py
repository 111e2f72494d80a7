"""The Accept header negotiated as kube-apiserver negotiates it for a custom resource (issue 17's class).

The answers are kube-apiserver 1.35's for a local CRD, recorded on the test bed
(``tests/e2e/test_connector_edge.py`` sends the same headers to both and compares): before,
``APPLICATION/JSON``, ``application/cbor``, ``,,,`` or protobuf alone were served as JSON
(kube-apiserver: 406), and the tenant's header was sent on to the control plane as it came.
"""

from __future__ import annotations

import pytest

from mcp_connector.connector.errors import ApiError
from mcp_connector.connector.http import media

TABLE, POM = "as=Table;g=meta.k8s.io;v=v1", "as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


@pytest.mark.parametrize(
    ("accept", "kind", "version"),
    [
        ("", "", ""),
        ("application/json", "", ""),
        ("*/*", "", ""),
        ("*", "", ""),
        ("application/*", "", ""),
        ("application/json;charset=utf-8", "", ""),
        ("application/json;q=0", "", ""),
        ("application/json;q=abc", "", ""),
        ("application/json;stream=watch", "", ""),
        ("application/json;sv=v1", "", ""),
        (f"application/json;{TABLE}", "Table", "v1"),
        ("application/json;as=Table;g=meta.k8s.io;v=v1beta1", "Table", "v1beta1"),
        (f"application/json;{TABLE}, application/json", "Table", "v1"),
        (f"application/json;{TABLE};q=0.5, application/json", "", ""),
        (f"application/json;{POM}", "PartialObjectMetadata", "v1"),
        (f"application/vnd.kubernetes.protobuf;{POM}, application/json;{POM}", "PartialObjectMetadata", "v1"),
        ("application/yaml, application/json", "", ""),
        ("application/json, text/html;q=0.9", "", ""),
        ("text/html, */*;q=0.1", "", ""),
    ],
)
def test_what_kube_apiserver_serves_is_negotiated(accept: str, kind: str, version: str) -> None:
    assert media.negotiate(accept) == media.Output(kind, version)


@pytest.mark.parametrize(
    "accept",
    [
        "APPLICATION/JSON",
        "application/cbor",
        "application/vnd.kubernetes.protobuf",
        f"application/vnd.kubernetes.protobuf;{TABLE}",
        ",,,",
        "application/json;v=v1",
        "application/json;as=Table",
        "application/json;as=Bogus;g=meta.k8s.io;v=v1",
        "application/json;as=Table;g=other.io;v=v1",
        "application/json;stream=bogus",
        "application/json;sv=v9",
        "text/html",
        "garbage/garbage/garbage",
        # kube-apiserver answers these in YAML; the connector writes JSON only (a known limit).
        "application/yaml",
        f"application/yaml;{TABLE}",
    ],
)
def test_what_kube_apiserver_refuses_is_a_406(accept: str) -> None:
    with pytest.raises(ApiError) as refused:
        media.negotiate(accept)
    assert refused.value.code == 406 and refused.value.body["reason"] == "NotAcceptable"


def test_the_control_plane_is_asked_for_the_negotiated_form_never_the_tenants_header() -> None:
    assert media.negotiate("*/*;q=0.8, application/json;x=\r\n").accept == "application/json"
    assert (
        media.negotiate(f"application/json;{TABLE};includeObject=Object").accept
        == "application/json;as=Table;g=meta.k8s.io;v=v1"
    )


def test_clauses_are_tried_in_goautonegs_order() -> None:
    """Higher q first; at equal q a specific type before ``*``, kept in order otherwise."""
    order = [(c.type, c.subtype) for c in media.clauses("*/*;q=0.1, text/plain, application/*, application/json")]
    assert order == [("text", "plain"), ("application", "json"), ("application", "*"), ("*", "*")]


def test_a_watch_whose_first_choice_is_yaml_is_a_406() -> None:
    """YAML has no stream form: kube-apiserver refuses the watch rather than trying the next clause."""
    assert media.negotiate("application/yaml, application/json") == media.OBJECT
    with pytest.raises(ApiError):
        media.negotiate("application/yaml, application/json", watch=True)
    assert media.negotiate("application/json, application/yaml", watch=True) == media.OBJECT
