"""The known bias of ``form="auto"``'s choice toward the nested form (docs/data_driven.md §6.1, open):
on conversions simulated from the engine's own fitted touch form, a nested form should gain about half a
χ² with 13 degrees of freedom (its 0.999 quantile is 17.2 units); it gains 60-70 at 30 000 users. Strict
xfail: the day the choice is fixed this test passes and must become a plain test."""

from __future__ import annotations

import polars as pl
import pytest

import optiq_engine as oq
from benchmarks.form_choice_bias import best, simulate_from
from optiq_engine.models.data_driven.form_choice import choose_candidates
from optiq_engine.simulate import worlds


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="the nested form's end decision also fits the ending process (open)"
)
def test_the_nested_form_gains_no_more_than_chance_on_data_from_the_touch_form() -> None:
    world = worlds.generate("touch_decay", n_users=30_000, seed=0)
    fitted = oq.attribute(world.touchpoints, world.conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]
    candidates, _ = choose_candidates(fitted.paths, l2=float(fitted.model.l2), seed=fitted.model.seed)
    conversions = simulate_from(best(candidates, "touch"), fitted.paths.channels, world.touchpoints, seed=1)
    again = oq.attribute(world.touchpoints, conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]
    ll = {
        form: again.form_selection.filter(pl.col("form") == form).get_column("log_likelihood").max()
        for form in ("touch", "both")
    }
    assert ll["both"] - ll["touch"] < 17.2
