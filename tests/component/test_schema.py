"""The schema the component provider host publishes, inferred by the SDK from McpConnector's annotations.

The engine cannot run the Python provider host here (no pulumi-language-python), so this checks
the same inference the host performs at startup.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi.provider.experimental.component import ComponentProvider

from mcp_connector_component import TYPE_TOKEN, McpConnector
from mcp_connector_component.component import PACKAGE


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    provider = ComponentProvider([McpConnector], PACKAGE, version="0.1.0")
    result: dict[str, Any] = json.loads(provider.schema)  # type: ignore[attr-defined]
    return result


def test_type_token_matches_the_component(schema: dict[str, Any]) -> None:
    assert schema["name"] == PACKAGE
    assert list(schema["resources"]) == [TYPE_TOKEN]
    assert schema["resources"][TYPE_TOKEN]["isComponent"] is True


def test_inputs(schema: dict[str, Any]) -> None:
    resource = schema["resources"][TYPE_TOKEN]
    inputs = resource["inputProperties"]
    assert resource.get("requiredInputs", []) == []
    assert set(inputs) == {
        "claimNamespace", "account", "controlPlane", "host", "token", "controlPlaneSecret",
        "controlPlaneKubeconfig", "platformKubeconfig", "claimApis", "clusterId", "appClusterUid", "namespace", "image",
        "replicas", "resources", "mode", "caBundle", "include", "exclude", "onDisconnect", "allowIdentityChange",
        "allowApiRemoval", "groupPriorityMinimum",
    }  # fmt: skip
    assert inputs["replicas"]["type"] == "integer" and inputs["replicas"]["plain"] is True
    assert inputs["include"]["type"] == "array" and inputs["include"]["plain"] is True
    assert inputs["include"]["items"]["type"] == "string"
    assert inputs["resources"]["type"] == "object"
    assert inputs["resources"]["additionalProperties"]["additionalProperties"]["type"] == "string"
    assert "plain" not in inputs["token"], "secrets may come from other resources' outputs"
    assert "plain" not in inputs["platformKubeconfig"]
    for name, prop in inputs.items():
        assert prop.get("description"), f"{name} has no documentation"
    assert "Keep" in inputs["onDisconnect"]["description"] and "Release" in inputs["onDisconnect"]["description"]


def test_outputs(schema: dict[str, Any]) -> None:
    resource = schema["resources"][TYPE_TOKEN]
    assert resource["properties"]["claimApis"]["type"] == "array"
    assert resource["properties"]["apiserviceNames"]["items"]["type"] == "string"
    assert sorted(resource["required"]) == [
        "apiserviceNames",
        "appClusterUid",
        "claimApis",
        "clusterId",
        "controlPlaneNamespace",
    ]
    assert "destroy --run-program" in resource["description"]
