"""Smoke test of the accuracy benchmark (``benchmarks/accuracy.py``) on a tiny size: it runs, its scores are
distances, and on ``reach_no_effect`` the DATA_DRIVEN model beats FIRST_TOUCH by a wide margin (FIRST_TOUCH
hands most of the credit to display, which reaches almost every user early and has no effect).

The margin was checked on seeds 0-9 at this size before asserting it (see the test's comment). About 4 s of CPU
once the Numba kernels are cached (``tests/`` runs first and fills the cache); with the cache off, compiling
every model's kernels adds about 30 s of CPU.
"""

from __future__ import annotations

import pytest

from benchmarks.accuracy import DATA_DRIVEN, HEURISTIC, evaluate, tv_distance

USERS = 3_000
SCENARIOS = ["default", "reach_no_effect"]


@pytest.fixture(scope="module")
def report() -> dict:
    return evaluate(n_users=USERS, seeds=[0], scenarios=SCENARIOS, order2=False, bootstrap=0, log=lambda _: None)


def test_every_model_is_scored_as_a_distance(report: dict) -> None:
    assert set(report["mean_scores"]) == set(SCENARIOS)
    for scores in report["mean_scores"].values():
        assert set(scores) == set(HEURISTIC + DATA_DRIVEN)
        assert all(0.0 <= s <= 1.0 for s in scores.values()), scores
    for run in report["runs"]:
        for model, shares in run["shares"].items():
            assert sum(shares.values()) == pytest.approx(1.0), model
        assert sum(run["truth"].values()) == pytest.approx(1.0)


def test_tv_distance_bounds() -> None:
    assert tv_distance({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert tv_distance({"a": 1.0}, {"b": 1.0}) == 1.0
    assert tv_distance({"a": 0.75, "b": 0.25}, {"a": 0.25, "b": 0.75}) == pytest.approx(0.5)


def test_data_driven_beats_first_touch_on_reach_no_effect(report: dict) -> None:
    # At 3k users, seeds 0-9 (engine e399d2d): FIRST_TOUCH scored 0.46-0.51, DATA_DRIVEN 0.05-0.13, the
    # difference 0.36-0.43; the journey form of DATA_DRIVEN it replaced also passed (0.49 vs 0.14 at 100k users).
    scores = report["mean_scores"]["reach_no_effect"]
    assert scores["FIRST_TOUCH"] > scores["DATA_DRIVEN"] + 0.2, scores
