"""The connector image installs requirements-connector.txt with --no-deps: keep it honest.

It must pin what the project pins, name every runtime dependency of the connector and
nothing of Pulumi; the Containerfile's default base must be pinned by digest.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.split("#", 1)[0].strip())
        if match:
            pins[_norm(match.group(1))] = match.group(2)
    return pins


def test_image_pins_agree_with_the_project_pins() -> None:
    image, project = _pins(ROOT / "requirements-connector.txt"), _pins(ROOT / "requirements.txt")
    assert image, "requirements-connector.txt pins nothing"
    differ = {n: (v, project[n]) for n, v in image.items() if n in project and project[n] != v}
    assert not differ, f"requirements-connector.txt and requirements.txt pin different versions: {differ}"


def test_image_pins_every_runtime_dependency_and_nothing_of_pulumi() -> None:
    image = _pins(ROOT / "requirements-connector.txt")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {_norm(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0]) for d in deps}
    missing = {n for n in runtime if not n.startswith("pulumi")} - image.keys()
    assert not missing, f"runtime dependencies missing from requirements-connector.txt: {sorted(missing)}"
    pulumi = [n for n in image if n.startswith("pulumi") or n in ("grpcio", "protobuf")]
    assert not pulumi, f"the connector image must not install {pulumi}"


def test_containerfile_default_base_is_pinned_by_digest_without_a_registry_host() -> None:
    text = (ROOT / "Containerfile").read_text()
    match = re.search(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert match, "Containerfile has no ARG BASE=<default>"
    base = match.group(1)
    assert re.fullmatch(r"debian:bookworm-slim@sha256:[0-9a-f]{64}", base), base
    assert 'ENTRYPOINT ["mcp-connector", "serve"]' in text
    assert re.search(r"^USER 65532:65532$", text, re.MULTILINE)
