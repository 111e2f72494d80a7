"""Issue 23, point 2: a consistent LIST takes the path measured faster for its scope (cache/paths.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcp_connector.connector.cache.paths import EXPLORE_EVERY, SCOPES_KEPT, Path, Paths


def run(paths: Paths, scope: str, cost: dict[Path, float], reads: int) -> list[Path]:
    """``reads`` consistent LISTs of ``scope``, each path answering in the time ``cost`` gives it."""
    taken = []
    for _ in range(reads):
        path = paths.choose(scope)
        paths.took(scope, path, cost[path])
        taken.append(path)
    return taken


def test_each_path_is_measured_once_then_the_faster_answers() -> None:
    taken = run(Paths(), "ns", {Path.CACHE: 0.040, Path.CONTROL_PLANE: 0.020}, 10)
    assert taken[:2] == [Path.CACHE, Path.CONTROL_PLANE]
    assert taken[2:] == [Path.CONTROL_PLANE] * 8


def test_the_slower_path_is_tried_again_now_and_then_and_a_change_is_followed() -> None:
    paths = Paths()
    taken = run(paths, "ns", {Path.CACHE: 0.010, Path.CONTROL_PLANE: 0.030}, 4 * EXPLORE_EVERY)
    assert taken.count(Path.CONTROL_PLANE) == 1 + 4  # measured once, then one read in EXPLORE_EVERY
    # The control plane becomes the faster (say, shared proofs stopped sharing): followed.
    taken = run(paths, "ns", {Path.CACHE: 0.050, Path.CONTROL_PLANE: 0.005}, 4 * EXPLORE_EVERY)
    assert taken[-EXPLORE_EVERY + 1 :].count(Path.CONTROL_PLANE) >= EXPLORE_EVERY - 2


def test_scopes_are_measured_apart_and_bounded() -> None:
    paths = Paths()
    run(paths, "small", {Path.CACHE: 0.001, Path.CONTROL_PLANE: 0.002}, 3)
    run(paths, "large", {Path.CACHE: 0.050, Path.CONTROL_PLANE: 0.020}, 3)
    assert paths.choose("small") is Path.CACHE and paths.choose("large") is Path.CONTROL_PLANE
    for n in range(SCOPES_KEPT + 10):
        paths.choose(f"scope-{n}")
    assert paths.seconds("small") == {}  # forgotten, least recently used first


@given(st.lists(st.tuples(st.sampled_from(list(Path)), st.floats(0, 10)), max_size=60))
def test_the_average_stays_within_the_samples(samples: list[tuple[Path, float]]) -> None:
    paths = Paths()
    paths.choose("ns")
    for path, seconds in samples:
        paths.took("ns", path, seconds)
    for path, average in paths.seconds("ns").items():
        mine = [s for p, s in samples if p is path]
        assert min(mine) - 1e-9 <= average <= max(mine) + 1e-9
