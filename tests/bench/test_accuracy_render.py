"""benchmarks/accuracy.py: the calibrated runs' table of the worlds block (a small world, one pair of tests)."""

from __future__ import annotations

import pytest

from benchmarks.accuracy import _lift_test_lines, lift_test_data
from optiq_engine.simulate import worlds


@pytest.mark.slow
def test_lift_test_runs_are_scored_and_rendered() -> None:
    world = worlds.generate("confounded", n_users=3_000, seed=1)
    data = lift_test_data(world, pairs=[("email", "google_ads")])
    row = data["email, google_ads"]
    assert 0.0 <= row["score"] <= 1.0
    assert row["max_abs_z"] < 0.5  # each test met within its error
    assert sum(row["errors"].values()) == pytest.approx(0.0, abs=1e-9)  # shares and truth both sum to 1
    runs = {"confounded": {"scores": {"DATA_DRIVEN": 0.6, "LAST_NON_DIRECT": 0.3}, "lift_tests": data}}
    lines = _lift_test_lines(runs)
    assert any(line.startswith("| confounded | 0.600 | LAST_NON_DIRECT 0.300 | email, google_ads |") for line in lines)
    assert _lift_test_lines({"x": {"scores": {}}}) == []
