"""The connector image that `make image` builds: no Pulumi, non-root, read-only root, `mcp-connector serve`.

The image must be built before (`make image`; `make test` and CI do it): a missing image
fails these tests with that instruction.
"""

from __future__ import annotations

import pytest

from testbed import podman

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def image() -> str:
    ref = podman.image_ref()
    if not podman.image_exists(ref):
        pytest.fail(f"image {ref} is not in local container storage: run make image", pytrace=False)
    return ref


def _run(image: str, *args: str, entrypoint: str | None = None) -> tuple[int, str, str]:
    flags = ["run", "--rm", "--network=host", "--read-only", "--pull=never", *podman.ULIMITS]
    if entrypoint:
        flags += ["--entrypoint", entrypoint]
    proc = podman.run(*flags, image, *args, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_image_config_runs_serve_as_nonroot(image: str) -> None:
    config = podman.inspect_image(image)["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["mcp-connector", "serve"]


def test_image_has_no_pulumi_no_compiler_no_pip(image: str) -> None:
    script = (
        "find / -xdev -iname '*pulumi*' -print 2>/dev/null | head -5; "
        "for t in gcc cc c++ clang go rustc make pip pip3; do command -v $t; done; "
        'python3 -c "import importlib.util as u; print([m for m in (\'pulumi\', \'grpc\') if u.find_spec(m)])"'
    )
    code, out, err = _run(image, "-c", script, entrypoint="/bin/sh")
    assert code == 0, err
    assert out.strip() == "[]", f"found in the image:\n{out}"


def test_image_runs_as_nonroot_on_a_read_only_root(image: str) -> None:
    _code, out, err = _run(image, "-c", "id -u; id -g; touch /probe 2>&1", entrypoint="/bin/sh")
    lines = out.splitlines()
    assert lines[:2] == ["65532", "65532"], out + err
    assert "touch: cannot touch '/probe': Read-only file system" in out, out


def test_entrypoint_is_serve_and_reports_every_bad_flag(image: str) -> None:
    code, _out, err = _run(image)
    assert code == 2, err
    assert "mcp-connector serve: --claim-namespace: required" in err
    assert "mcp-connector serve: --control-plane-kubeconfig: required" in err
